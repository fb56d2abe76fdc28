"""Clever for a consortium: one clever-participation child run per district, bounded."""

from __future__ import annotations

import datetime as dt
from typing import Any

from prefect.task_runners import ThreadPoolTaskRunner

from edulake.tenants import load_consortium
from tasks.common import edulake_flow
from tasks.fanout import CHILD_DEPLOYMENT, FANOUT_LIMIT, ensure_limits, finish_children, run_child


@edulake_flow(name="clever-consortium", task_runner=ThreadPoolTaskRunner(max_workers=16))  # type: ignore[arg-type]
def clever_consortium(
    consortium_file: str = "consortium.yaml",
    districts: list[str] | None = None,
    schedule_slot: str | None = None,
    report_from: dt.date | None = None,
    report_to: dt.date | None = None,
    child_deployment: str = CHILD_DEPLOYMENT,
    fanout_limit: str = FANOUT_LIMIT,
    max_children: int = 4,
    child_parameters: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Run Clever for every district of a consortium file, each in its own child run.

    Args:
        consortium_file: the consortium YAML (edulake/tenants.py), a path on the worker.
        districts: only these district ids (default: all).
        schedule_slot: only the districts on this schedule (``<cron>@<time zone>``, set by
            the deployment's schedules: one per distinct district schedule).
        report_from: first report day for every district (a consortium-wide backfill);
            empty: each district's own default.
        report_to: last report day for every district; empty: each district's default.
        child_deployment: the clever-participation deployment the children run on.
        fanout_limit: global concurrency limit bounding children in flight (created with
            ``max_children`` slots if missing; an existing limit is left as it is).
        max_children: slots of ``fanout_limit`` when this run creates it.
        child_parameters: more clever-participation parameters for every child.
    """
    consortium = load_consortium(consortium_file)
    chosen = consortium.select(districts, schedule_slot)
    # One writer per district lake; districts do not queue behind each other.
    ensure_limits({fanout_limit: max_children, **{d.lake_limit: 1 for d in chosen}})
    futures = []
    for d in chosen:
        params: dict[str, Any] = {**(child_parameters or {}), **d.child_parameters()}
        if report_from or report_to:
            params.update(report_from=report_from, report_to=report_to)
        futures.append(
            run_child.submit(
                d.id,
                child_deployment,
                params,
                {"env": d.child_env()},
                fanout_limit,
            )
        )
    return finish_children(
        futures,
        "clever-consortium",
        f"Districts of {consortium.consortium}: files landed, rows written, stale, failed.",
        "districts",
        f"prefect deployment run clever-consortium/clever-consortium "
        f"--param consortium_file={consortium_file} --param districts=",
    )
