"""Athena queries against moto: the SQL, workgroup, output location and token that are sent."""

from __future__ import annotations

from typing import Any

import boto3
import httpx
import pytest

from edulake.catalog.athena import (
    AthenaConfig,
    AthenaRunner,
    create_views,
    load_query,
    qualify,
    request_token,
)
from edulake.catalog.glue import GlueCatalog
from edulake.core.settings import CatalogSettings
from tests.aws.conftest import CallCounter

RESULTS = "s3://edulake-athena-results/queries/"


def _col(name: str, athena_type: str) -> dict[str, Any]:
    return {
        "CatalogName": "hive",
        "SchemaName": "",
        "TableName": "",
        "Name": name,
        "Label": name,
        "Type": athena_type,
        "Precision": 0,
        "Scale": 0,
        "Nullable": "UNKNOWN",
        "CaseSensitive": False,
    }


def queue_result(endpoint: str, columns: list[tuple[str, str]], rows: list[list[str]]) -> None:
    """Queue one canned result (Athena's first row repeats the column names)."""
    data = [{"Data": [{"VarCharValue": n} for n, _ in columns]}]
    data += [{"Data": [{"VarCharValue": v} for v in row]} for row in rows]
    body = {"results": [{"rows": data, "column_info": [_col(n, t) for n, t in columns]}]}
    httpx.post(f"{endpoint}/moto-api/static/athena/query-results", json=body).raise_for_status()


@pytest.fixture
def athena_client(moto: str) -> Any:
    client = boto3.client("athena", endpoint_url=moto, region_name="us-east-1")
    client.create_work_group(Name="analytics", Description="edulake analysts")
    return client


@pytest.fixture
def runner(moto: str, athena_client: Any) -> AthenaRunner:
    settings = CatalogSettings(
        athena_workgroup="analytics", athena_output_location=RESULTS, glue_database_prefix="edu"
    )
    config = AthenaConfig.from_settings(settings, endpoint_url=moto, poll_initial_s=0.01)
    return AthenaRunner(config)


def executions(client: Any) -> list[dict[str, Any]]:
    """Every execution moto saw, oldest first."""
    ids = client.list_query_executions()["QueryExecutionIds"]
    found = [client.get_query_execution(QueryExecutionId=i)["QueryExecution"] for i in ids]
    return sorted(found, key=lambda e: e["Status"]["SubmissionDateTime"])


def test_named_select_sends_qualified_sql_workgroup_and_output_location(runner, athena_client):
    sent = CallCounter(runner.connection().client)
    record = runner.run_named("libinsight_tableau_extract", run_key="flow-run-1")

    (execution,) = executions(athena_client)
    assert execution["Query"] == qualify(load_query("libinsight_tableau_extract"), "edu")
    assert "FROM edu_libinsight.reference_desk AS r" in execution["Query"]
    assert execution["WorkGroup"] == "analytics"
    assert execution["ResultConfiguration"]["OutputLocation"].startswith(RESULTS)

    (start,) = [p for n, p in sent.calls if n == "StartQueryExecution"]
    assert start["WorkGroup"] == "analytics"
    assert start["ResultConfiguration"] == {"OutputLocation": RESULTS}
    assert start["ClientRequestToken"] == record.token
    assert record.token == request_token(
        "libinsight_tableau_extract", execution["Query"], "flow-run-1"
    )
    assert 32 <= len(record.token) <= 128

    assert record.state == "SUCCEEDED"
    assert record.query_id == execution["QueryExecutionId"]
    assert record.output_location == f"{RESULTS}{record.query_id}.csv"
    assert record.data_scanned_bytes == 0
    assert record.workgroup == "analytics"


def test_same_run_key_same_token_other_run_other_token(runner):
    first = runner.run_named("libinsight_tableau_extract", run_key="run-a")
    retry = runner.run_named("libinsight_tableau_extract", run_key="run-a")
    other = runner.run_named("libinsight_tableau_extract", run_key="run-b")
    unkeyed = runner.run("SELECT 1")
    unkeyed_again = runner.run("SELECT 1")
    assert first.token == retry.token
    assert first.token != other.token
    assert unkeyed.token != unkeyed_again.token  # no run key: every run is new


