"""The Clever pipeline end to end on an s3:// lake (SeaweedFS), with DuckDB or Glue/Athena."""

from __future__ import annotations

import os
import uuid
from typing import Any

import boto3
import duckdb
import pyarrow.dataset as ds
import pytest
from prefect_aws import AwsCredentials
from prefect_aws.client_parameters import AwsClientParameters

from edulake.catalog.athena import load_views, to_duckdb
from edulake.catalog.duckdb import connect as connect_catalog
from flows.clever_participation import clever_participation
from tests.aws.conftest import LAKE_BUCKET, NP_BUCKET
from tests.servers.seaweedfs import SeaweedS3

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]
SMALL = {"days": 2, "students": 60, "teachers": 6, "staff": 2, "schools": 2}
PEOPLE_PER_DAY = 60 + 6 + 2


@pytest.fixture
def s3_block(s3_server: SeaweedS3) -> str:
    """A saved prefect-aws AwsCredentials block for SeaweedFS (endpoint in client parameters)."""
    name = f"edulake-test-s3-{uuid.uuid4().hex[:6]}"
    AwsCredentials(
        aws_access_key_id=s3_server.access_key,
        aws_secret_access_key=s3_server.secret_key,
        region_name="us-east-1",
        aws_client_parameters=AwsClientParameters(endpoint_url=s3_server.endpoint_url),
    ).save(name)
    return name


def _roots() -> tuple[str, str]:
    run = uuid.uuid4().hex[:8]
    return f"s3://{LAKE_BUCKET}/{run}", f"s3://{NP_BUCKET}/{run}"


def _keys(server: SeaweedS3, bucket: str, prefix: str) -> list[str]:
    pages = server.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


def test_clever_flow_on_s3_with_duckdb_catalog(s3_server, s3_block, tmp_path, monkeypatch):
    root, np_root = _roots()
    db = str(tmp_path / "catalog.duckdb")
    monkeypatch.setenv("EDULAKE_CATALOG__DUCKDB_PATH", db)
    args: dict[str, Any] = {
        "source": "testdata",
        "lake_root": root,
        "np_root": np_root,
        "aws_credentials_block": s3_block,
        "demo": True,
        "testdata": SMALL,
    }
    first = clever_participation(**args)
    assert first["failed_files"] == []
    assert first["rows_written"] > 0

    run = root.rsplit("/", 1)[1]
    main_keys = _keys(s3_server, LAKE_BUCKET, run)
    np_keys = _keys(s3_server, NP_BUCKET, run)
    assert any("/stage2p/clever/daily_participation/date=" in k for k in main_keys)
    assert any("/stage1np/clever/" in k for k in np_keys)  # raw files: the np bucket
    assert any("/stage2np/clever/sis_id_lookup/" in k for k in np_keys)
    assert not [
        k for k in main_keys if "/stage1np/" in k or "/stage2np/" in k or "/quarantine/" in k
    ]
    assert not [k for k in main_keys + np_keys if "/_tmp/" in k and not k.endswith("/")]

    con = connect_catalog(db, np_dir=os.path.dirname(db))  # a steward's view: both files
    try:
        dp = con.execute("SELECT COUNT(*) FROM clever.daily_participation").fetchone()[0]
        lookups = con.execute("SELECT COUNT(*) FROM clever_np.sis_id_lookup").fetchone()[0]
    finally:
        con.close()
    assert dp == 2 * PEOPLE_PER_DAY
    assert lookups > 0

    second = clever_participation(**args)  # idempotent on S3 too
    assert second["files_processed"] == 0

    # The same objects: a re-run adds nothing but, on S3, the empty folder marker of its
    # staging session (the dashboard page it rewrites is staged there; no file is left)
    def data_keys(keys: list[str]) -> list[str]:
        return [k for k in keys if not ("/_tmp/" in k and k.endswith("/"))]

    assert data_keys(_keys(s3_server, LAKE_BUCKET, run)) == data_keys(main_keys)


