"""The LibInsight run report (issue 14): problems first (bad records with their reasons,
paging trouble), counts in words, and the paging progress artifact read back from the API."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

from edulake.demo.libinsight_server import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET
from flows.libinsight_dataset import libinsight_dataset
from tests.reliability.test_libinsight_bad_input import _damage_records
from tests.servers.libinsight import libinsight_server

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]
D = dt.date


def artifacts_of(state: Any) -> dict[str, Any]:
    async def read() -> list[Any]:
        async with get_client() as client:
            return await client.read_artifacts(
                artifact_filter=ArtifactFilter(
                    flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id])
                )
            )

    return {a.key: a for a in sorted(asyncio.run(read()), key=lambda a: a.created)}


def test_summary_problems_first_in_words_and_paging_progress(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("EDULAKE_LIBINSIGHT_CLIENT_SECRET", DEMO_CLIENT_SECRET)
    with libinsight_server(
        bad_pages={2: "totals-grown"}, bad_times=1, rewrite=_damage_records
    ) as srv:
        state = libinsight_dataset(
            base_url=srv.base_url,
            dataset_id=12345,
            client_id=DEMO_CLIENT_ID,
            client_secret_block=None,
            lake_root=str(tmp_path / "lake"),
            demo=True,
            from_date=D(2022, 1, 1),
            to_date=D(2022, 3, 31),
            concurrency=2,
            return_state=True,
        )
    summary = state.result()
    arts = artifacts_of(state)
    text = str(arts["libinsight-summary"].data)
    assert text.splitlines()[0].startswith("# LibInsight dataset 12345 -> libinsight.")
    problems, counts = text.index("## Problems"), text.index("## Counts")
    bad = text.index(f"**BAD RECORDS** {summary['quarantined']} record(s) not kept, in `")
    paging = text.index("**WARNING** while paging: 1 fetches started over")
    assert problems < bad < paging < counts
    (line,) = [x for x in text.splitlines() if "**BAD RECORDS**" in x]
    assert "bad _id (2)" in line and "(protected zone)" in line
    assert "dropped rows" not in text
    # words, not a dump of the summary's counters or a repr
    for counter in ("watermark_before", "token_fetches", "rows_written", "months_rewritten"):
        assert counter not in text
    assert not re.search(r"[{}\[\]]|': ", text), text
    assert "a backfill of the dates asked for" in text and "mode" not in text
    assert f"- pages: {summary['pages']} (" in text
    assert "- watermark: none -> 2022-03-31" in text
    # the drift table says "bad records", not "dropped rows"
    drift = str(arts["libinsight-drift"].data)
    assert "bad records" in drift and "dropped rows" not in drift
    # progress: one artifact per window fetch, done, counting the pages of the fetch kept
    progress = arts["libinsight-paging-progress"]
    assert progress.type == "progress" and float(progress.data) == 100.0
    assert f"pages fetched: {summary['pages']} of {summary['pages']}" in progress.description
