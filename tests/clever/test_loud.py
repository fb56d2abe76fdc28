"""Never silently green (issue 13), under Prefect's test harness: a missing source fails,
a stale source is an event and fails past its threshold, a bad file can be skipped."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.events.clients import AssertingEventsClient

from edulake.cli import main as cli
from edulake.connectors.files import SourceRootError
from edulake.core import clock
from edulake.core.lake import Lake, Zone
from edulake.core.landing import Ledger
from edulake.core.settings import ConfigError
from flows.clever_participation import FilesFailed, SourceStale, clever_participation
from tasks.events import SOURCE_STALE
from tests.keys import KEY

from .helpers import RU_HEADER, dp_rows, ru_rows, write

pytestmark = pytest.mark.usefixtures("prefect_harness")

USERS = [("S1001x", "c001y"), ("S1002x", "c002y")]
RAW_IDS = {raw for pair in USERS for raw in pair}
TODAY = clock.today()  # the flow's "today"
YESTERDAY = TODAY - dt.timedelta(days=1)


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDULAKE_HMAC_KEY", KEY.secret.hex())  # the hex text form


def stale_events(worker: Any) -> list[Any]:
    worker.drain()
    assert AssertingEventsClient.last is not None
    return [e for e in AssertingEventsClient.last.events if e.event == SOURCE_STALE]


def summary_of(state: Any) -> str:
    async def read() -> str:
        from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

        async with get_client() as client:
            arts = await client.read_artifacts(
                artifact_filter=ArtifactFilter(
                    flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id])
                )
            )
        (art,) = [a for a in arts if a.key == "clever-summary"]
        return str(art.data)

    return asyncio.run(read())


def dp(day: dt.date) -> str:
    return f"daily-participation/{day}-daily-participation-students.csv"


def ru(day: dt.date) -> str:
    return f"resource-usage/{day}-resource-usage-students.csv"


def run(src: str, tmp_path: Any, **kw: Any) -> Any:
    return clever_participation(
        source="folder",
        source_path=src,
        lake_root=str(tmp_path / "lake"),
        np_root=str(tmp_path / "np"),
        return_state=True,
        **kw,
    )


def test_missing_source_folder_fails_the_run_at_once(tmp_path) -> None:
    state = run(str(tmp_path / "does-not-exist"), tmp_path)
    assert state.is_failed()
    err = state.result(raise_on_failure=False)
    # refused by the up-front validation, before anything is written
    assert isinstance(err, (SourceRootError, ConfigError))
    assert str(tmp_path / "does-not-exist") in str(err)
    assert not (tmp_path / "lake").exists()


def test_only_misplaced_files_fails_naming_them(tmp_path) -> None:
    src = str(tmp_path / "src")
    write(src, f"Daily-Participation/{YESTERDAY}-daily-participation-students.csv", "x\n")
    write(src, "daily-participation-export/Students/Students.csv", "x\n")
    state = run(src, tmp_path)
    err = state.result(raise_on_failure=False)
    assert isinstance(err, SourceRootError)
    assert "not where Clever puts reports" in str(err)
    assert "daily-participation/YYYY-MM-DD-daily-participation-<role>.csv" in str(err)


def test_stale_source_emits_an_event_and_fails(tmp_path, captured_events) -> None:
    old = TODAY - dt.timedelta(days=1791)
    src = str(tmp_path / "src")
    write(src, dp(old), dp_rows(str(old), USERS))
    write(src, ru(old), ru_rows(str(old), USERS))
    state = run(src, tmp_path)
    assert state.is_failed()
    err = state.result(raise_on_failure=False)
    assert isinstance(err, SourceStale)
    assert "1791 days old (more than fail_report_age_days=7)" in str(err)
    assert str(err).count("What to do") == 1  # once, for both stale reports
    assert "Clever resource-usage: the newest report" in str(err)
    first = old + dt.timedelta(days=1)
    span = f"{first}..{YESTERDAY} (1790 days)"
    assert span in str(err)

    events = {e.resource.id: e for e in stale_events(captured_events)}
    assert sorted(events) == [
        "edulake.source.clever.daily-participation",
        "edulake.source.clever.resource-usage",
    ]
    event = events["edulake.source.clever.daily-participation"]
    assert event.resource["edulake.source"] == "clever"
    assert event.payload["report"] == "daily-participation"
    assert event.payload["newest_date"] == str(old)
    assert event.payload["age_days"] == 1791
    assert event.payload["missing_ranges"] == [span]
    assert event.payload["failing"] is True
    assert "deadline" in event.payload
    assert any(r.role == "flow-run" for r in event.related)
    for e in events.values():  # dates, counts and ranges only: no raw id, no row data
        assert not any(raw in json.dumps(e.payload) for raw in RAW_IDS)

    summary = summary_of(state)
    head = summary.splitlines()[0]
    assert head.startswith("# Clever participation run: FAILED")
    assert f"daily-participation stale: newest report {old}, 1791 days old" in head
    assert summary.count(span) == 2  # once per report's warning, never day by day
    assert str(old + dt.timedelta(days=2)) not in summary
    assert not any(raw in summary for raw in RAW_IDS)
    # the data that did arrive is committed all the same
    assert Ledger(Lake(str(tmp_path / "lake"), str(tmp_path / "np")), "clever").latest()


def test_stale_under_the_fail_threshold_warns_and_emits(tmp_path, captured_events) -> None:
    day = TODAY - dt.timedelta(days=4)
    src = str(tmp_path / "src")
    write(src, dp(day), dp_rows(str(day), USERS))
    write(src, ru(day), ru_rows(str(day), USERS))
    state = run(src, tmp_path)
    assert state.is_completed()
    summary = state.result()
    assert summary["status"] == "warning"
    assert summary["headline"].startswith("WARNING: daily-participation stale")
    assert len(stale_events(captured_events)) == 2
    # a higher fail threshold from the setting or parameter is honoured
    state = run(src, tmp_path, fail_report_age_days=3)
    assert isinstance(state.result(raise_on_failure=False), SourceStale)


def test_fresh_source_emits_no_stale_event(tmp_path, captured_events) -> None:
    src = str(tmp_path / "src")
    write(src, dp(YESTERDAY), dp_rows(str(YESTERDAY), USERS))
    write(src, ru(YESTERDAY), ru_rows(str(YESTERDAY), USERS))
    summary = run(src, tmp_path).result()
    assert summary["status"] == "ok" and summary["headline"] == "OK"
    assert stale_events(captured_events) == []


def test_a_bad_file_can_be_skipped_by_decision_until_a_new_version(tmp_path) -> None:
    src = str(tmp_path / "src")
    lake_root, np_root = str(tmp_path / "lake"), str(tmp_path / "np")
    write(src, dp(YESTERDAY), dp_rows(str(YESTERDAY), USERS))
    drifted = RU_HEADER.replace("num_access", "access_count") + ",grade\n"
    drifted += f"{YESTERDAY},1001,c001,s1,School s1,app,Math,r1,3,5\n"
    bad = write(src, ru(YESTERDAY), drifted)

    # 1. the bad file fails the run, every run while it stays
    for _ in range(2):
        err = run(src, tmp_path).result(raise_on_failure=False)
        assert isinstance(err, FilesFailed)
        assert "missing columns: num_access" in str(err) and "clever-skip" in str(err)

    # 2. acknowledged with the CLI: who/when/why, immutable, under _system
    name = f"{YESTERDAY}-resource-usage-students.csv"
    args = ["--lake-root", lake_root, "--np-root", np_root]
    assert cli(["clever-skip", name, "--reason", "grade column added by mistake", *args]) == 0
    lake = Lake(lake_root, np_root)
    (key,) = [o.key for o in lake.list(Zone.SYSTEM, "decisions/clever")]
    record = lake.read_json(Zone.SYSTEM, key)
    assert record["name"] == ru(YESTERDAY)
    assert record["reason"] == "grade column added by mistake"
    assert record["by"] and record["at"]
    assert cli(["clever-skip", name, "--reason", "another reason", *args]) == 0
    assert lake.read_json(Zone.SYSTEM, key) == record  # never rewritten

    # 3. the next run is green and lists it as skipped; the raw file stays in stage1np
    state = run(src, tmp_path)
    summary = state.result()
    assert summary["failed_files"] == []
    assert [s["file"] for s in summary["skipped_files"]] == [ru(YESTERDAY)]
    text = summary_of(state)
    assert "skipped by decision" in text.splitlines()[0]
    assert f"skipped by decision: `{ru(YESTERDAY)}`" in text
    assert "grade column added by mistake" in text
    assert not any(raw in text for raw in RAW_IDS)
    entry = Ledger(lake, "clever").latest()[ru(YESTERDAY)]
    assert lake.exists(Zone.STAGE1NP, entry.path)
    assert not lake.list(Zone.SYSTEM, f"processed/clever/{ru(YESTERDAY)}")
    # ... and in every later run's summary too
    assert [s["file"] for s in run(src, tmp_path).result()["skipped_files"]] == [ru(YESTERDAY)]

    # 4. a new version (other bytes) is processed normally again
    with open(bad, "w", encoding="utf-8") as f:
        f.write(ru_rows(str(YESTERDAY), USERS))
    summary = run(src, tmp_path).result()
    assert summary["skipped_files"] == []
    assert summary["failed_files"] == [] and summary["status"] == "ok"
    assert lake.list(Zone.SYSTEM, f"processed/clever/{ru(YESTERDAY)}")


def test_skip_by_flow_parameter(tmp_path) -> None:
    src = str(tmp_path / "src")
    write(src, dp(YESTERDAY), "not,a,clever,header\n1,2,3,4\n")
    write(src, ru(YESTERDAY), ru_rows(str(YESTERDAY), USERS))
    assert isinstance(run(src, tmp_path).result(raise_on_failure=False), FilesFailed)
    # a reason is required
    state = run(src, tmp_path, skip_files=[dp(YESTERDAY)])
    assert "needs a reason" in str(state.result(raise_on_failure=False))
    summary = run(
        src,
        tmp_path,
        skip_files=[f"{YESTERDAY}-daily-participation-students.csv"],
        skip_reason="export glitch, re-delivered tomorrow",
    ).result()
    (skip,) = summary["skipped_files"]
    assert skip["file"] == dp(YESTERDAY) and skip["by"].startswith("flow parameter skip_files")


def test_skip_refuses_unknown_and_processed_files(tmp_path, capsys) -> None:
    src = str(tmp_path / "src")
    write(src, dp(YESTERDAY), dp_rows(str(YESTERDAY), USERS))
    write(src, ru(YESTERDAY), ru_rows(str(YESTERDAY), USERS))
    run(src, tmp_path).result()
    args = ["--lake-root", str(tmp_path / "lake"), "--np-root", str(tmp_path / "np")]
    assert cli(["clever-skip", "nope.csv", "--reason", "x", *args]) == 2
    assert "not a Clever report file name" in capsys.readouterr().err
    other = f"{TODAY}-resource-usage-staff.csv"
    assert cli(["clever-skip", other, "--reason", "x", *args]) == 2
    assert "never landed" in capsys.readouterr().err
    landed = f"{YESTERDAY}-resource-usage-students.csv"
    assert cli(["clever-skip", landed, "--reason", "x", *args]) == 2
    assert "was processed: nothing to skip" in capsys.readouterr().err


def test_a_backfill_range_does_not_make_the_source_look_stale(tmp_path, captured_events) -> None:
    old = TODAY - dt.timedelta(days=30)
    src = str(tmp_path / "src")
    for day in (old, YESTERDAY):
        write(src, dp(day), dp_rows(str(day), USERS))
        write(src, ru(day), ru_rows(str(day), USERS))
    summary = run(src, tmp_path, report_from=old, report_to=old).result()
    assert summary["offered"] == 2
    fresh = summary["freshness"]["daily-participation"]
    assert fresh["newest_on_server"] == str(YESTERDAY) and not fresh["stale"]
    # yesterday is on the server but outside the range: not landed, an event warns
    gap = f"{old + dt.timedelta(days=1)}..{YESTERDAY - dt.timedelta(days=1)} (28 days)"
    assert fresh["missing_ranges"] == [gap, f"{YESTERDAY} (1 day)"]
    assert fresh["deadline"] == str(YESTERDAY + dt.timedelta(days=14))
    assert summary["status"] == "warning"
    assert {e.resource.id for e in stale_events(captured_events)} == {
        "edulake.source.clever.daily-participation",
        "edulake.source.clever.resource-usage",
    }


def test_the_run_counts_age_from_the_pinned_today(tmp_path, monkeypatch) -> None:
    """The CI run that crossed midnight UTC: the flow's today and the test's must be one
    clock. A pinned EDULAKE_TODAY (not the wall clock) is what the run's ages count from."""
    pinned = dt.date(2030, 6, 15)
    monkeypatch.setenv("EDULAKE_TODAY", pinned.isoformat())
    old = pinned - dt.timedelta(days=30)
    src = str(tmp_path / "src")
    write(src, dp(old), dp_rows(str(old), USERS))
    write(src, ru(old), ru_rows(str(old), USERS))
    err = run(src, tmp_path).result(raise_on_failure=False)
    assert isinstance(err, SourceStale)
    assert "30 days old (more than fail_report_age_days=7)" in str(err)
    assert f"..{pinned - dt.timedelta(days=1)} (29 days)" in str(err)