def test_clever_flow_on_s3_with_glue_catalog(s3_server, s3_block, moto, monkeypatch):
    root, np_root = _roots()
    monkeypatch.setenv("AWS_ENDPOINT_URL_GLUE", moto)
    monkeypatch.setenv("AWS_ENDPOINT_URL_ATHENA", moto)
    monkeypatch.setenv("EDULAKE_CATALOG__ATHENA_OUTPUT_LOCATION", "s3://edulake-results/athena/")
    summary = clever_participation(
        source="testdata",
        lake_root=root,
        np_root=np_root,
        aws_credentials_block=s3_block,
        demo=True,
        testdata=SMALL,
        catalog="glue",
    )
    assert summary["failed_files"] == []

    glue = boto3.client("glue", endpoint_url=moto, region_name="us-east-1")
    tables = {
        (db["Name"], t["Name"]): t
        for db in glue.get_databases()["DatabaseList"]
        for t in glue.get_tables(DatabaseName=db["Name"])["TableList"]
    }
    assert set(tables) == {
        ("edulake_clever", "daily_participation"),
        ("edulake_clever", "resource_usage"),
        ("edulake_clever_np", "sis_id_lookup"),
        ("edulake_clever_np", "clever_user_id_lookup"),
    }
    dp = tables[("edulake_clever", "daily_participation")]
    assert dp["StorageDescriptor"]["Location"] == f"{root}/stage2p/clever/daily_participation/"
    assert tables[("edulake_clever_np", "sis_id_lookup")]["StorageDescriptor"]["Location"] == (
        f"{np_root}/stage2np/clever/sis_id_lookup/"
    )
    # The projection starts at the first report day the run wrote.
    days = sorted(
        k.split("date=")[1][:10]
        for k in _keys(s3_server, LAKE_BUCKET, root.rsplit("/", 1)[1])
        if "/daily_participation/date=" in k
    )
    assert dp["Parameters"]["projection.date.range"] == f"{days[0]},NOW"
    assert dp["Parameters"]["key_id"]

    athena = boto3.client("athena", endpoint_url=moto, region_name="us-east-1")
    ids = athena.list_query_executions()["QueryExecutionIds"]
    texts = [athena.get_query_execution(QueryExecutionId=i)["QueryExecution"]["Query"] for i in ids]
    views = sorted(t.split(" AS ", 1)[0] for t in texts if t.startswith("CREATE OR REPLACE VIEW"))
    assert views == sorted(
        f"CREATE OR REPLACE VIEW edulake_clever.{v}" for v in load_views("clever")
    )

    # Read back what Glue points at, from S3, as Athena would: the Hive layout, the types.
    location = dp["StorageDescriptor"]["Location"].removeprefix("s3://").rstrip("/")
    from edulake.connectors.aws import s3_options_from_block

    fs = s3_options_from_block(s3_block).arrow_fs()
    data = ds.dataset(location, filesystem=fs, format="parquet", partitioning="hive").to_table()
    assert data.num_rows == 2 * PEOPLE_PER_DAY
    glue_cols = [c["Name"] for c in dp["StorageDescriptor"]["Columns"]]
    assert data.column_names == [*glue_cols, "date"]

    # The dashboard views answer over the S3 lake (DuckDB standing in for Athena).
    con = duckdb.connect()
    con.register_filesystem(s3_options_from_block(s3_block).fsspec())
    con.execute("CREATE SCHEMA clever")
    for table in ("daily_participation", "resource_usage"):
        glob = f"{root}/stage2p/clever/{table}/*/*.parquet"
        con.execute(
            f"CREATE VIEW clever.{table} AS SELECT * FROM read_parquet('{glob}', "
            "hive_partitioning = true, hive_types_autocast = true)"
        )
    from edulake.privacy.suppression import published_views

    for view, sql in published_views("clever").items():  # as published (suppressed)
        assert con.execute(to_duckdb(sql)).fetchall(), view


def test_flow_with_wrong_credentials_fails_clearly(s3_server, monkeypatch):
    root, np_root = _roots()
    name = f"edulake-bad-s3-{uuid.uuid4().hex[:6]}"
    secret = "wrong-" + uuid.uuid4().hex
    AwsCredentials(
        aws_access_key_id=s3_server.access_key,
        aws_secret_access_key=secret,
        aws_client_parameters=AwsClientParameters(endpoint_url=s3_server.endpoint_url),
    ).save(name)
    state = clever_participation(
        source="testdata",
        lake_root=root,
        np_root=np_root,
        aws_credentials_block=name,
        demo=True,
        testdata=SMALL,
        return_state=True,
    )
    assert state.is_failed()
    message = str(state.result(raise_on_failure=False))
    assert f"cannot list {root} with access key id ending in" in message
    assert s3_server.endpoint_url in message
    assert secret not in message


def test_libinsight_flow_on_s3(s3_server, s3_block, tmp_path, monkeypatch):
    """The LibInsight pipeline unchanged on an s3:// lake: pages, months, lookup, export."""
    import datetime as dt

    from prefect.blocks.system import Secret

    from edulake.demo.libinsight_server import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET
    from flows.libinsight_dataset import libinsight_dataset
    from tests.servers.libinsight import libinsight_server

    root, np_root = _roots()
    db = str(tmp_path / "catalog.duckdb")
    monkeypatch.setenv("EDULAKE_CATALOG__DUCKDB_PATH", db)
    Secret(value=DEMO_CLIENT_SECRET).save("test-s3-libinsight-secret", overwrite=True)
    with libinsight_server() as srv:
        args: dict[str, Any] = {
            "base_url": srv.base_url,
            "dataset_id": 12345,
            "client_id": DEMO_CLIENT_ID,
            "client_secret_block": "test-s3-libinsight-secret",
            "lake_root": root,
            "np_root": np_root,
            "aws_credentials_block": s3_block,
            "demo": True,
            "from_date": dt.date(2024, 1, 1),
            "to_date": dt.date(2024, 3, 31),
        }
        first = libinsight_dataset(**args)
        again = libinsight_dataset(**args)

    run = root.rsplit("/", 1)[1]
    main_keys = _keys(s3_server, LAKE_BUCKET, run)
    np_keys = _keys(s3_server, NP_BUCKET, run)
    assert any("/stage1np/libinsight/" in k and k.endswith(".json") for k in np_keys)
    assert not [k for k in main_keys if "/stage1np/" in k]
    months = sorted(k.split("month=")[1][:7] for k in main_keys if "/stage2p/libinsight/" in k)
    assert months == ["2024-01", "2024-02", "2024-03"]
    assert any("/exports/libinsight/" in k for k in main_keys)
    assert any("/stage2np/libinsight/entered_by_lookup/" in k for k in np_keys)
    assert not [k for k in main_keys if "/stage2np/" in k]

    con = connect_catalog(db)
    try:
        rows = con.execute(
            "SELECT COUNT(*), COUNT(DISTINCT id) FROM libinsight.reference_desk_12345"
        ).fetchone()
    finally:
        con.close()
    assert rows[0] == rows[1] > 0  # read back from S3, no duplicates after the second run
    assert again["watermark_after"] == first["watermark_after"]
