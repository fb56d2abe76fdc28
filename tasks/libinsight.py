"""LibInsight tasks: client and plan, page landing, processing, watermark, the run report."""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass, field
from typing import Any

from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.blocks.system import Secret
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from edulake.core import clock
from edulake.core.lake import Lake, Zone
from edulake.core.settings import ConfigError
from edulake.privacy.keys import ensure_key
from edulake.privacy.pseudonym import Pseudonymizer, PseudonymKey
from edulake.sources.libinsight.api import LibInsightClient
from edulake.sources.libinsight.auth import AuthMode
from edulake.sources.libinsight.config import DatasetConfig
from edulake.sources.libinsight.pipeline import DriftError, ProcessResult, process_range
from edulake.sources.libinsight.store import (
    LandedPage,
    PageLander,
    last_record_day,
    read_watermark,
    table_datasets,
    watermark_key,
    write_watermark,
)
from edulake.sources.libinsight.windows import Window, plan_range, split_windows
from edulake.specs import TableSpec
from tasks.common import count_words, edulake_task, logger, retry_if_transient, top_reasons

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
        raise ConfigError("client_id is required (LibInsight: Manage API Authentication)")
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


class FutureWatermarkError(RuntimeError):
    """A watermark after yesterday (set by a future to_date before they were capped)."""


class LegacyTableError(RuntimeError):
    """A dataset whose rows an older edulake wrote to the config's shared table."""


def check_legacy_table(
    lake: Lake, cfg: DatasetConfig, table: str, dataset_id: int, backfill: bool
) -> None:
    """Refuse an incremental run of a dataset still recorded under the shared table.

    Before tables were per dataset, every dataset of a config wrote ``libinsight.<name>``
    (and its watermark there). Going on silently would backfill a new table from
    ``backfill_from`` while the old one, which analysts read, goes stale.
    """
    if table == cfg.name or lake.exists(Zone.SYSTEM, watermark_key(table, dataset_id)):
        return
    if not lake.exists(Zone.SYSTEM, watermark_key(cfg.name, dataset_id)):
        return
    message = (
        f"dataset {dataset_id} was written to the shared table libinsight.{cfg.name} by an "
        f"older edulake; its table is now libinsight.{table}. To keep libinsight.{cfg.name}, "
        f"bind a config to the dataset (a copy of {cfg.name}.yaml with `dataset_id: "
        f"{dataset_id}`, passed as dataset_config); or fill libinsight.{table} with a "
        "backfill (from_date=...) - docs/libinsight.md, 'Several datasets'"
    )
    if not backfill:
        raise LegacyTableError(message)
    logger().warning("%s; this backfill fills libinsight.%s", message, table)


class TableOwnedError(RuntimeError):
    """A table that already holds another dataset (two configs with one name)."""


def check_table_owner(lake: Lake, table: str, dataset_id: int) -> None:
    """Refuse to write a table that holds another dataset (its watermark is there).

    Per-dataset names make this rare, but two copies of a config bound to different
    datasets and left with the same ``name`` would again write one table, and each run's
    range would delete the other dataset's rows.
    """
    others = [d for d in table_datasets(lake, table) if d != dataset_id]
    if others:
        raise TableOwnedError(
            f"libinsight.{table} already holds dataset {', '.join(map(str, others))} "
            f"(its watermark), so dataset {dataset_id} cannot be written there: give this "
            "dataset's config its own `name` (or drop `dataset_id` from it, for a "
            f"{table}_<id> table)"
        )


