"""The lake on a real S3 API (SeaweedFS): the same commit protocol as on local disk."""

from __future__ import annotations

import hashlib
import io
import uuid

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from edulake.connectors.aws import S3AccessError, check_lake_access, connect_lake
from edulake.core.lake import Lake, S3Options, Zone
from tests.aws.conftest import LAKE_BUCKET, NP_BUCKET
from tests.servers.seaweedfs import SeaweedS3

pytestmark = pytest.mark.slow


@pytest.fixture
def lake(s3_options: S3Options) -> Lake:
    """A fresh lake under a unique prefix in each bucket."""
    run = uuid.uuid4().hex[:8]
    return Lake(f"s3://{LAKE_BUCKET}/{run}", np_root=f"s3://{NP_BUCKET}/{run}", s3=s3_options)


def _keys(server: SeaweedS3, bucket: str, prefix: str) -> list[str]:
    pages = server.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


def _run_prefix(lake: Lake) -> str:
    return lake.main.base.split("/", 1)[1]


def test_atomic_write_round_trip_and_zones_in_their_buckets(lake: Lake, s3_server: SeaweedS3):
    lake.write_bytes(Zone.STAGE2P, "clever/t/date=2024-01-02/a.parquet", b"p-data")
    lake.write_json(Zone.STAGE2NP, "clever/sis_id_lookup/meta.json", {"k": 1})
    run = _run_prefix(lake)

    assert lake.read_bytes(Zone.STAGE2P, "clever/t/date=2024-01-02/a.parquet") == b"p-data"
    assert lake.read_json(Zone.STAGE2NP, "clever/sis_id_lookup/meta.json") == {"k": 1}
    # Protected zones live in the np bucket, and only there.
    assert f"{run}/stage2np/clever/sis_id_lookup/meta.json" in _keys(s3_server, NP_BUCKET, run)
    assert not [k for k in _keys(s3_server, LAKE_BUCKET, run) if "stage2np" in k]
    assert lake.uri(Zone.STAGE2P, "clever/t") == f"s3://{LAKE_BUCKET}/{run}/stage2p/clever/t"
    assert lake.exists(Zone.STAGE2P, "clever/t/date=2024-01-02/a.parquet")
    assert not lake.exists(Zone.STAGE2P, "clever/t/date=2024-01-03/a.parquet")


def _write_then_fail(lake: Lake) -> None:
    with lake.atomic_write(Zone.STAGE2P, "x/y.bin") as out:
        out.write(b"half")
        raise RuntimeError("boom")


def test_failed_write_leaves_nothing_visible(lake: Lake):
    with pytest.raises(RuntimeError, match="boom"):
        _write_then_fail(lake)
    assert lake.list(Zone.STAGE2P) == []
    assert lake.sweep_tmp(older_than_s=0) == 0  # discarded at once, no garbage left


def test_staged_files_are_invisible_until_commit(lake: Lake):
    staged = lake.staged()
    staged.write_bytes(Zone.STAGE2P, "s/a.bin", b"a")
    staged.write_bytes(Zone.STAGE2NP, "s/b.bin", b"b")
    assert lake.list(Zone.STAGE2P) == []
    assert lake.list(Zone.STAGE2NP) == []
    staged.commit()
    assert [o.key for o in lake.list(Zone.STAGE2P)] == ["s/a.bin"]
    assert [(o.key, o.size) for o in lake.list(Zone.STAGE2NP)] == [("s/b.bin", 1)]


def test_list_prefix_delete_and_delete_prefix(lake: Lake):
    for day in ("2024-01-01", "2024-01-02", "2024-01-03"):
        lake.write_bytes(Zone.STAGE2P, f"src/t/date={day}/f.parquet", day.encode())
    lake.write_bytes(Zone.STAGE2P, "src/other/f.parquet", b"o")

    listed = lake.list(Zone.STAGE2P, "src/t")
    assert [o.key for o in listed] == [f"src/t/date=2024-01-0{d}/f.parquet" for d in (1, 2, 3)]
    assert all(o.size == 10 and o.mtime for o in listed)

    lake.delete(Zone.STAGE2P, "src/t/date=2024-01-01/f.parquet")
    lake.delete(Zone.STAGE2P, "src/t/date=2024-01-01/f.parquet")  # deleting twice is fine
    assert lake.delete_prefix(Zone.STAGE2P, "src/t") == 2
    assert [o.key for o in lake.list(Zone.STAGE2P)] == ["src/other/f.parquet"]


