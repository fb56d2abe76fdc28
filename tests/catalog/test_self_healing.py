"""Self-healing publish: the catalog records which Parquet files (key, size, mtime) it
loaded per partition; every publish compares that manifest with a listing of the lake and
replaces exactly the partitions that differ. So whatever happened before - a publish
killed or skipped, two runs overlapping, a catalog table or a lake file tampered with -
the next run leaves the catalog equal to a clean build."""

from __future__ import annotations

import os
import signal

import duckdb
import pytest

from edulake.catalog import open_catalog, publish_all
from edulake.connectors.files import FolderSource
from edulake.core.lake import Lake, Zone
from edulake.privacy.pseudonym import Pseudonymizer
from edulake.sources.clever import pipeline
from tests.reliability.helpers import KEY

from .helpers import catalog_state, clean_build, db_path, np_dir, run_pipeline


def _lake(base: str) -> Lake:
    return Lake(f"{base}/lake", f"{base}/np")


def _publish_as_the_flow(lake: Lake, processed: pipeline.ProcessingResult) -> None:
    """The flow's publish step, in this process (what the run processed is not needed)."""
    cat = open_catalog("duckdb", lake)
    try:
        publish_all(cat, pipeline.catalog_tables(lake, KEY.key_id), views_for="clever")
    finally:
        cat.close()


def _process(lake: Lake, src: str | None) -> pipeline.ProcessingResult:
    if src is not None:
        source = FolderSource(src)
        pipeline.land_reports(lake, source, pipeline.discover(source).reports)
    return pipeline.process_pending(
        lake, pipeline.pending(lake), Pseudonymizer(KEY), max_quarantine_share=0.5
    )


def test_overlapping_runs_never_clear_each_others_pending_work(day1_source, full_source, tmp_path):
    base = str(tmp_path / "run")
    assert run_pipeline(day1_source, base) == 0
    lake = _lake(base)
    b = _process(lake, None)  # run B starts: nothing is pending yet
    a = _process(lake, full_source)  # run A lands and processes two new days ...
    assert a.changed["daily_participation"]
    # ... and is still running (or dies) when B, which had nothing to do, publishes
    _publish_as_the_flow(lake, b)
    # a later run with nothing new must still bring the catalog up to date
    c = _process(lake, full_source)
    assert not any(f.status == "processed" for f in c.files)
    _publish_as_the_flow(lake, c)
    assert catalog_state(base) == clean_build(base, full_source, str(tmp_path / "clean"))


@pytest.mark.slow
@pytest.mark.parametrize(
    "points",
    [
        ["publish.transaction:1"],
        ["publish.committed:1"],
        ["publish.committed:2"],
        ["publish.transaction:2", "publish.committed:1"],
        ["publish.swapped:1"],  # the protected file swapped in, the main file not
    ],
    ids="+".join,
)
def test_a_killed_publish_is_repaired_by_a_run_with_nothing_new(
    day1_source, full_source, tmp_path, points
):
    base = str(tmp_path / "run")
    assert run_pipeline(day1_source, base) == 0
    for point in points:
        assert run_pipeline(full_source, base, point) == -signal.SIGKILL
    assert run_pipeline(full_source, base) == 0  # nothing new to land or process
    clean = clean_build(base, full_source, str(tmp_path / "clean"))
    assert catalog_state(base) == clean
    assert run_pipeline(full_source, base) == 0
    assert catalog_state(base) == clean


def _tamper(base: str, sql: str) -> None:
    con = duckdb.connect(db_path(base))
    try:
        con.execute(f"ATTACH '{np_dir(base)}/clever_np.duckdb' AS clever_np")
        con.execute(sql)
    finally:
        con.close()


@pytest.mark.slow
@pytest.mark.parametrize(
    "sql",
    [
        "DELETE FROM clever.daily_participation WHERE date = DATE '2022-01-04'",
        "DELETE FROM clever.resource_usage WHERE num_access > 2",
        "DELETE FROM clever_np.sis_id_lookup WHERE value < '5'",
        "INSERT INTO clever.daily_participation SELECT * FROM clever.daily_participation LIMIT 3",
        "UPDATE clever.daily_participation SET num_logins = num_logins + 1 "
        "WHERE date = DATE '2022-01-05'",
        "DROP TABLE clever.resource_usage",
    ],
    ids=[
        "partition-rows",
        "rows-across-partitions",
        "lookup-rows",
        "extra-rows",
        "changed-values",
        "table",
    ],
)
def test_a_tampered_catalog_table_is_restored(full_source, tmp_path, sql):
    base = str(tmp_path / "run")
    assert run_pipeline(full_source, base) == 0
    clean = catalog_state(base)
    _tamper(base, sql)
    if not sql.startswith("DROP"):
        assert catalog_state(base) != clean
    assert run_pipeline(full_source, base) == 0  # nothing new to process
    assert catalog_state(base) == clean


@pytest.mark.slow
def test_a_parquet_file_dropped_from_the_lake_leaves_the_catalog(full_source, tmp_path):
    base = str(tmp_path / "run")
    assert run_pipeline(full_source, base) == 0
    before = catalog_state(base)
    lake = _lake(base)
    files = [o.key for o in lake.list(Zone.STAGE2P, "clever/daily_participation")]
    victim = next(k for k in files if "date=2022-01-04" in k)
    os.remove(lake.fs_path(Zone.STAGE2P, victim))
    assert run_pipeline(full_source, base) == 0  # nothing is reprocessed: the record stands
    after = catalog_state(base)
    assert after["clever.daily_participation"][0] < before["clever.daily_participation"][0]
    assert after == clean_build(base, full_source, str(tmp_path / "clean"))
