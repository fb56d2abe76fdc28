"""Per-run cost flat in history: a no-op daily run reads the same whatever the lake's age.

The ledger and processed state are read through their indexes (edulake/core/index.py):
a manifest compacted at the end of a run plus a journal of what came since. Counted
through the instrumented filesystem (edulake/core/counting.py), a no-op run after 10
days of history and after 100 makes exactly the same requests.
"""

from __future__ import annotations

import datetime as dt
import shutil

import pytest

from edulake.connectors.files import FolderSource
from edulake.core.counting import count_requests
from edulake.core.index import RecordIndex
from edulake.core.lake import Lake, Zone
from edulake.core.landing import Ledger
from edulake.demo.clever_testdata import TestDataSource
from edulake.demo.history import daily_run, synthesize_history
from edulake.privacy.pseudonym import Pseudonymizer
from edulake.sources.clever import pipeline
from tests.keys import KEY

PARAMS = {"days": 2, "students": 40, "teachers": 4, "staff": 2, "schools": 2}
LAST_SYNTHETIC = dt.date(2022, 1, 2)  # the test data starts on 2022-01-03


@pytest.fixture(scope="module")
def source_dir(tmp_path_factory) -> str:
    folder = str(tmp_path_factory.mktemp("history-src") / "src")
    return TestDataSource(**PARAMS, cache_dir=folder).ensure_generated()


def aged_lake(root: str, days: int, source_dir: str) -> Lake:
    """A lake with ``days`` days of history, then one real run (which builds the indexes)."""
    lake = Lake(f"{root}/lake", f"{root}/np")
    synthesize_history(lake, days, LAST_SYNTHETIC)
    result = daily_run(lake, FolderSource(source_dir), Pseudonymizer(KEY))
    assert result["landed"] == result["processed"] == 12
    return lake


def noop_requests(lake: Lake, source_dir: str) -> dict[str, int]:
    lake = Lake(lake.main.uri, lake.protected.uri)  # a new run: nothing cached
    with count_requests(lake) as counter:
        result = daily_run(lake, FolderSource(source_dir), Pseudonymizer(KEY))
    assert result == {"offered": 12, "landed": 0, "processed": 0}
    return counter.snapshot()


def test_noop_run_requests_do_not_grow_with_history(tmp_path, source_dir):
    short = aged_lake(str(tmp_path / "short"), 10, source_dir)
    long = aged_lake(str(tmp_path / "long"), 100, source_dir)
    assert len(Ledger(long, "clever").entries()) == 100 * 6 + 12
    counts = noop_requests(short, source_dir)
    assert counts == noop_requests(long, source_dir)
    # a no-op run writes nothing under _system: no record, no journal, no manifest
    assert counts.get("PUT", 0) == counts.get("MOVE", 0)  # only the catalog's own files
    assert sum(counts.values()) < 120, counts


def test_without_an_index_a_noop_run_grows_with_history(tmp_path, source_dir):
    """The attack: the same measurement with the manifests deleted before each run."""
    totals = []
    for days in (10, 100):
        lake = aged_lake(str(tmp_path / str(days)), days, source_dir)
        RecordIndex(lake, "ledger/clever").drop()
        RecordIndex(lake, "processed/clever").drop()
        with count_requests(lake) as counter:
            pipeline.pending(lake)
        totals.append(counter.counts["GET"])
    assert totals[1] - totals[0] == 2 * 90 * 6  # every ledger and processed record read


def test_manifest_older_than_the_records_is_caught_up(tmp_path, source_dir):
    """A run killed before its compaction leaves journal entries: the next run reads them."""
    lake = aged_lake(str(tmp_path), 10, source_dir)
    before = RecordIndex(lake, "ledger/clever").load()
    assert before.manifest and not before.journal
    # a newer version lands and is processed, but the compaction never happens
    new = tmp_path / "src2"
    _copy_tree(source_dir, str(new))
    changed = new / "daily-participation" / "2022-01-04-daily-participation-students.csv"
    lines = changed.read_text().splitlines(keepends=True)
    changed.write_text("".join(lines[:-1]))  # one row fewer: other bytes
    src = FolderSource(str(new))
    pipeline.land_reports(lake, src, pipeline.discover(src).reports)
    ledger = RecordIndex(lake, "ledger/clever").load()
    assert ledger.manifest and len(ledger.journal) == 1  # the manifest is behind
    assert [e.name for e in pipeline.pending(lake)] == [
        "daily-participation/2022-01-04-daily-participation-students.csv"
    ]
    pipeline.process_pending(lake, pipeline.pending(lake), Pseudonymizer(KEY))  # compacts
    after = RecordIndex(lake, "ledger/clever").load()
    assert after.manifest and not after.journal and len(after.records) == 10 * 6 + 13
    assert not lake.list(Zone.SYSTEM, "index/ledger/clever/journal")
    assert pipeline.pending(lake) == []


def test_deleted_records_are_not_trusted_from_the_manifest(tmp_path, source_dir):
    """Deleting the processed records (as a key rotation does) makes every file pending."""
    lake = aged_lake(str(tmp_path), 10, source_dir)
    assert pipeline.pending(lake) == []
    lake.delete_prefix(Zone.SYSTEM, "processed/clever")
    snap = RecordIndex(lake, "processed/clever").load()
    assert snap.stale and not snap.records
    assert len(pipeline.pending(lake)) == 10 * 6 + 12


def _copy_tree(src: str, dst: str) -> None:
    shutil.copytree(src, dst)
