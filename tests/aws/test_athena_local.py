"""The athena-query flow on the embedded default (DuckDB): the same named SQL, locally.

The local deployment fires it on every LibInsight commit; before, it always went to
Athena and failed (`Unable to locate credentials`), retried for minutes. On the duckdb
catalog it now runs the query on the DuckDB catalog and writes the Tableau CSV into the
lake's exports zone.
"""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path

import duckdb
import pytest
from prefect.blocks.system import Secret

from edulake.demo.libinsight_server import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET
from flows.athena_query import athena_query
from flows.libinsight_dataset import libinsight_dataset
from tests.servers.libinsight import libinsight_server

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]
D = dt.date
QUERY = "libinsight_tableau_extract"
TABLE = "reference_desk_12345"  # the dataset's own table: its extract is per table


@pytest.fixture
def no_aws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No AWS credentials anywhere: the local flow must not need them."""
    import os

    for name in [v for v in os.environ if v.startswith("AWS_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture
def libinsight_lake(tmp_path: Path) -> tuple[Path, set[int]]:
    """A lake the LibInsight flow built from the local server; the ids it served."""
    root = tmp_path / "lake"
    Secret(value=DEMO_CLIENT_SECRET).save("athena-local-secret", overwrite=True)
    with libinsight_server() as srv:
        libinsight_dataset(
            base_url=srv.base_url,
            dataset_id=12345,
            client_id=DEMO_CLIENT_ID,
            client_secret_block="athena-local-secret",
            lake_root=str(root),
            demo=True,
            from_date=D(2023, 1, 1),
            to_date=D(2023, 2, 28),
        )
        ids = {r["_id"] for r in srv.records(D(2023, 1, 1), D(2023, 2, 28)) if r["_start_date"]}
    return root, ids


def test_the_local_flow_writes_the_tableau_csv_from_duckdb(libinsight_lake, no_aws):
    root, ids = libinsight_lake
    summary = athena_query(query_names=[QUERY], table=TABLE, mode="select", lake_root=str(root))

    (row,) = summary["queries"]
    assert row["query"] == f"{QUERY}-{TABLE}" and row["state"] == "SUCCEEDED"
    assert row["workgroup"] == "duckdb"
    out = root / "exports" / "athena" / f"{QUERY}-{TABLE}.csv"
    assert row["results"] == str(out)
    with out.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert row["rows"] == len(rows) == len(ids)
    assert {int(r["id"]) for r in rows} == ids
    # The query's own columns and order (the SQL file, not a copy of it).
    assert {"start_day", "start_year", "start_weekday", "start_hour"} <= set(rows[0])
    starts = [(r["start_date"], int(r["id"])) for r in rows]
    assert starts == sorted(starts)
    assert all(1 <= int(r["start_weekday"]) <= 7 for r in rows)

    # The same answer as the catalog table itself.
    con = duckdb.connect(str(root / "catalog" / "edulake.duckdb"), read_only=True)
    try:
        (count,) = con.execute(
            "SELECT count(*) FROM libinsight.reference_desk_12345 WHERE start_date IS NOT NULL"
        ).fetchone()
    finally:
        con.close()
    assert count == len(rows)


def test_a_rerun_replaces_the_file(libinsight_lake, no_aws):
    root, ids = libinsight_lake
    athena_query(query_names=[QUERY], table=TABLE, lake_root=str(root))
    second = athena_query(query_names=[QUERY], table=TABLE, lake_root=str(root))
    out = root / "exports" / "athena" / f"{QUERY}-{TABLE}.csv"
    with out.open(newline="", encoding="utf-8") as f:
        assert len(list(csv.DictReader(f))) == len(ids)  # replaced, not appended
    assert second["queries"][0]["rows"] == len(ids)


def test_no_catalog_yet_fails_once_and_clearly(tmp_path, no_aws):
    from edulake.core.settings import ConfigError

    with pytest.raises(ConfigError, match="no DuckDB catalog"):
        athena_query(query_names=[QUERY], table=TABLE, lake_root=str(tmp_path / "empty"))
    assert not (tmp_path / "empty" / "catalog").exists()  # no empty catalog file created


def test_the_output_location_parameter_is_a_local_folder(libinsight_lake, no_aws, tmp_path):
    root, ids = libinsight_lake
    folder = tmp_path / "tableau"
    summary = athena_query(
        query_names=[QUERY], table=TABLE, lake_root=str(root), output_location=str(folder)
    )
    out = folder / f"{QUERY}-{TABLE}.csv"
    assert summary["queries"][0]["results"] == str(out)
    with out.open(newline="", encoding="utf-8") as f:
        assert {int(r["id"]) for r in csv.DictReader(f)} == ids
    assert sorted(p.name for p in folder.iterdir()) == [f"{QUERY}-{TABLE}.csv"]  # no staging left
    assert not (root / "exports" / "athena").exists()
