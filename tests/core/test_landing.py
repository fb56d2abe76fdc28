from __future__ import annotations

import datetime as dt
import hashlib
import io
from contextlib import contextmanager

import pytest

from edulake.core.lake import Lake, Zone
from edulake.core.landing import IncompleteTransferError, Ledger, SourceFile, land_file


def _opener(data: dict[str, bytes]):
    @contextmanager
    def open_(f: SourceFile):
        yield io.BytesIO(data[f.name])

    return open_


def _key(f: SourceFile, day: dt.date) -> str:
    return f"src/{day.isoformat()}/{f.name}"


def test_land_skip_and_new_version(tmp_path):
    lake = Lake(str(tmp_path))
    ledger = Ledger(lake, "src")
    data = {"a.csv": b"one"}
    day1 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    r1 = land_file(lake, ledger, SourceFile("a.csv", 3, 100.0), _opener(data), _key, now=day1)
    assert r1.outcome == "landed"
    assert lake.read_bytes(Zone.STAGE1NP, "src/2026-01-01/a.csv") == b"one"

    # same size + mtime: skipped without opening the file
    r2 = land_file(lake, ledger, SourceFile("a.csv", 3, 100.0), _opener({}), _key, now=day1)
    assert r2.outcome == "unchanged"

    # different mtime, same bytes: downloaded, recognised by checksum, not landed again
    r3 = land_file(lake, ledger, SourceFile("a.csv", 3, 200.0), _opener(data), _key, now=day1)
    assert r3.outcome == "same-content"

    # changed content the same day: a new version beside the old one, never overwritten
    data["a.csv"] = b"two"
    later = day1 + dt.timedelta(hours=1)
    r4 = land_file(lake, ledger, SourceFile("a.csv", 3, 300.0), _opener(data), _key, now=later)
    assert r4.outcome == "new-version"
    assert r4.entry is not None and r4.entry.path != "src/2026-01-01/a.csv"
    assert lake.read_bytes(Zone.STAGE1NP, "src/2026-01-01/a.csv") == b"one"
    assert lake.read_bytes(Zone.STAGE1NP, r4.entry.path) == b"two"
    assert [v.sha256 for v in ledger.versions("a.csv")] == [r1.entry.sha256, r4.entry.sha256]
    assert ledger.latest()["a.csv"].sha256 == r4.entry.sha256


def test_short_transfer_commits_nothing(tmp_path):
    lake = Lake(str(tmp_path))
    ledger = Ledger(lake, "src")
    with pytest.raises(IncompleteTransferError):
        land_file(lake, ledger, SourceFile("a.csv", 10, 1.0), _opener({"a.csv": b"abc"}), _key)
    assert lake.list(Zone.STAGE1NP) == []
    assert ledger.entries() == []


def test_killed_before_the_ledger_record_is_repaired_on_a_later_day(tmp_path, monkeypatch):
    """Raw file committed, process gone before the ledger record: the next run, on another
    landing day, records the copy already there instead of landing a second one."""
    lake = Lake(str(tmp_path))
    ledger = Ledger(lake, "src")
    data = {"a.csv": b"one,two\n"}
    day1 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    day2 = dt.datetime(2026, 1, 2, tzinfo=dt.UTC)

    def killed(entry):
        raise SystemExit("killed")  # stands in for SIGKILL: nothing after this point runs

    with monkeypatch.context() as m:
        m.setattr(ledger, "record", killed)
        with pytest.raises(SystemExit):
            land_file(lake, ledger, SourceFile("a.csv", 8, 1.0), _opener(data), _key, now=day1)
    assert [o.key for o in lake.list(Zone.STAGE1NP)] == ["src/2026-01-01/a.csv"]
    assert ledger.versions("a.csv") == []

    r = land_file(lake, ledger, SourceFile("a.csv", 8, 1.0), _opener(data), _key, now=day2)
    assert r.outcome == "landed"
    assert r.entry is not None and r.entry.path == "src/2026-01-01/a.csv"
    assert [o.key for o in lake.list(Zone.STAGE1NP)] == ["src/2026-01-01/a.csv"]
    assert [v.path for v in ledger.versions("a.csv")] == ["src/2026-01-01/a.csv"]
    assert not [o.key for o in lake.list(Zone.SYSTEM) if o.key.endswith(".intent")]


def test_an_intent_whose_file_never_arrived_is_ignored(tmp_path):
    """Killed before the commit: the intent names a key with nothing there, so the bytes
    land at today's key; a different file at the intended key is never adopted."""
    lake = Lake(str(tmp_path))
    ledger = Ledger(lake, "src")
    data = {"a.csv": b"one,two\n"}
    sha = hashlib.sha256(data["a.csv"]).hexdigest()
    ledger.intend("a.csv", sha, "src/2026-01-01/a.csv")
    day2 = dt.datetime(2026, 1, 2, tzinfo=dt.UTC)
    r = land_file(lake, ledger, SourceFile("a.csv", 8, 1.0), _opener(data), _key, now=day2)
    assert r.entry is not None and r.entry.path == "src/2026-01-02/a.csv"

    other = {"b.csv": b"three,four\n"}
    sha_b = hashlib.sha256(other["b.csv"]).hexdigest()
    lake.write_bytes(Zone.STAGE1NP, "src/2026-01-01/b.csv", b"something else\n")
    ledger.intend("b.csv", sha_b, "src/2026-01-01/b.csv")
    r = land_file(lake, ledger, SourceFile("b.csv", 11, 1.0), _opener(other), _key, now=day2)
    assert r.entry is not None and r.entry.path == "src/2026-01-02/b.csv"
    assert lake.read_bytes(Zone.STAGE1NP, "src/2026-01-02/b.csv") == other["b.csv"]


def test_an_intent_left_behind_a_finished_landing_is_dropped(tmp_path):
    """Killed between the ledger record and dropping the intent: the next look cleans up."""
    from edulake.core.landing import Ledger, LedgerEntry

    lake = Lake(str(tmp_path / "lake"))
    ledger = Ledger(lake, "clever")
    entry = LedgerEntry(
        source="clever",
        name="f.csv",
        sha256="ab" * 32,
        size=1,
        mtime=None,
        path="clever/f.csv",
        landed_at="2026-01-01T00:00:00+00:00",
        flow_run_id=None,
        attrs={},
    )
    ledger.intend(entry.name, entry.sha256, entry.path)
    ledger.record(entry)  # ... and the process died before ledger.done()
    assert [v.sha256 for v in ledger.versions("f.csv")] == [entry.sha256]
    assert [o.key for o in lake.list(Zone.SYSTEM, "ledger/clever")] == [
        f"ledger/clever/f.csv/{entry.sha256}.json"
    ]
