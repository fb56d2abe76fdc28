"""A dashboard that cannot be written is not silently green: the run stays completed (its
data is committed) and emits ``edulake.report.failed``, which the bundled automation turns
into a notification; nothing of the failing error's text reaches the event."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from prefect import flow
from prefect.events.actions import SendNotification
from prefect.events.clients import AssertingEventsClient
from prefect.events.schemas.automations import AutomationCore, EventTrigger
from prefect.server.utilities.user_templates import render_user_template_sync

from edulake.core.lake import Lake
from tasks.events import REPORT_FAILED
from tasks.report import publish_report

FILE = Path(__file__).parents[2] / "deployments" / "automations" / "report-failed.yaml"
PLANTED = "S77001 hunter2"  # what a failing chart library might quote


@pytest.mark.usefixtures("prefect_harness")
def test_a_dashboard_failure_is_an_event_and_the_run_stays_green(
    tmp_path, captured_events, monkeypatch
) -> None:
    import edulake.report as report

    def broken(*_a: Any, **_k: Any) -> Any:
        raise ValueError(f"cannot chart row {PLANTED}")

    monkeypatch.setattr(report, "build_page", broken)
    lake = Lake(str(tmp_path / "lake"), np_root=str(tmp_path / "np"))

    @flow
    def data_run() -> Any:
        return publish_report(lake, "clever", "duckdb")

    state = data_run(return_state=True)
    assert state.is_completed() and state.result() is None
    captured_events.drain()
    assert AssertingEventsClient.last is not None
    (event,) = [e for e in AssertingEventsClient.last.events if e.event == REPORT_FAILED]
    assert event.resource.id == "edulake.report.clever"
    assert event.payload["page"] == "exports/dashboard/clever.html"
    assert "ValueError" in event.payload["reason"]
    assert "S77001" not in event.model_dump_json() and "hunter2" not in event.model_dump_json()

    auto = AutomationCore.model_validate(yaml.safe_load(FILE.read_text()))
    assert isinstance(auto.trigger, EventTrigger) and auto.trigger.expect == {REPORT_FAILED}
    assert auto.trigger.match.matches(event.resource)
    (action,) = auto.actions
    assert isinstance(action, SendNotification)
    body = render_user_template_sync(action.body, {"event": event})
    assert "could not be written" in body and "edulake report --source clever" in body
    assert "S77001" not in body
