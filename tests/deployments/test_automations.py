"""The source-stale automation: parses as Prefect's AutomationCore, fires on the event the
Clever flow emits, and its notification renders with the payload (and no raw data)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import yaml
from prefect.events import emit_event
from prefect.events.actions import SendNotification
from prefect.events.clients import AssertingEventsClient
from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture
from prefect.server.utilities.user_templates import render_user_template_sync

from edulake.sources.clever.freshness import check_freshness
from tasks.events import SOURCE_STALE, emit_source_stale

FILE = Path(__file__).parents[2] / "deployments" / "automations" / "source-stale.yaml"


def automation() -> AutomationCore:
    return AutomationCore.model_validate(yaml.safe_load(FILE.read_text()))


def test_the_file_parses_as_prefect_automation() -> None:
    auto = automation()
    assert auto.name == "edulake-source-stale"
    assert isinstance(auto.trigger, EventTrigger)
    assert auto.trigger.posture == Posture.Reactive
    assert auto.trigger.expect == {SOURCE_STALE}
    (action,) = auto.actions
    assert isinstance(action, SendNotification)


@pytest.mark.usefixtures("prefect_harness")
def test_it_fires_on_the_clever_event_and_renders(captured_events) -> None:
    today = dt.date(2026, 12, 1)
    old = dt.date(2022, 1, 5)
    report = check_freshness([old], [old], today, report="daily-participation")
    emit_source_stale("clever", "daily-participation", report.event_payload())
    # not a source resource: the automation must not fire on it
    emit_event(event=SOURCE_STALE, resource={"prefect.resource.id": "edulake.table.clever.x"})
    captured_events.drain()
    assert AssertingEventsClient.last is not None
    events = [e for e in AssertingEventsClient.last.events if e.event == SOURCE_STALE]
    auto = automation()
    trigger = auto.trigger
    assert isinstance(trigger, EventTrigger)
    fired = [e for e in events if e.event in trigger.expect and trigger.match.matches(e.resource)]
    assert [e.resource.id for e in fired] == ["edulake.source.clever.daily-participation"]
    (action,) = auto.actions
    assert isinstance(action, SendNotification)
    body = render_user_template_sync(action.body, {"event": fired[0]})
    subject = render_user_template_sync(action.subject, {"event": fired[0]})
    assert subject == "edulake: edulake.source.clever.daily-participation is stale"
    assert "newest data 2022-01-05, 1791 days old" in body
    assert "2022-01-06..2026-11-30 (1790 days)" in body
    assert "The run FAILED" in body
    assert "{{" not in body and "{%" not in body