@edulake_task(name="plan-range", cache_policy=NO_CACHE)
def plan_run(
    lake: Lake,
    cfg: DatasetConfig,
    table: str,
    dataset_id: int,
    from_date: dt.date | None,
    to_date: dt.date | None,
    lookback_days: int,
    today: dt.date | None = None,
) -> RunPlan:
    """Backfill (explicit dates) or incremental (watermark minus lookback, to yesterday).

    A ``to_date`` after yesterday is capped at yesterday (and said so): the watermark
    never moves into the future.
    """
    check_table_owner(lake, table, dataset_id)
    check_legacy_table(lake, cfg, table, dataset_id, from_date is not None)
    before = read_watermark(lake, table, dataset_id)
    today = today or clock.today()
    yesterday = today - dt.timedelta(days=1)
    if before is not None and before > yesterday:
        # Written by an older edulake from a future to_date: every run would be "up to date".
        raise FutureWatermarkError(
            f"the watermark of dataset {dataset_id} (libinsight.{table}) is {before}, after "
            f"yesterday ({yesterday}): no run would fetch anything until then. Reset it: "
            f"python -m edulake libinsight-watermark --dataset-id {dataset_id} "
            f"--set {yesterday - dt.timedelta(days=7)} (a day you know is complete), or --clear"
        )
    log = logger()
    if to_date is not None and to_date > yesterday:
        log.warning(
            "dataset %s: to_date %s is after yesterday: capped at yesterday (%s)",
            dataset_id,
            to_date,
            yesterday,
        )
    window = plan_range(
        today=today,
        watermark=before,
        lookback_days=lookback_days,
        from_date=from_date,
        to_date=to_date,
        initial_from=cfg.backfill_from,
    )
    windows = split_windows(window.start, window.end) if window else []
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


@edulake_task(name="check-key", cache_policy=NO_CACHE)
def check_key(lake: Lake, source: str, key: PseudonymKey) -> None:
    """Refuse another key than the lake's before fetching (nothing is fetched or landed).

    Early only: the commit checks again under the lake lease (``process_range``), where
    the first run also records the key."""
    ensure_key(lake, source, key.key_id, record=False)


def page_lander(lake: Lake, dataset_id: int, window: Window) -> PageLander:
    """Lands each raw page of a window as it arrives, recording this flow run's id."""
    return PageLander(lake, dataset_id, window, flow_run.get_id())


def drift_artifact(rows: list[dict[str, str]]) -> None:
    create_table_artifact(
        rows or [{"kind": "none", "field": "-", "detail": "no schema drift"}],
        key="libinsight-drift",
        description="Schema drift found in this run",
    )


def held_artifact(held: dict[str, int], since: dict[str, str], hints: list[str]) -> None:
    """Fields held back: names, counts, first day, how to classify them (never values)."""
    rows = [
        {
            "field": label,
            "records": n,
            "first record": since.get(label, ""),
            "classify": hint.split(": ", 1)[1],
        }
        for (label, n), hint in zip(held.items(), hints, strict=True)
    ]
    create_table_artifact(
        rows
        or [{"field": "-", "records": 0, "first record": "", "classify": "no field held back"}],
        key="libinsight-held-fields",
        description="Unknown fields held back (kept in stage1np only) until the config classifies them",
    )


@edulake_task(
    name="process-pages",
    retries=1,
    retry_delay_seconds=[30],
    retry_condition_fn=retry_if_transient,
    cache_policy=NO_CACHE,
)
def process_pages(
    lake: Lake,
    cfg: DatasetConfig,
    table: str,
    pages: list[LandedPage],
    window: Window,
    key: PseudonymKey,
) -> ProcessResult:
    """Landed raw pages -> the month files, lookup, schema state and the CSV export.

    A drift error (``on_drift: error``) fails the task before anything is written; the
    drift artifact and an ERROR log say what to classify. Another key than the lake's
    (:class:`~edulake.privacy.lookup.KeyMismatchError`, not retried) fails it before any
    read or write; rows of forgotten staff are dropped (counted, never named).
    """
    log = logger()
    try:
        result = process_range(
            lake, cfg, [p.key for p in pages], window, Pseudonymizer(key), table=table
        )
    except DriftError as exc:
        for error in exc.errors:
            log.error("schema drift in libinsight.%s: %s", table, error)
        drift_artifact([{"kind": "drift error", "field": "-", "detail": e} for e in exc.errors])
        raise
    log_held(result.drift.held_fields, result.drift.held_since, result.drift.hints)
    log.info(
        "%d records -> %d rows in %d month(s); export %s (%d rows)",
        result.records,
        result.rows,
        len(result.months),
        result.export_key,
        result.export_rows,
    )
    for row in result.drift.rows():
        if row["kind"] != "held back":
            log.warning("schema drift: %s: %s (%s)", row["kind"], row["field"], row["detail"])
    if result.quarantine_key:
        log.warning(
            "%d bad records (not kept) are in the protected quarantine zone (why: %s): %s",
            result.quarantined,
            top_reasons(result.drift.dropped_rows),
            result.quarantine_key,
        )
    if result.suppressed:
        log.info(
            "%d row(s) and quarantined record(s) of forgotten people left out (suppression list)",
            result.suppressed,
        )
    if result.drift.duplicate_records:
        log.warning(
            "%d records had the id of a later record and were replaced by it",
            result.drift.duplicate_records,
        )
    return result


