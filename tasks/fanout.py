"""Child runs of a fan-out: ``run_deployment`` onto the work pool, bounded, reported back.

A parent flow (clever-consortium, clever-backfill-months) submits one ``run_child`` per
district or window. Each takes a slot of the global concurrency limit named by the
parent's ``fanout_limit`` (``edulake-fanout``; the parent creates it with ``max_children``
slots when it does not exist, an existing one is never changed), then creates the child
flow run on the deployment's work pool and waits for its final state. A child that fails
is a row of the parent's table, never an exception here: the others go on.
"""

from __future__ import annotations

import contextlib
import re
from typing import Any
from uuid import UUID

from prefect.artifacts import create_table_artifact
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
from prefect.client.schemas.objects import FlowRun
from prefect.concurrency.sync import concurrency
from prefect.deployments import run_deployment
from prefect.exceptions import ObjectNotFound

from edulake.fanout import ChildOutcome, ChildrenFailed, child_outcome, failure_message
from tasks.common import edulake_task, logger

FANOUT_LIMIT = "edulake-fanout"
# The clever-participation deployment children run on (no deployment concurrency limit:
# the fan-out limit bounds them, the lake lease orders writers of one lake).
CHILD_DEPLOYMENT = "clever-participation/clever-child"
_EXCEPTION = re.compile(r"exception: ([A-Za-z_][A-Za-z0-9_]*)")


@edulake_task(name="ensure-concurrency-limits")
def ensure_limits(limits: dict[str, int]) -> list[str]:
    """Create the global concurrency limits that do not exist yet; the names created."""
    created = []
    with get_client(sync_client=True) as client:
        for name, slots in limits.items():
            try:
                client.read_global_concurrency_limit_by_name(name)
            except ObjectNotFound:
                client.create_global_concurrency_limit(
                    GlobalConcurrencyLimitCreate(name=name, limit=slots)
                )
                created.append(name)
    if created:
        logger().info("created global concurrency limits: %s", ", ".join(created))
    return created


def _artifacts(flow_run_id: UUID) -> dict[str, list[Any]]:
    """The child's artifacts by key, oldest first (its landing, processing and summary
    reports; a flow run executed more than once has one version per execution)."""
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    out: dict[str, list[Any]] = {}
    for a in sorted(found, key=lambda a: str(a.created)):
        if a.key:
            out.setdefault(a.key, []).append(a.data)
    return out


@edulake_task(name="run-child", task_run_name="child-{child}")
def run_child(
    child: str,
    deployment: str,
    parameters: dict[str, Any],
    job_variables: dict[str, Any] | None = None,
    fanout_limit: str | None = FANOUT_LIMIT,
    poll_interval: float = 2.0,
) -> ChildOutcome:
    """One child flow run on the deployment's pool, to its final state; its table row."""
    slot = (
        concurrency(fanout_limit, occupy=1, strict=False)
        if fanout_limit
        else contextlib.nullcontext()
    )
    with slot:
        try:
            run: FlowRun = run_deployment(  # type: ignore[assignment]  # sync context
                deployment,
                parameters=parameters,
                job_variables=job_variables or None,
                flow_run_name=f"{child}",
                poll_interval=poll_interval,
                timeout=None,
                as_subflow=True,
            )
        except Exception as exc:  # no such deployment, server refused: this child only
            logger().error("child %s not started: %s", child, type(exc).__name__)
            return ChildOutcome(child, "NotStarted", 0, 0, False, True, type(exc).__name__, "")
    state = run.state
    state_type = state.type.value if state else "UNKNOWN"
    state_name = str(state.name) if state else "Unknown"
    kind = ""
    if state is not None and state_type != "COMPLETED":
        found = _EXCEPTION.search(state.message or "")
        kind = found.group(1) if found else ""
    outcome = child_outcome(child, state_type, state_name, _artifacts(run.id), str(run.id), kind)
    log = logger()
    if outcome.failed:
        log.warning("child %s ended %s", child, outcome.reason)
    else:
        log.info(
            "child %s completed: %d file(s) landed, %d rows", child, outcome.landed, outcome.rows
        )
    return outcome


@edulake_task(name="report-children")
def report_children(key: str, outcomes: list[ChildOutcome], description: str) -> None:
    """The parent's table artifact: one row per child (landed, rows, stale, failed)."""
    create_table_artifact(key=key, table=[o.row() for o in outcomes], description=description)


def finish_children(
    futures: list[Any], key: str, description: str, kind: str, rerun_hint: str
) -> list[dict[str, Any]]:
    """Wait for every child, write the parent's table, and fail naming the failed ``kind``
    (districts, windows) with how to re-run them alone; else return the rows."""
    outcomes: list[ChildOutcome] = [f.result() for f in futures]
    report_children(key, outcomes, description)
    if any(o.failed for o in outcomes):
        raise ChildrenFailed(failure_message(kind, outcomes, rerun_hint))
    return [o.row() for o in outcomes]