def test_sweep_tmp_removes_files_of_killed_runs(lake: Lake):
    killed = lake.staged()  # a run that staged files and died before commit
    killed.write_bytes(Zone.STAGE2P, "k/a.bin", b"a")
    killed.write_bytes(Zone.STAGE2NP, "k/b.bin", b"b")
    assert lake.sweep_tmp(older_than_s=3600) == 0  # young files belong to live runs
    assert lake.sweep_tmp(older_than_s=0) == 2
    assert lake.list(Zone.STAGE2P) == []
    assert lake.list(Zone.STAGE2NP) == []


def test_parquet_round_trip(lake: Lake):
    table = pa.table({"id": pa.array(["a", "b"]), "n": pa.array([1, 2], pa.int64())})
    with lake.atomic_write(Zone.STAGE2P, "src/t/part.parquet") as out:
        pq.write_table(table, out)
    with lake.open_input_file(Zone.STAGE2P, "src/t/part.parquet") as f:
        assert pq.read_table(f).equals(table)


def test_large_write_goes_multipart_and_reads_back(lake: Lake, s3_server: SeaweedS3):
    chunk = bytes(range(256)) * 4096  # 1 MiB
    digest = hashlib.sha256()
    with lake.atomic_write(Zone.STAGE1NP, "big/report.csv") as out:
        for i in range(24):  # 24 MiB, streamed: never held whole in memory
            block = chunk[i:] + chunk[:i]
            digest.update(block)
            out.write(block)
    head = s3_server.client().head_object(
        Bucket=NP_BUCKET,
        Key=f"{_run_prefix(lake)}/stage1np/big/report.csv",  # raw: np side
    )
    assert head["ContentLength"] == 24 * 2**20
    # A multipart object's ETag is "<md5 of part md5s>-<number of parts>".
    parts = int(head["ETag"].strip('"').rsplit("-", 1)[1])
    assert parts >= 2
    back = hashlib.sha256()
    with lake.open_input(Zone.STAGE1NP, "big/report.csv") as f:
        while block := f.read(2**20):
            back.update(block)
    assert back.hexdigest() == digest.hexdigest()


def test_access_check_passes_with_good_credentials(lake: Lake, s3_options: S3Options):
    check_lake_access(lake)
    assert connect_lake(lake.main.uri, lake.protected.uri, s3_options).list(Zone.STAGE2P) == []
    assert lake.list(Zone.SYSTEM) == []  # the probe went to _tmp and was removed
    assert lake.sweep_tmp(older_than_s=0) == 0


def test_wrong_secret_fails_clearly_without_leaking_it(s3_server: SeaweedS3):
    secret = "definitely-not-the-secret-" + uuid.uuid4().hex
    bad = S3Options(
        endpoint_url=s3_server.endpoint_url,
        access_key_id=s3_server.access_key,
        secret_access_key=secret,
    )
    with pytest.raises(S3AccessError) as err:
        connect_lake(f"s3://{LAKE_BUCKET}/x", s3=bad)
    msg = str(err.value)
    assert f"s3://{LAKE_BUCKET}/x" in msg
    assert s3_server.endpoint_url in msg
    assert "access key id ending in '-key'" in msg
    assert "SignatureDoesNotMatch" in msg or "SIGNATURE" in msg.upper()
    assert secret not in msg
    assert secret not in repr(bad)


def test_unknown_access_key_fails_clearly(s3_server: SeaweedS3):
    bad = S3Options(
        endpoint_url=s3_server.endpoint_url, access_key_id="NOSUCHKEY", secret_access_key="x" * 40
    )
    with pytest.raises(
        S3AccessError,
        match=r"cannot list s3://edulake-lake/x with access key id "
        r"ending in 'HKEY' at http://127\.0\.0\.1:\d+: INVALID_ACCESS_KEY_ID",
    ):
        connect_lake(f"s3://{LAKE_BUCKET}/x", s3=bad)


def test_read_only_use_needs_no_write(lake: Lake, s3_options: S3Options):
    lake.write_bytes(Zone.STAGE2P, "r/a.bin", b"a")
    reader = connect_lake(lake.main.uri, s3=s3_options, check=False)
    check_lake_access(reader, write=False)
    assert io.BytesIO(reader.read_bytes(Zone.STAGE2P, "r/a.bin")).read() == b"a"