def log_held(held: dict[str, int], since: dict[str, str], hints: list[str]) -> None:
    """One WARNING per held field: its name, how many records, a one-line classification."""
    for (label, n), hint in zip(held.items(), hints, strict=True):
        logger().warning(
            "field %r held back: in %d records (the first on %s), kept in stage1np only, not "
            "written to stage2p until the dataset config classifies it. %s; then backfill "
            "from that day (from_date) to fill it in",
            label,
            n,
            since.get(label) or "?",
            hint.split(": ", 1)[1],
        )


@dataclass
class Staleness:
    """How long a dataset has been without records, and whether that is too long."""

    last_record: dt.date | None
    through: dt.date | None
    days: int | None
    threshold: int

    @property
    def stale(self) -> bool:
        return self.days is not None and self.days >= self.threshold

    def payload(self, dataset_id: int) -> dict[str, Any]:
        return {
            "dataset_id": dataset_id,
            "days_since_last_record": self.days,
            "last_record": self.last_record.isoformat() if self.last_record else None,
            "through": self.through.isoformat() if self.through else None,
            "threshold_days": self.threshold,
        }


@edulake_task(name="check-staleness", cache_policy=NO_CACHE)
def check_staleness(
    lake: Lake,
    spec: TableSpec,
    through: dt.date | None,
    stale_after_days: int,
    dataset_id: int,
) -> Staleness:
    """Days from the newest record in the table to the last committed day (``through``).

    ``through`` is the watermark after the run (normally yesterday), so an old backfill
    of a complete range is not stale, and a dataset nobody records into any more is,
    once ``stale_after_days`` pass. A table that never had a record has no such day:
    ``days`` is None and nothing is announced.
    """
    last = last_record_day(lake, spec)
    days = (through - last).days if (through and last) else None
    out = Staleness(last, through, days, stale_after_days)
    if out.stale:
        logger().warning(
            "dataset %s: no records for %d days (last record %s, committed through %s; "
            "threshold %d days): is the dataset still in use, or did it move to another id?",
            dataset_id,
            days,
            last,
            through,
            stale_after_days,
        )
    return out


@edulake_task(name="commit-watermark", cache_policy=NO_CACHE)
def commit_watermark(lake: Lake, table: str, dataset_id: int, plan: RunPlan) -> dt.date | None:
    """Move the watermark to the end of the committed range (never backwards)."""
    if plan.window is None:
        return plan.watermark_before
    through = plan.window.end
    # Read now (under the lake lease), not at planning: a run that committed meanwhile may
    # have moved it further, and an old backfill must not rewind it.
    current = read_watermark(lake, table, dataset_id)
    if current is not None and current > through:
        through = current
    write_watermark(lake, table, dataset_id, through, flow_run.get_id())
    logger().info("watermark of dataset %s: %s -> %s", dataset_id, plan.watermark_before, through)
    return through


