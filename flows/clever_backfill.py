"""A long Clever backfill, split into one clever-participation child run per month."""

from __future__ import annotations

import datetime as dt
from typing import Any

from prefect.task_runners import ThreadPoolTaskRunner

from edulake.fanout import month_windows, pick_windows
from tasks.common import edulake_flow
from tasks.fanout import CHILD_DEPLOYMENT, FANOUT_LIMIT, ensure_limits, finish_children, run_child


@edulake_flow(name="clever-backfill-months", task_runner=ThreadPoolTaskRunner(max_workers=16))  # type: ignore[arg-type]
def clever_backfill_months(
    report_from: dt.date,
    report_to: dt.date,
    months_per_child: int = 1,
    only: list[str] | None = None,
    child_parameters: dict[str, Any] | None = None,
    child_job_variables: dict[str, dict[str, Any]] | None = None,
    child_deployment: str = CHILD_DEPLOYMENT,
    fanout_limit: str = FANOUT_LIMIT,
    max_children: int = 2,
) -> list[dict[str, Any]]:
    """Reprocess report_from..report_to as child runs of ``months_per_child`` months each.

    Each child is an ordinary clever-participation run over its window: idempotent (the
    ledger skips what is landed, processing skips what is processed) and committed under
    the lake lease, so children of one lake commit one after the other and a crashed child
    leaves nothing half-believed. Re-run only the failed windows with ``only``.

    Args:
        report_from: first report day of the whole range (inclusive).
        report_to: last report day of the whole range (inclusive).
        months_per_child: calendar months per child run.
        only: window labels to run (``2024-08``, or ``2024-08..2024-10`` with
            months_per_child > 1), e.g. the ones a previous run names as failed.
        child_parameters: clever-participation parameters for every child (source,
            sftp_block, hmac_key_block, lake_root, np_root, ...).
        child_job_variables: job variables for one window's child, by label (e.g. more
            memory for a heavy month); ``"*"`` applies to every child.
        child_deployment: the clever-participation deployment the children run on.
        fanout_limit: global concurrency limit bounding children in flight (created with
            ``max_children`` slots if missing; an existing limit is left as it is).
        max_children: slots of ``fanout_limit`` when this run creates it.
    """
    windows = pick_windows(month_windows(report_from, report_to, months_per_child), only)
    ensure_limits({fanout_limit: max_children})
    extra = child_job_variables or {}
    futures = []
    for w in windows:
        params = {**(child_parameters or {}), "report_from": w.start, "report_to": w.end}
        job_vars = {**extra.get("*", {}), **extra.get(w.label, {})}
        futures.append(run_child.submit(w.label, child_deployment, params, job_vars, fanout_limit))
    return finish_children(
        futures,
        "clever-backfill-months",
        f"Backfill {report_from}..{report_to}: one child per window.",
        "windows",
        "the same run with --param only=",
    )
