"""LibInsight tasks: client and plan, page landing, processing, watermark, the run report."""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass, field
from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.blocks.system import Secret
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from edulake.core.lake import Lake
from edulake.privacy.pseudonym import Pseudonymizer, PseudonymKey
from edulake.sources.libinsight.api import LibInsightClient
from edulake.sources.libinsight.auth import AuthMode
from edulake.sources.libinsight.config import DatasetConfig
from edulake.sources.libinsight.pipeline import ProcessResult, process_range
from edulake.sources.libinsight.store import (
    LandedPage,
    PageLander,
    read_watermark,
    write_watermark,
)
from edulake.sources.libinsight.windows import Window, plan_range, split_windows
from tasks.common import logger, retry_if_transient

SECRET_ENV = "EDULAKE_LIBINSIGHT_CLIENT_SECRET"  # noqa: S105 - the variable's name, not a secret


class MissingClientSecretError(RuntimeError):
    """No LibInsight client secret in the Secret block or the environment."""


def resolve_client_secret(block_name: str | None) -> str:
    """The client secret: a Prefect Secret block, else ``EDULAKE_LIBINSIGHT_CLIENT_SECRET``."""
    if block_name:
        try:
            block = Secret.load(block_name, _sync=True)  # type: ignore[call-arg]
            value = str(block.get())  # type: ignore[union-attr]
            if value:
                return value
        except (ValueError, RuntimeError):
            pass  # no such block: fall back to the environment
    value = os.environ.get(SECRET_ENV, "")
    if value:
        return value
    raise MissingClientSecretError(
        f"no LibInsight client secret: create a Prefect Secret block named {block_name!r} "
        f"(Admin > Widgets & APIs > Manage API Authentication gives the secret) or set {SECRET_ENV}"
    )


def open_client(
    base_url: str,
    client_id: str,
    client_secret_block: str | None,
    auth_mode: AuthMode,
    concurrency: int,
) -> LibInsightClient:
    """An authenticated client; the secret goes from the block into the client, nowhere else."""
    if not client_id:
        raise ValueError("client_id is required (LibInsight: Manage API Authentication)")
    return LibInsightClient(
        base_url,
        client_id,
        resolve_client_secret(client_secret_block),
        auth_mode=auth_mode,
        max_connections=max(4, concurrency),
    )


@dataclass
class RunPlan:
    """What a run fetches: the range, its windows and the watermark it started from."""

    watermark_before: dt.date | None
    window: Window | None
    windows: list[Window] = field(default_factory=list)
    backfill: bool = False


@task(name="plan-range", cache_policy=NO_CACHE)
def plan_run(
    lake: Lake,
    cfg: DatasetConfig,
    dataset_id: int,
    from_date: dt.date | None,
    to_date: dt.date | None,
    lookback_days: int,
    today: dt.date | None = None,
) -> RunPlan:
    """Backfill (explicit dates) or incremental (watermark minus lookback, to yesterday)."""
    before = read_watermark(lake, cfg.name, dataset_id)
    window = plan_range(
        today=today or dt.date.today(),
        watermark=before,
        lookback_days=lookback_days,
        from_date=from_date,
        to_date=to_date,
        initial_from=cfg.backfill_from,
    )
    windows = split_windows(window.start, window.end) if window else []
    log = logger()
    if window is None:
        log.info("dataset %s is up to date (watermark %s)", dataset_id, before)
    else:
        log.info(
            "dataset %s: fetching %s in %d window(s) (%s; watermark %s)",
            dataset_id,
            window,
            len(windows),
            "backfill" if from_date else "incremental",
            before,
        )
    return RunPlan(before, window, windows, backfill=from_date is not None)


def page_lander(lake: Lake, dataset_id: int, window: Window) -> PageLander:
    """Lands each raw page of a window as it arrives, recording this flow run's id."""
    return PageLander(lake, dataset_id, window, flow_run.get_id())