@edulake_task(name="report-run", cache_policy=NO_CACHE)
def report_run(
    dataset_id: int,
    plan: RunPlan,
    pages: dict[str, list[LandedPage]],
    fetch: dict[str, Any],
    processed: ProcessResult | None,
    published: list[dict[str, object]],
    watermark_after: dt.date | None,
    table: str = "",
    staleness: Staleness | None = None,
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
    drift_artifact(drift_rows)
    held = processed.drift.held_fields if processed else {}
    held_artifact(
        held,
        processed.drift.held_since if processed else {},
        processed.drift.hints if processed else [],
    )
    stale = staleness.payload(dataset_id) if staleness and staleness.stale else None
    summary: dict[str, Any] = {
        "dataset_id": dataset_id,
        "table": table,
        "stale": stale,
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
        "held_fields": held,
        "drift": processed.drift.to_json() if processed else {},
        "export": processed.export_key if processed else None,
        "published": published,
    }
    lines = summary_lines(dataset_id, table, plan, fetch, processed, watermark_after, staleness)
    create_markdown_artifact("\n".join(lines), key="libinsight-summary", description="Run summary")
    return summary


def problem_lines(
    fetch: dict[str, Any], processed: ProcessResult | None, staleness: Staleness | None
) -> list[str]:
    """The report's problems, worst first: stale, bad records, held fields, drift, paging."""
    lines = []
    if staleness is not None and staleness.stale:
        lines.append(
            f"- **STALE** no records for {staleness.days} days (last record "
            f"{staleness.last_record}, committed through {staleness.through}; threshold "
            f"{staleness.threshold} days): is the dataset still in use?"
        )
    if processed is not None:
        drift = processed.drift
        if processed.quarantined:
            lines.append(
                f"- **BAD RECORDS** {processed.quarantined:,} record(s) not kept, in "
                f"`{processed.quarantine_key}` (protected zone); why: "
                f"{top_reasons(drift.dropped_rows) or 'see the quarantine file'}"
            )
        if drift.held_fields:
            lines.append(
                "- **HELD BACK** field(s) the config does not classify yet (stage1np only): "
                + ", ".join(f"{label} ({n:,} records)" for label, n in drift.held_fields.items())
            )
        for row in drift.rows():
            if row["kind"] not in ("held back", "bad records"):
                lines.append(f"- **SCHEMA DRIFT** {row['kind']}: {row['field']} ({row['detail']})")
    paging = {
        "records repeating another page's id": fetch.get("duplicate_ids", 0),
        "empty pages": fetch.get("empty_pages", 0),
        "fetches started over (the data changed while fetched)": fetch.get(
            "fetches_started_over", 0
        ),
    }
    if any(paging.values()):
        lines.append("- **WARNING** while paging: " + count_words(paging))
    return lines


def summary_lines(
    dataset_id: int,
    table: str,
    plan: RunPlan,
    fetch: dict[str, Any],
    processed: ProcessResult | None,
    watermark_after: dt.date | None,
    staleness: Staleness | None,
) -> list[str]:
    """The run report: a headline, the problems, then the counts, in words."""
    problems = problem_lines(fetch, processed, staleness)
    stale = staleness is not None and staleness.stale
    status = "WARNING" if problems else "OK"
    lines = []
    if stale and staleness is not None:
        lines += [
            f"**STALE: dataset {dataset_id} has had no records for {staleness.days} days** "
            f"(last record {staleness.last_record}, through {staleness.through}; threshold "
            f"{staleness.threshold} days)",
            "",
        ]
    lines += [f"# LibInsight dataset {dataset_id} -> libinsight.{table}: {status}", ""]
    lines += ["## Problems", *(problems or ["- none"]), "", "## Counts"]
    if plan.window is None:
        lines.append(f"- up to date: nothing to fetch (watermark {plan.watermark_before})")
    else:
        how = (
            "a backfill of the dates asked for"
            if plan.backfill
            else "new records since the watermark, minus the look-back days"
        )
        lines.append(f"- fetched {plan.window} ({how}) in {len(plan.windows)} window(s)")
    if fetch:
        lines.append(
            f"- pages: {fetch.get('pages', 0):,} ({fetch.get('requests', 0):,} requests, "
            f"{fetch.get('retries', 0):,} retried; {fetch.get('token_fetches', 0)} token "
            "fetch(es))"
        )
    if processed is not None:
        lines.append(
            f"- rows written: {processed.rows:,} from {processed.records:,} records, in "
            f"{len(processed.months)} month file(s)"
        )
        lines.append(f"- Tableau export: `{processed.export_key}` ({processed.export_rows:,} rows)")
        if processed.suppressed:
            lines.append(f"- left out (forgotten people): {processed.suppressed:,}")
    before = plan.watermark_before or "none"
    lines.append(f"- watermark: {before} -> {watermark_after or 'none'}")
    return lines
