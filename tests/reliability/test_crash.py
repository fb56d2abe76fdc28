"""Crash safety: a real run SIGKILLed at named points, then re-run, ends as a clean run.

Each test starts ``tests/reliability/crash_runner.py`` (the flow's steps in the flow's
order) in a subprocess with ``EDULAKE_CRASH_AT=<point>:<n>``: the process kills itself
with SIGKILL the n-th time it reaches that point (no cleanup, no ``finally``). A second,
normal run must then leave the lake - stage1np, ledger, stage2p, stage2np lookups,
processing records and the DuckDB catalog - equal to a clean run's: same row counts and
content checksums, one raw file and one ledger record per report, every stage2p file a
complete Parquet file recorded as an output, no catalog temp file left.
"""

from __future__ import annotations

import hashlib
import os
import re
import signal

import pyarrow.parquet as pq
import pytest

from edulake.catalog.duckdb import connect as connect_catalog
from edulake.core.index import RecordIndex
from edulake.core.lake import Lake, Zone
from edulake.demo.clever_testdata import TestDataSource

from .helpers import KEY, checksum, lake_fingerprint, run_killable

pytestmark = pytest.mark.slow

PARAMS = {"days": 2, "students": 300, "teachers": 20, "staff": 5, "schools": 3}

# (point, n-th hit): during landing, Parquet writing, lookup merging, recording, publishing
CRASH_POINTS = [
    ("land.staged", 3),  # raw bytes staged in _tmp, not committed
    ("land.committed", 2),  # raw file committed, ledger record not yet written
    ("process.writing", 2),  # Parquet files open in _tmp, mid-write
    ("process.committed", 3),  # some outputs committed, lookups and records not written
    ("process.lookups_merged", 1),  # lookups merged, no processed record yet
    ("process.recording", 2),  # some processed records written, others not
    ("land.recorded", 2),  # a ledger record written, not yet in the index's journal
    ("land.journaled", 2),  # a ledger record journaled, its intent not yet dropped
    ("process.recorded", 2),  # a processed record written, not yet journaled
    ("index.compacted", 2),  # the processed manifest written, its journal not yet dropped
    ("publish.transaction", 2),  # inside a catalog transaction (DELETE done, no COMMIT)
    ("publish.committed", 1),  # first table committed, the others not
]


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> str:
    folder = str(tmp_path_factory.mktemp("clever-src") / "src")
    return TestDataSource(**PARAMS, cache_dir=folder).ensure_generated()


def run_pipeline(
    src: str, base: str, crash_at: str | None = None, landing_date: str | None = None
) -> int:
    args = [src, f"{base}/lake", f"{base}/np"] + ([landing_date] if landing_date else [])
    return run_killable("tests.reliability.crash_runner", args, crash_at)


def state(base: str) -> dict[str, object]:
    """Everything a reader could see, with landing dates taken out of paths."""
    lake = Lake(f"{base}/lake", f"{base}/np")
    out: dict[str, object] = dict(lake_fingerprint(lake))
    raw = [re.sub(r"/\d{4}-\d{2}-\d{2}/", "/<landed>/", o.key) for o in lake.list(Zone.STAGE1NP)]
    assert len(raw) == len(set(raw)), "a report landed twice"
    out["stage1np"] = sorted(
        (re.sub(r"/\d{4}-\d{2}-\d{2}/", "/<landed>/", o.key), _sha(lake, o.key))
        for o in lake.list(Zone.STAGE1NP)
    )
    ledger = [o.key for o in lake.list(Zone.SYSTEM, "ledger/clever")]
    out["ledger"] = sorted(k.rsplit("/", 1)[0] for k in ledger)
    assert len(out["ledger"]) == len(set(out["ledger"])), "two ledger records for one file"
    records = [lake.read_json(Zone.SYSTEM, o.key) for o in lake.list(Zone.SYSTEM, "processed")]
    outputs = {k for r in records for k in r["outputs"]}
    files = {o.key for o in lake.list(Zone.STAGE2P)}
    assert files == outputs, "a stage2p file no processed record accounts for (or missing)"
    for key in files:  # complete, readable, and written with this key
        with lake.open_input_file(Zone.STAGE2P, key) as f:
            meta = pq.read_metadata(f)
        assert meta.metadata[b"edulake.key_id"].decode() == KEY.key_id
    out["processed"] = sorted((r["name"], r["rows_written"]) for r in records)
    for prefix in ("ledger/clever", "processed/clever"):  # the index claims what is there
        listed = {o.key for o in lake.list(Zone.SYSTEM, prefix) if o.key.endswith(".json")}
        assert set(RecordIndex(lake, prefix).load().records) == listed, prefix
    for folder in (f"{base}/lake/catalog", f"{base}/np/catalog"):  # no swap leftovers
        assert not [n for n in os.listdir(folder) if n.endswith((".swap", ".swap.wal"))]
    con = connect_catalog(f"{base}/lake/catalog/edulake.duckdb", np_dir=f"{base}/np/catalog")
    try:
        for t in [
            "clever.daily_participation",
            "clever.resource_usage",
            "clever_np.sis_id_lookup",
            "clever_np.clever_user_id_lookup",
        ]:
            out[f"catalog.{t}"] = checksum(con.sql(f"SELECT * FROM {t}").to_arrow_table())
        out["views"] = checksum(con.sql("SELECT * FROM clever.usage_over_time").to_arrow_table())
    finally:
        con.close()
    return out