@task(
    name="process-pages",
    retries=1,
    retry_delay_seconds=[30],
    retry_condition_fn=retry_if_transient,
    cache_policy=NO_CACHE,
)
def process_pages(
    lake: Lake, cfg: DatasetConfig, pages: list[LandedPage], window: Window, key: PseudonymKey
) -> ProcessResult:
    """Landed raw pages -> the month files, lookup, schema state and the CSV export."""
    result = process_range(lake, cfg, [p.key for p in pages], window, Pseudonymizer(key))
    log = logger()
    log.info(
        "%d records -> %d rows in %d month(s); export %s (%d rows)",
        result.records,
        result.rows,
        len(result.months),
        result.export_key,
        result.export_rows,
    )
    for row in result.drift.rows():
        log.warning("schema drift: %s: %s (%s)", row["kind"], row["field"], row["detail"])
    if result.quarantine_key:
        log.warning(
            "%d records not kept are in the protected quarantine zone (%s): %s",
            result.quarantined,
            "; ".join(f"{k}: {v}" for k, v in result.drift.dropped_rows.items()),
            result.quarantine_key,
        )
    if result.drift.duplicate_records:
        log.warning(
            "%d records had the id of a later record and were replaced by it",
            result.drift.duplicate_records,
        )
    return result


@task(name="commit-watermark", cache_policy=NO_CACHE)
def commit_watermark(
    lake: Lake, cfg: DatasetConfig, dataset_id: int, plan: RunPlan
) -> dt.date | None:
    """Move the watermark to the end of the committed range (never backwards)."""
    if plan.window is None:
        return plan.watermark_before
    through = plan.window.end
    if plan.watermark_before is not None and plan.watermark_before > through:
        through = plan.watermark_before  # an old backfill does not rewind incremental runs
    write_watermark(lake, cfg.name, dataset_id, through, flow_run.get_id())
    logger().info("watermark of dataset %s: %s -> %s", dataset_id, plan.watermark_before, through)
    return through


@task(name="report-run", cache_policy=NO_CACHE)
def report_run(
    dataset_id: int,
    plan: RunPlan,
    pages: dict[str, list[LandedPage]],
    fetch: dict[str, Any],
    processed: ProcessResult | None,
    published: list[dict[str, object]],
    watermark_after: dt.date | None,
) -> dict[str, Any]:
    """Artifacts (pages, months, drift, watermark) and the run summary."""
    page_rows = [
        {
            "window": w,
            "pages": len(ps),
            "records": sum(p.records for p in ps),
            "pages with new content": sum(1 for p in ps if p.outcome in ("landed", "new-version")),
        }
        for w, ps in pages.items()
    ]
    create_table_artifact(page_rows, key="libinsight-pages", description="Pages fetched per window")
    months = processed.months if processed else {}
    create_table_artifact(
        [{"month": m, "rows": n} for m, n in sorted(months.items())] or [{"month": "-", "rows": 0}],
        key="libinsight-months",
        description="Rows in each month file rewritten by this run",
    )
    drift_rows = processed.drift.rows() if processed else []
    create_table_artifact(
        drift_rows or [{"kind": "none", "field": "-", "detail": "no schema drift"}],
        key="libinsight-drift",
        description="Schema drift found in this run",
    )
    summary: dict[str, Any] = {
        "dataset_id": dataset_id,
        "range": str(plan.window) if plan.window else None,
        "mode": "backfill" if plan.backfill else "incremental",
        "windows": len(plan.windows),
        "watermark_before": plan.watermark_before.isoformat() if plan.watermark_before else None,
        "watermark_after": watermark_after.isoformat() if watermark_after else None,
        **fetch,
        "rows_written": processed.rows if processed else 0,
        "quarantined": processed.quarantined if processed else 0,
        "quarantine": processed.quarantine_key if processed else None,
        "months_rewritten": len(months),
        "drift": processed.drift.to_json() if processed else {},
        "export": processed.export_key if processed else None,
        "published": published,
    }
    lines = [f"# LibInsight dataset {dataset_id}", ""]
    lines += [f"- **{k}**: {v}" for k, v in summary.items() if k not in ("drift", "published")]
    lines += [
        "",
        "Drift: " + ("; ".join(f"{r['kind']} {r['field']}" for r in drift_rows) or "none"),
    ]
    create_markdown_artifact("\n".join(lines), key="libinsight-summary", description="Run summary")
    return summary
