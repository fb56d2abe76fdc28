"""The Clever run report (issue 14): problems first, words not reprs, ranges not days,
the useful columns and problem files first, and progress artifacts read back from the API."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

from edulake.core import clock
from flows.clever_participation import FilesFailed, clever_participation
from tasks.clever import HOW_READ
from tests.keys import KEY

from .helpers import RU_HEADER, dp_rows, ru_rows, write

pytestmark = pytest.mark.usefixtures("prefect_harness")

USERS = [(f"S10{i}x", f"c0{i}y") for i in range(10, 16)]
RAW_IDS = {raw for pair in USERS for raw in pair}
TODAY = clock.today()
OLD = TODAY - dt.timedelta(days=400)  # a run on old data: ~400 days missing since


def dp(day: dt.date) -> str:
    return f"daily-participation/{day}-daily-participation-students.csv"


def ru(day: dt.date) -> str:
    return f"resource-usage/{day}-resource-usage-students.csv"


def artifacts_of(state: Any) -> dict[str, Any]:
    """Every artifact of the run, by key (the newest of each key)."""

    async def read() -> list[Any]:
        async with get_client() as client:
            return await client.read_artifacts(
                artifact_filter=ArtifactFilter(
                    flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id])
                )
            )

    return {a.key: a for a in sorted(asyncio.run(read()), key=lambda a: a.created)}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One run on old data: a file with bad rows, a file with a wrong header, stale."""
    tmp = tmp_path_factory.mktemp("report")
    src = str(tmp / "src")
    good = dp_rows(str(OLD), USERS)
    bad = good + f"{OLD},S1099x,c099y,s1,School s1,true,not-a-number,1\n"
    write(src, dp(OLD), bad)
    write(src, dp(OLD + dt.timedelta(days=1)), dp_rows(str(OLD + dt.timedelta(days=1)), USERS))
    drifted = RU_HEADER.replace("num_access", "access_count") + "\n"
    write(src, ru(OLD), drifted + ru_rows(str(OLD), USERS).split("\n", 1)[1])
    with pytest.MonkeyPatch.context() as env:
        env.setenv("EDULAKE_HMAC_KEY", KEY.secret.hex())
        return clever_participation(
            source="folder",
            source_path=src,
            lake_root=str(tmp / "lake"),
            np_root=str(tmp / "np"),
            max_quarantine_share=0.5,
            return_state=True,
        )


def test_summary_problems_first_in_words_with_ranges(run: Any) -> None:
    assert isinstance(run.result(raise_on_failure=False), FilesFailed)
    text = str(artifacts_of(run)["clever-summary"].data)
    lines = text.splitlines()
    assert lines[0].startswith("# Clever participation run: FAILED")
    problems, counts = text.index("## Problems"), text.index("## Counts")
    assert problems < counts
    failed = text.index(f"**FAILED** `{ru(OLD)}`")
    quarantined = text.index(f"**QUARANTINED** 1 of {len(USERS) + 1} rows of `{dp(OLD)}`")
    stale = text.index("**WARNING** daily-participation: the newest")
    assert problems < failed < quarantined < stale < counts
    # the quarantine file and why its rows are there (column and check, never a value)
    (line,) = [x for x in lines if "**QUARANTINED**" in x]
    assert "in `clever/" in line and "(protected zone)" in line
    assert "why: num_logins: not a valid" in line and "(1)" in line
    assert "not-a-number" not in text and not any(raw in text for raw in RAW_IDS)
    # human words: no Python repr, no counter names
    assert not re.search(r"[{}\[\]]|': ", text), text
    for counter in ("rows_written", "files_processed", "partitions_changed", "landed':"):
        assert counter not in text
    assert "- landing: 3 landed" in text
    assert "rows written" in text and "quarantined" in text
    # ~400 missing days: ranges, never one line (or one date) per day
    assert len(re.findall(r"\d{4}-\d{2}-\d{2}", text)) < 40
    first_missing = OLD + dt.timedelta(days=2)
    assert f"{first_missing}..{TODAY - dt.timedelta(days=1)}" in text
    assert str(first_missing + dt.timedelta(days=1)) not in text


def test_processing_table_problem_files_and_useful_columns_first(run: Any) -> None:
    rows = artifacts_of(run)["clever-processing"].data
    rows = json.loads(rows) if isinstance(rows, str) else rows
    assert [r["file"] for r in rows] == [ru(OLD), dp(OLD), dp(OLD + dt.timedelta(days=1))]
    assert list(rows[0])[:5] == [
        "file",
        "status",
        "rows quarantined",
        "quarantine file (protected)",
        "error",
    ]
    assert rows[0]["status"] == "FAILED: the header does not match the report"
    assert "missing columns: num_access" in rows[0]["error"]
    assert rows[1]["rows quarantined"] == 1 and rows[1]["quarantine file (protected)"]
    assert rows[1]["why quarantined"].startswith("num_logins: not a valid")
    assert rows[2]["status"] == "ok" and rows[2]["rows quarantined"] == 0
    assert {r["read"] for r in rows} <= set(HOW_READ.values())


def test_progress_artifacts_reach_the_api(run: Any) -> None:
    arts = artifacts_of(run)
    for key, what in [
        ("clever-landing-progress", "looked at for landing: 3 of 3"),
        ("clever-processing-progress", "pseudonymized: 3 of 3"),
    ]:
        art = arts[key]
        assert art.type == "progress"
        assert float(art.data) == 100.0
        assert what in (art.description or "")
