"""The flows end by writing the dashboard: a link artifact and the headline figures."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import re
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client

from flows.clever_participation import clever_participation
from flows.libinsight_dataset import libinsight_dataset
from tests.servers.libinsight import libinsight_server

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]

SMALL = {"days": 2, "students": 200, "teachers": 20, "staff": 5, "schools": 3}


def _artifacts(flow_run_id: object) -> dict[str, object]:
    async def read() -> dict[str, object]:
        from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

        async with get_client() as client:
            arts = await client.read_artifacts(
                artifact_filter=ArtifactFilter(
                    flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])
                )
            )
        return {str(a.key): a for a in arts if a.key}

    return asyncio.run(read())


def test_clever_flow_writes_the_dashboard_and_its_artifacts(tmp_path):
    lake = str(tmp_path / "lake")
    state = clever_participation(
        source="testdata", lake_root=lake, demo=True, testdata=SMALL, return_state=True
    )
    assert state.is_completed()
    page = Path(lake, "exports", "dashboard", "clever.html")
    assert page.is_file() and 'data-source="clever"' in page.read_text(encoding="utf-8")
    arts = _artifacts(state.state_details.flow_run_id)
    # a link artifact (Prefect stores it as markdown: [text](link))
    link = re.fullmatch(r"\[(.+)\]\((file://.+)\)", str(arts["clever-dashboard"].data))
    assert link and link.group(1).startswith("Clever dashboard")
    assert link.group(2) == page.as_uri()
    figures = str(arts["clever-dashboard-figures"].data)
    assert "- **report days landed**: 2" in figures and "█" in figures
    assert "- **schools**: 3" in figures


def test_libinsight_flow_writes_the_dashboard_with_this_runs_drift(tmp_path):
    from prefect.blocks.system import Secret

    from edulake.demo.libinsight_server import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET

    Secret(value=DEMO_CLIENT_SECRET).save("test-dashboard-secret", overwrite=True)
    lake = str(tmp_path / "lake")
    with libinsight_server() as server:
        state = libinsight_dataset(
            base_url=server.base_url,
            dataset_id=12345,
            client_id=DEMO_CLIENT_ID,
            client_secret_block="test-dashboard-secret",
            from_date=dt.date(2026, 1, 1),
            to_date=dt.date(2026, 2, 28),
            lake_root=lake,
            demo=True,
            return_state=True,
        )
    assert state.is_completed()
    page = Path(lake, "exports", "dashboard", "libinsight.html")
    text = page.read_text(encoding="utf-8")
    assert "Drift found by this run" in text  # the run's own drift table
    arts = _artifacts(state.state_details.flow_run_id)
    assert f"({page.as_uri()})" in str(arts["libinsight-dashboard"].data)
    assert "libinsight.reference_desk_12345" in str(arts["libinsight-dashboard-figures"].data)


def test_a_dashboard_problem_does_not_fail_the_run(tmp_path, monkeypatch):
    """The data run is committed either way: a dashboard that cannot be built is a warning."""
    from edulake.report import page as page_module

    def broken() -> str:
        raise OSError("no bundle")

    monkeypatch.setattr(page_module, "javascript_bundle", broken)
    lake = str(tmp_path / "lake")
    state = clever_participation(
        source="testdata", lake_root=lake, demo=True, testdata=SMALL, return_state=True
    )
    assert state.is_completed()
    assert not os.path.exists(os.path.join(lake, "exports", "dashboard", "clever.html"))
    assert "clever-dashboard" not in _artifacts(state.state_details.flow_run_id)
    assert Path(lake, "catalog", "edulake.duckdb").is_file()  # the data run was published
