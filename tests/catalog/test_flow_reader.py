"""An analyst's read-only connection held open, in another process, through a whole
``clever-participation`` flow run under Prefect: the run completes, the reader sees the
old state until it reconnects, then the new."""

from __future__ import annotations

import json
import os

import pytest

from flows.clever_participation import clever_participation

from .helpers import PARAMS, catalog_state, reader, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]
DP = "clever.daily_participation"


def _read(path: str) -> list[object]:
    with open(path) as f:
        return list(json.load(f))


def test_a_reader_held_open_through_a_flow_run(tmp_path):
    base = str(tmp_path / "run")
    lake = f"{base}/lake"
    clever_participation(
        source="testdata",
        lake_root=lake,
        np_root=f"{base}/np",
        demo=True,
        testdata={"days": 2, **PARAMS},
    )
    before = list(catalog_state(base)[DP])
    folder = str(tmp_path / "reader")
    os.makedirs(folder)
    with reader(f"{lake}/catalog/edulake.duckdb", folder):
        assert _read(f"{folder}/opened.json") == before
        summary = clever_participation(
            source="testdata",
            lake_root=lake,
            np_root=f"{base}/np",
            demo=True,
            testdata={"days": 3, **PARAMS},
        )
        assert summary["failed_files"] == [] and summary["files_processed"] > 0
        open(f"{folder}/look", "w").close()
        wait_for(f"{folder}/held.json")
        assert _read(f"{folder}/held.json") == before  # still the old state, whole
        open(f"{folder}/reconnect", "w").close()
        wait_for(f"{folder}/reconnected.json")
    after = list(catalog_state(base)[DP])
    assert after[0] > before[0]
    assert _read(f"{folder}/reconnected.json") == after
