"""Readers never block writers, writers never block readers.

An analyst's BI tool holds ``edulake.duckdb`` open read-only from another process; the
pipeline publishes into a copy and swaps it in (``os.replace``). The reader keeps the old
state until it reconnects; ``edulake query`` works while a publish is in progress; a
killed publish leaves the live files untouched and its temp file is removed next time.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys

import pytest

from tests.envs import without_edulake
from tests.reliability.helpers import REPO

from .helpers import (
    catalog_state,
    clean_build,
    db_path,
    np_dir,
    reader,
    run_pipeline,
    start,
    wait_for,
)

pytestmark = pytest.mark.slow  # real subprocesses
DP = "clever.daily_participation"


def _read(path: str) -> list[object]:
    with open(path) as f:
        return list(json.load(f))


def _touch(path: str) -> None:
    open(path, "w").close()


def _sha(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _swap_leftovers(folder: str) -> list[str]:
    return sorted(n for n in os.listdir(folder) if n.startswith(".") and ".swap" in n)


def test_publish_succeeds_while_an_analyst_holds_the_catalog_open(
    day1_source, full_source, tmp_path
):
    base = str(tmp_path / "run")
    assert run_pipeline(day1_source, base) == 0
    before = list(catalog_state(base)[DP])
    folder = str(tmp_path / "reader")
    os.makedirs(folder)
    with reader(db_path(base), folder):
        assert _read(f"{folder}/opened.json") == before
        # was: IOException: Could not set lock on file ... edulake.duckdb
        assert run_pipeline(full_source, base) == 0
        _touch(f"{folder}/look")
        wait_for(f"{folder}/held.json")
        assert _read(f"{folder}/held.json") == before  # the old state, whole
        _touch(f"{folder}/reconnect")
        wait_for(f"{folder}/reconnected.json")
    after = list(catalog_state(base)[DP])
    assert after != before and after[0] > before[0]
    assert _read(f"{folder}/reconnected.json") == after  # the new state, whole


def _query(base: str, sql: str, steward: bool = False) -> subprocess.CompletedProcess[str]:
    args = ["--lake-root", f"{base}/lake"] + (
        ["--steward", "--np-root", f"{base}/np"] if steward else []
    )
    env = without_edulake()
    return subprocess.run(
        [sys.executable, "-m", "edulake", "query", sql, *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_edulake_query_works_while_a_publish_is_in_progress(day1_source, full_source, tmp_path):
    base = str(tmp_path / "run")
    assert run_pipeline(day1_source, base) == 0
    old_rows = catalog_state(base)[DP][0]
    pause = tmp_path / "pause"
    pause.mkdir()
    env = {"EDULAKE_PAUSE_AT": "publish.swapping", "EDULAKE_PAUSE_DIR": str(pause)}
    proc = start("tests.reliability.crash_runner", [full_source, f"{base}/lake", f"{base}/np"], env)
    try:
        wait_for(str(pause / "publish.swapping.reached"), proc)
        # the publish is held just before its swap: the CLI opens the live file meanwhile
        q = _query(base, f"SELECT COUNT(*) AS n FROM {DP}")
        assert q.returncode == 0, q.stderr[-2000:]
        assert str(old_rows) in q.stdout.split()
        s = _query(base, "SELECT COUNT(*) AS n FROM clever_np.sis_id_lookup", steward=True)
        assert s.returncode == 0, s.stderr[-2000:]
        _touch(str(pause / "publish.swapping.release"))
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    new_rows = catalog_state(base)[DP][0]
    assert new_rows > old_rows
    q = _query(base, f"SELECT COUNT(*) AS n FROM {DP}")
    assert q.returncode == 0 and str(new_rows) in q.stdout.split()


@pytest.mark.parametrize("point", ["publish.transaction:1", "publish.committed:1"])
def test_a_killed_publish_leaves_the_live_files_untouched(
    day1_source, full_source, tmp_path, point
):
    base = str(tmp_path / "run")
    assert run_pipeline(day1_source, base) == 0
    live = {p: _sha(p) for p in (db_path(base), f"{np_dir(base)}/clever_np.duckdb")}
    before = catalog_state(base)
    assert run_pipeline(full_source, base, point) == -signal.SIGKILL
    assert {p: _sha(p) for p in live} == live  # not a byte changed
    assert not [p for p in live if os.path.exists(f"{p}.wal")]  # nor a change pending
    assert catalog_state(base) == before
    leftovers = _swap_leftovers(os.path.dirname(db_path(base))) + _swap_leftovers(np_dir(base))
    assert leftovers, "expected the killed publish's temp file"
    assert run_pipeline(full_source, base) == 0
    assert _swap_leftovers(os.path.dirname(db_path(base))) == []
    assert _swap_leftovers(np_dir(base)) == []
    assert catalog_state(base) == clean_build(base, full_source, str(tmp_path / "clean"))
