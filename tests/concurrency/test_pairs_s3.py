"""On an S3 lake (SeaweedFS): a holder SIGKILLed while it holds the lease is taken over
after the lease expires, and the end state equals the runs one after the other."""

from __future__ import annotations

import uuid

import pyarrow.dataset as ds
import pytest

from edulake.core.lake import Lake, S3Options, Zone
from edulake.core.lease import read_holder
from edulake.privacy.lookup import read_lookup
from tests.reliability.helpers import checksum
from tests.servers.seaweedfs import seaweedfs

from .test_pairs import FIRST_HALF, SECOND_HALF, source  # noqa: F401 - the shared fixture

pytestmark = pytest.mark.slow

BUCKET, NP_BUCKET = "lease-lake", "lease-np"


@pytest.fixture(scope="module")
def s3():
    with seaweedfs(buckets=[BUCKET, NP_BUCKET]) as server:
        yield server


def s3_env(server, tmp_path) -> dict[str, str]:
    return {
        "EDULAKE_S3__ENDPOINT_URL": server.endpoint_url,
        "EDULAKE_S3__ACCESS_KEY_ID": server.access_key,
        "EDULAKE_S3__SECRET_ACCESS_KEY": server.secret_key,
        "EDULAKE_S3__REGION": server.region,
        "EDULAKE_CATALOG__DUCKDB_PATH": str(tmp_path / f"{uuid.uuid4().hex}.duckdb"),
        "EDULAKE_LEASE__TTL_S": "4",
    }


def s3_state(server, root: str, np_root: str) -> dict[str, tuple[int, str]]:
    opts = S3Options(
        endpoint_url=server.endpoint_url,
        access_key_id=server.access_key,
        secret_access_key=server.secret_key,
        region=server.region,
    )
    lake = Lake(root, np_root, opts)
    out = {}
    for table in ("daily_participation", "resource_usage"):
        path = lake.fs_path(Zone.STAGE2P, f"clever/{table}")
        t = ds.dataset(path, filesystem=lake.main.fs, format="parquet", partitioning="hive")
        out[table] = checksum(t.to_table())
    for col in ("sis_id", "clever_user_id"):
        out[col] = checksum(read_lookup(lake, "clever", col))
    return out


def test_s3_holder_killed_is_taken_over_after_expiry(tmp_path, launcher, source, s3):  # noqa: F811
    run = uuid.uuid4().hex[:8]
    ref = (f"s3://{BUCKET}/{run}-ref", f"s3://{NP_BUCKET}/{run}-ref")
    env = s3_env(s3, tmp_path)
    launcher.run("clever", *ref, source, *FIRST_HALF, env=env)
    launcher.run("clever", *ref, source, *SECOND_HALF, env=env)
    reference = s3_state(s3, *ref)

    lake = (f"s3://{BUCKET}/{run}-x", f"s3://{NP_BUCKET}/{run}-x")
    env = s3_env(s3, tmp_path)  # a catalog file of its own
    a = launcher.start("clever", *lake, source, *SECOND_HALF, pause="clever.processed", env=env)
    a.wait_reached("clever.processed")
    b = launcher.start("clever", *lake, source, *FIRST_HALF, env=env)
    b.wait_reached("lease.waiting")
    a.kill()  # its lease stays in S3 until it expires (EDULAKE_LEASE__TTL_S=4)
    assert b.finish() == 0, b.err[-3000:]
    launcher.run("clever", *lake, source, *SECOND_HALF, env=env)
    assert s3_state(s3, *lake) == reference
    opts = S3Options(
        endpoint_url=s3.endpoint_url,
        access_key_id=s3.access_key,
        secret_access_key=s3.secret_key,
        region=s3.region,
    )
    holder = read_holder(Lake(lake[0], lake[1], opts))
    assert holder is not None and holder.released
    left = s3.client().list_objects_v2(Bucket=BUCKET, Prefix=f"{run}-x/_tmp/")
    assert [o["Key"] for o in left.get("Contents", []) if o["Size"] > 0] == []