def _sha(lake: Lake, key: str) -> str:
    return hashlib.sha256(lake.read_bytes(Zone.STAGE1NP, key)).hexdigest()


@pytest.fixture(scope="module")
def clean(source, tmp_path_factory) -> dict[str, object]:
    base = str(tmp_path_factory.mktemp("clean"))
    assert run_pipeline(source, base) == 0
    result = state(base)
    assert result["stage2p.daily_participation"][0] == 2 * (300 + 20 + 5)  # type: ignore[index]
    return result


@pytest.mark.parametrize(("point", "nth"), CRASH_POINTS, ids=[p for p, _ in CRASH_POINTS])
def test_killed_run_then_rerun_equals_clean_run(source, clean, tmp_path, point, nth):
    base = str(tmp_path)
    assert run_pipeline(source, base, f"{point}:{nth}") == -signal.SIGKILL, "no crash happened"
    assert run_pipeline(source, base) == 0
    assert state(base) == clean
    # a third run changes nothing
    assert run_pipeline(source, base) == 0
    assert state(base) == clean


def test_killed_before_the_ledger_record_and_rerun_on_a_later_day(source, clean, tmp_path):
    """The raw file is committed, the ledger record is not; the next run is the next day:
    it records the copy already in stage1np instead of landing a second one."""
    base = str(tmp_path)
    assert run_pipeline(source, base, "land.committed:2", "2026-03-01") == -signal.SIGKILL
    assert run_pipeline(source, base, landing_date="2026-03-02") == 0
    assert state(base) == clean  # asserts one raw file and one ledger record per report
    lake = Lake(f"{base}/lake", f"{base}/np")
    days = {o.key.split("/")[3] for o in lake.list(Zone.STAGE1NP)}
    assert days == {"2026-03-01", "2026-03-02"}  # the adopted copy kept its first day
    assert not [o.key for o in lake.list(Zone.SYSTEM, "ledger") if o.key.endswith(".intent")]


def test_killed_twice_at_different_points(source, clean, tmp_path):
    base = str(tmp_path)
    assert run_pipeline(source, base, "process.writing:3") == -signal.SIGKILL
    assert run_pipeline(source, base, "publish.transaction:1") == -signal.SIGKILL
    assert run_pipeline(source, base, "process.recording:1") in (0, -signal.SIGKILL)
    assert run_pipeline(source, base) == 0
    assert state(base) == clean


def test_partial_files_are_invisible(source, tmp_path):
    """Killed mid-write: staged bytes exist under _tmp, but no zone shows a partial file."""
    base = str(tmp_path)
    assert run_pipeline(source, base, "process.writing:2") == -signal.SIGKILL
    lake = Lake(f"{base}/lake", f"{base}/np")
    tmp = [f for _, _, fs in os.walk(f"{base}/lake/_tmp") for f in fs]
    assert tmp, "expected staged garbage from the killed run"
    for key in (o.key for o in lake.list(Zone.STAGE2P)):
        with lake.open_input_file(Zone.STAGE2P, key) as f:
            pq.read_table(f)  # every visible file is complete
    # sweeping old garbage removes it without touching any zone
    visible = lake.list(Zone.STAGE2P) + lake.list(Zone.STAGE1NP)
    assert lake.sweep_tmp(older_than_s=0) == len(tmp)
    assert lake.list(Zone.STAGE2P) + lake.list(Zone.STAGE1NP) == visible


@pytest.mark.parametrize("point", ["process.recording:1", "publish.transaction:1"])
def test_killed_before_publishing_new_data_into_existing_tables(source, clean, tmp_path, point):
    """The catalog already has tables: the next run must still publish what the killed one
    processed (the catalog compares its manifest with the lake: nothing is remembered)."""
    first = tmp_path / "day1"
    for folder, _, files in os.walk(source):
        for name in files:
            if name.startswith("2022-01-03"):
                rel = os.path.relpath(os.path.join(folder, name), source)
                os.makedirs(first / os.path.dirname(rel), exist_ok=True)
                with open(os.path.join(folder, name), "rb") as f:
                    (first / rel).write_bytes(f.read())
    base = str(tmp_path / "lake-base")
    assert run_pipeline(str(first), base) == 0
    assert run_pipeline(source, base, point) == -signal.SIGKILL
    assert run_pipeline(source, base) == 0
    assert state(base) == clean
