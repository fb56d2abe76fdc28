"""The athena-query flow (Prefect harness + moto) and the event that chains it to pipelines."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.events.clients import AssertingEventsClient
from prefect.events.schemas.deployment_triggers import DeploymentEventTrigger
from prefect.events.utilities import emit_event

from edulake.catalog.athena import table_name
from flows.athena_query import athena_query
from tasks.events import DATA_COMMITTED, emit_data_committed

pytestmark = pytest.mark.usefixtures("prefect_harness")
TRIGGER_FILE = Path(__file__).parents[2] / "deployments" / "triggers" / "athena-query.yaml"
RESULTS = "s3://edulake-athena-results/flows/"


async def _artifact(key: str, flow_run_id: Any) -> Any:
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        ArtifactFilterKey,
    )

    async with get_client() as client:
        (art,) = await client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=[key]),
                flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]),
            )
        )
        return art


@pytest.fixture
def athena_env(moto: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Settings and boto3's own endpoint variable pointing Athena at moto."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_ATHENA", moto)
    monkeypatch.setenv("EDULAKE_CATALOG__KIND", "glue")  # the duckdb default runs locally
    monkeypatch.setenv("EDULAKE_CATALOG__ATHENA_WORKGROUP", "bi")
    monkeypatch.setenv("EDULAKE_CATALOG__ATHENA_OUTPUT_LOCATION", RESULTS)
    monkeypatch.setenv("EDULAKE_CATALOG__GLUE_DATABASE_PREFIX", "prod")
    client = boto3.client("athena", endpoint_url=moto, region_name="us-east-1")
    client.create_work_group(Name="bi")
    return client


def test_flow_runs_named_queries_and_views_with_a_run_artifact(athena_env):
    state = athena_query(
        query_names=["libinsight_tableau_extract"], views_for=["clever"], return_state=True
    )
    summary = state.result()
    ids = athena_env.list_query_executions(WorkGroup="bi")["QueryExecutionIds"]
    queries = [athena_env.get_query_execution(QueryExecutionId=i)["QueryExecution"] for i in ids]
    texts = sorted(q["Query"] for q in queries)
    views = [t for t in texts if t.startswith("CREATE OR REPLACE VIEW prod_clever.")]
    assert len(views) == len(summary["views"]) >= 1  # the Clever dashboard views
    assert all("FROM prod_clever." in v for v in views)
    (extract,) = [q for q in queries if "prod_libinsight.reference_desk" in q["Query"]]
    assert extract["WorkGroup"] == "bi"

    (row,) = summary["queries"]
    assert row["query"] == "libinsight_tableau_extract"
    assert row["query_id"] == extract["QueryExecutionId"]
    assert row["state"] == "SUCCEEDED"
    assert row["results"] == f"{RESULTS}{row['query_id']}.csv"
    assert row["data_scanned_bytes"] == 0

    flow_run_id = state.state_details.flow_run_id
    table = asyncio.run(_artifact("athena-queries", flow_run_id))
    assert row["query_id"] in str(table.data)
    markdown = asyncio.run(_artifact("athena-summary", flow_run_id))
    assert row["results"] in markdown.data


def _drained(worker: Any) -> list[Any]:
    worker.drain()
    assert AssertingEventsClient.last is not None
    return [e for e in AssertingEventsClient.last.events if e.event == DATA_COMMITTED]


def _trigger() -> DeploymentEventTrigger:
    (spec,) = yaml.safe_load(TRIGGER_FILE.read_text())["triggers"]
    return DeploymentEventTrigger(**{k: v for k, v in spec.items() if k != "type"})


def _fires(trigger: DeploymentEventTrigger, event: Any) -> bool:
    """Whether the trigger's expect and match select this event (as the server does)."""
    return event.event in trigger.expect and trigger.match.matches(event.resource)


def test_committed_libinsight_data_fires_the_athena_trigger(captured_events):
    @flow(name="libinsight-like-run")
    def pipeline() -> None:
        emit_data_committed("libinsight", ["reference_desk"], {"reference_desk": 42})

    pipeline()
    (event,) = _drained(captured_events)
    assert event.resource.id == "edulake.table.libinsight.reference_desk"
    assert event.resource["edulake.source"] == "libinsight"
    assert event.payload == {"source": "libinsight", "table": "reference_desk", "rows": 42}
    assert any(r.role == "flow-run" for r in event.related)  # which run committed it

    trigger = _trigger()
    assert _fires(trigger, event)
    assert trigger.parameters == {
        "query_names": ["libinsight_tableau_extract"],
        "mode": "select",
        "table": "{{ event.resource.id }}",  # the committed table gets its own extract
    }
    assert table_name(event.resource.id) == "reference_desk"
    assert set(trigger.parameters) <= set(athena_query.parameters.properties)


def test_other_sources_and_events_do_not_fire_it(captured_events):
    emit_data_committed("clever", ["daily_participation", "resource_usage"], 10)
    emit_event(
        event="edulake.data.landed", resource={"prefect.resource.id": "edulake.table.libinsight.x"}
    )
    events = _drained(captured_events)
    assert [e.resource.id for e in events] == [
        "edulake.table.clever.daily_participation",
        "edulake.table.clever.resource_usage",
    ]
    assert [e.payload["rows"] for e in events] == [10, 10]
    trigger = _trigger()
    assert not any(_fires(trigger, e) for e in events)
    landed = AssertingEventsClient.last.events[-1]
    assert landed.event == "edulake.data.landed"
    assert not _fires(trigger, landed)