def test_results_are_fetched(runner, moto, athena_client):
    queue_result(
        moto,
        [("school_name", "varchar"), ("students", "bigint"), ("avg_logins", "double")],
        [["North High", "120", "2.5"], ["South Middle", "80", "1.25"]],
    )
    table = runner.fetch_table("SELECT school_name, students, avg_logins FROM clever.x")
    assert table.column_names == ["school_name", "students", "avg_logins"]
    assert table.to_pylist() == [
        {"school_name": "North High", "students": 120, "avg_logins": 2.5},
        {"school_name": "South Middle", "students": 80, "avg_logins": 1.25},
    ]


def test_unload_to_parquet_in_a_fresh_results_folder(runner, athena_client):
    record = runner.run_named("libinsight_tableau_extract", mode="unload", run_key="r1")
    (execution,) = executions(athena_client)
    run_id = request_token("libinsight_tableau_extract", "r1")[:16]
    folder = f"{RESULTS}unload/libinsight_tableau_extract/{run_id}/"
    assert execution["Query"].startswith("UNLOAD (SELECT r.*")
    assert execution["Query"].endswith(
        f"TO '{folder}' WITH (format = 'PARQUET', compression = 'SNAPPY')"
    )
    assert record.output_location == folder
    assert record.mode == "unload"


def test_unload_csv(runner, athena_client):
    runner.run_named("libinsight_tableau_extract", mode="unload", fmt="csv", run_key="r1")
    (execution,) = executions(athena_client)
    assert execution["Query"].endswith("WITH (format = 'TEXTFILE', field_delimiter = ',')")


def test_ctas_replaces_the_extract_table(runner, athena_client):
    record = runner.run_named("libinsight_tableau_extract", mode="ctas", run_key="r1")
    assert record.mode == "ctas"
    queries = [e["Query"] for e in executions(athena_client)]
    run_id = request_token("libinsight_tableau_extract", "r1")[:16]
    folder = f"{RESULTS}ctas/libinsight_tableau_extract/{run_id}/"
    assert queries[0] == "CREATE DATABASE IF NOT EXISTS edu_exports"
    assert queries[1] == "DROP TABLE IF EXISTS edu_exports.libinsight_tableau_extract"
    assert queries[2].startswith(
        "CREATE TABLE edu_exports.libinsight_tableau_extract WITH (format = 'PARQUET', "
        f"write_compression = 'SNAPPY', external_location = '{folder}') AS SELECT r.*"
    )
    assert len(queries) == 3
    assert record.output_location == folder


def test_unload_without_results_bucket_is_refused(moto, athena_client):
    runner = AthenaRunner(AthenaConfig(endpoint_url=moto))
    with pytest.raises(ValueError, match="athena_output_location"):
        runner.run_named("libinsight_tableau_extract", mode="unload")


def test_unknown_query_name_lists_the_known_ones():
    with pytest.raises(KeyError, match="libinsight_tableau_extract"):
        load_query("nope")


def test_create_views_sends_athena_ddl(runner, athena_client, tmp_path):
    views = tmp_path / "clever"
    views.mkdir()
    (views / "logins_by_school.sql").write_text(
        "-- the schools (no cell counts people: published as written)\n"
        "-- publish: none\n"
        "SELECT school_name, max(num_logins) AS most_logins\n"
        "FROM clever.daily_participation GROUP BY school_name\n"
    )
    (views / "top_resources.sql").write_text(
        "-- publish: counts=students\n"
        "SELECT resource_name, count(DISTINCT sis_id_pseudonym) AS students\n"
        "FROM clever.resource_usage GROUP BY resource_name ORDER BY students DESC LIMIT 5\n"
    )
    glue = boto3.client("glue", endpoint_url=runner.config.endpoint_url, region_name="us-east-1")
    catalog = GlueCatalog(
        database_prefix="edu", glue_client=glue, athena=runner, views_dir=str(tmp_path)
    )
    assert catalog.create_views("clever") == [
        "edu_clever.logins_by_school",
        "edu_clever.top_resources",
    ]
    sent = [e["Query"] for e in executions(athena_client)]
    assert sent[0] == (
        "CREATE OR REPLACE VIEW edu_clever.logins_by_school AS SELECT school_name, "
        "MAX(num_logins) AS most_logins FROM edu_clever.daily_participation GROUP BY school_name"
    )
    # a view counting people goes out suppressed (tests/privacy/test_small_cells.py)
    assert sent[1].startswith("CREATE OR REPLACE VIEW edu_clever.top_resources AS WITH ")
    assert "FROM edu_clever.resource_usage GROUP BY resource_name" in sent[1]
    assert '"students" < 10' in sent[1] and "AS suppressed" in sent[1]
    assert create_views(runner, "libinsight", "edu", str(tmp_path)) == []  # no view files
