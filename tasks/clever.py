"""Clever tasks: discover, land, pseudonymize (process), and the run report."""

from __future__ import annotations

import datetime as dt
from typing import Any

from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from edulake.connectors.files import FileSource, FolderSource
from edulake.core.lake import Lake, StorageUnavailableError
from edulake.core.landing import LandingResult, Ledger, SourceFile, summarize
from edulake.core.lease import LeaseError
from edulake.core.settings import ConfigError
from edulake.privacy.keys import KeyRotationInProgress
from edulake.privacy.lookup import KeyMismatchError
from edulake.privacy.pseudonym import MissingKeyError, Pseudonymizer, PseudonymKey
from edulake.privacy.scrub import mark_safe
from edulake.sources.clever import decisions, pipeline
from edulake.sources.clever.decisions import SkipDecision
from edulake.sources.clever.freshness import CleverFreshness, check_reports
from edulake.sources.clever.names import FOLDERS, ReportName, parse_report_name
from edulake.sources.clever.process import SOURCE
from tasks.common import edulake_task, explain_storage_errors, logger, retry_if_transient
from tasks.events import emit_source_stale

# Messages built by edulake from key ids, lake names and settings only: shown as is.
mark_safe(
    KeyMismatchError, KeyRotationInProgress, LeaseError, MissingKeyError, StorageUnavailableError
)

__all__ = ["retry_if_transient"]  # the one retry condition, from tasks.common


def open_source(
    source: str,
    source_path: str | None,
    sftp_block: str,
    testdata: dict[str, Any] | None = None,
) -> FileSource:
    """The Clever source named by the flow's ``source`` parameter."""
    if source == "testdata":
        from edulake.demo.clever_testdata import TestDataSource

        src: FileSource = TestDataSource(**(testdata or {}))
        return src
    if source == "folder":
        if not source_path:
            raise ConfigError(
                "source='folder' needs source_path: a folder laid out like Clever's SFTP"
            )
        return FolderSource(source_path)
    if source == "sftp":
        from edulake.connectors.blocks import open_sftp_source  # type: ignore[attr-defined,unused-ignore]

        return open_sftp_source(sftp_block)  # type: ignore[no-any-return,unused-ignore]
    raise ConfigError(f"unknown source {source!r}: use testdata, folder or sftp")


@edulake_task(
    name="discover-reports",
    retries=3,
    retry_delay_seconds=[10, 60, 300],
    retry_condition_fn=retry_if_transient,
    cache_policy=NO_CACHE,
)
def discover_reports(
    source: FileSource, report_from: dt.date | None, report_to: dt.date | None
) -> pipeline.Discovery:
    """List the source's report folders; keep Clever report names in the date range."""
    found = pipeline.discover(source, report_from, report_to)
    log = logger()
    log.info(
        "%s offers %d report files (%d outside the date range, %d other names ignored)",
        source.label,
        len(found.reports),
        found.out_of_range,
        len(found.ignored),
    )
    for name, why in found.ignored[:20]:
        log.info("ignored %r: %s", name, why)
    if found.missing_folders:
        log.warning(
            "%s has no %s folder: no such reports can be landed",
            source.label,
            ", ".join(f"{f}/" for f in found.missing_folders),
        )
    misplaced = found.misplaced_message()
    if misplaced:
        log.warning("%s", misplaced)
    return found


@edulake_task(
    name="land-files",
    retries=3,
    retry_delay_seconds=[10, 60, 300],
    retry_condition_fn=retry_if_transient,
    cache_policy=NO_CACHE,
)
@explain_storage_errors
def land_files(
    lake: Lake,
    source: FileSource,
    reports: list[tuple[SourceFile, ReportName]],
    concurrency: int,
) -> list[LandingResult]:
    """Land every report file the ledger does not hold yet (already landed ones are skipped)."""
    log = logger()
    done = 0

    def progress(r: LandingResult) -> None:
        nonlocal done
        done += 1
        if r.landed:
            log.info(
                "[%d/%d] landed %s (%s bytes, %s)", done, len(reports), r.name, r.size, r.outcome
            )

    results = pipeline.land_reports(
        lake,
        source,
        reports,
        concurrency=concurrency,
        flow_run_id=flow_run.get_id(),
        on_done=progress,
    )
    log.info("landing: %s", summarize(results) or "nothing offered")
    return results


@edulake_task(name="check-freshness", cache_policy=NO_CACHE)
def check_report_freshness(
    lake: Lake,
    discovery: pipeline.Discovery,
    max_age_days: int,
    today: dt.date | None = None,
    fail_age_days: int = 7,
) -> CleverFreshness:
    """Per report: warn when the newest report is old or days are missing, and emit
    ``edulake.source.stale`` when stale or days are about to fall off the server.

    Failing the run (past ``fail_age_days``) is the flow's job, after everything else
    is committed.
    """
    landed: dict[str, set[dt.date]] = {}
    for name in Ledger(lake, SOURCE).latest():
        try:
            parsed = parse_report_name(name)
        except ValueError:
            continue
        landed.setdefault(parsed.report, set()).add(parsed.report_date)
    fresh = check_reports(
        discovery.available,  # a backfill's date range does not make the server look stale
        landed,
        today or dt.datetime.now(dt.UTC).date(),
        FOLDERS,
        max_age_days,
        fail_age_days,
    )
    log = logger()
    for report in fresh.reports.values():
        log.info(
            "%s: newest report on the server: %s (%s days old); last landed: %s",
            report.report,
            report.newest_available,
            report.age_days,
            report.last_landed,
        )
        for warning in report.warnings:
            log.warning("freshness: %s: %s", report.report, warning)
        if report.needs_event:
            emit_source_stale(SOURCE, report.report or "reports", report.event_payload())
    return fresh


@edulake_task(name="apply-skip-decisions", cache_policy=NO_CACHE)
def apply_skip_decisions(
    lake: Lake, skip_files: list[str], skip_reason: str | None
) -> list[SkipDecision]:
    """Record skip decisions for ``skip_files`` (before processing); return every decision
    covering a file's newest version, so the summary lists them all."""
    log = logger()
    run_id = flow_run.get_id()
    for file in skip_files:
        decision, new = decisions.skip_file(
            lake,
            file,
            skip_reason or "",
            by=f"flow parameter skip_files (flow run {run_id or 'local'})",
            flow_run_id=run_id,
        )
        log.warning(
            "%s skip decision: %s",
            "recorded" if new else "already recorded",
            decision.line(),
        )
    return decisions.skipped(lake)


@edulake_task(
    name="pseudonymize-reports",
    retries=1,
    retry_delay_seconds=30,
    retry_condition_fn=retry_if_transient,
    cache_policy=NO_CACHE,
)
@explain_storage_errors
def pseudonymize_reports(
    lake: Lake,
    key: PseudonymKey,
    report_from: dt.date | None,
    report_to: dt.date | None,
    max_quarantine_share: float,
) -> pipeline.ProcessingResult:
    """Process every landed, unprocessed report into stage2p, stage2np and quarantine."""
    log = logger()
    entries = pipeline.pending(lake, report_from, report_to)
    log.info("%d landed file versions to process", len(entries))
    done = 0

    def progress(r: Any) -> None:
        nonlocal done
        done += 1
        log.info(
            "[%d/%d] %s: %s, %d rows written, %d quarantined%s",
            done,
            len(entries),
            r.name,
            r.status,
            r.rows_written,
            r.rows_quarantined,
            f" ({r.error})" if r.error else "",
        )

    result = pipeline.process_pending(
        lake,
        entries,
        Pseudonymizer(key),
        max_quarantine_share=max_quarantine_share,
        on_done=progress,
    )
    for col, rows in result.lookups.items():
        log.info("stage2np lookup %s: %d identities", col, rows)
    return result


def run_status(
    discovery: pipeline.Discovery,
    processed: pipeline.ProcessingResult,
    freshness: CleverFreshness | None,
    skipped: list[SkipDecision],
) -> tuple[str, str]:
    """(ok | warning | failed, the summary's headline): what the run's first line says."""
    failed: list[str] = []
    warn: list[str] = []
    if processed.failed:
        failed.append(f"{len(processed.failed)} file(s) not processed")
    if freshness and freshness.failing:
        failed += [r.headline() for r in freshness.failing]
    if freshness:
        warn += [r.headline() for r in freshness.stale if not r.failing]
        if any(r.at_risk for r in freshness.reports.values()):
            warn.append("report days on the server not landed")
    if discovery.misplaced:
        warn.append(f"{len(discovery.misplaced)} file(s) not where Clever puts reports")
    if discovery.missing_folders:
        warn.append("no " + ", ".join(f"{f}/" for f in discovery.missing_folders) + " folder")
    if skipped:
        warn.append(f"{len(skipped)} file(s) skipped by decision")
    if failed:
        return "failed", "FAILED: " + "; ".join(failed + warn)
    if warn:
        return "warning", "WARNING: " + "; ".join(warn)
    return "ok", "OK"


def report_run(
    discovery: pipeline.Discovery,
    landed: list[LandingResult],
    processed: pipeline.ProcessingResult,
    published: list[dict[str, object]],
    demo: bool,
    freshness: CleverFreshness | None = None,
    skipped: list[SkipDecision] | None = None,
) -> dict[str, Any]:
    """Leave the run's report as Prefect artifacts and return its summary.

    The summary's first line says how the run ends (OK / WARNING / FAILED) and why:
    a stale source or a failed file is never hidden below the counts.
    """
    skipped = skipped or []
    status, headline = run_status(discovery, processed, freshness, skipped)
    create_table_artifact(
        key="clever-landing",
        table=[
            {
                "file": r.name,
                "outcome": r.outcome,
                "bytes": r.size,
                "stage1np": r.entry.path if r.entry else None,
            }
            for r in landed
        ]
        or [{"file": "(none offered)", "outcome": "", "bytes": 0, "stage1np": ""}],
        description="Clever files landed or skipped in this run.",
    )
    create_table_artifact(
        key="clever-processing",
        table=[
            {
                "file": f.name,
                "table": f.table,
                "status": f.status,
                "mode": f.mode,
                "rows_read": f.rows_read,
                "rows_written": f.rows_written,
                "rows_quarantined": f.rows_quarantined,
                "partitions": len(f.partitions),
                "quarantine_file": f.quarantine_file,
                "error": f.error,
            }
            for f in processed.files
        ]
        or [{"file": "(nothing to process)"}],
        description="Rows read, written and quarantined per landed file.",
    )
    if published:
        create_table_artifact(
            key="clever-published", table=published, description="Tables published to the catalog."
        )
    summary = {
        "offered": len(discovery.reports),
        "ignored": len(discovery.ignored),
        "landing": summarize(landed),
        "files_processed": len(processed.files),
        "rows_written": sum(f.rows_written for f in processed.files),
        "rows_quarantined": sum(f.rows_quarantined for f in processed.files),
        "partitions_changed": {t: len(p) for t, p in processed.changed.items()},
        "lookups": processed.lookups,
        "failed_files": [f.name for f in processed.failed],
        "skipped_files": [
            {"file": d.name, "sha256": d.sha256, "by": d.by, "at": d.at, "reason": d.reason}
            for d in skipped
        ],
        "misplaced": [m.path for m in discovery.misplaced],
        "status": status,
        "headline": headline,
        "demo": demo,
        "freshness": freshness.as_dict() if freshness else None,
    }
    lines = [
        f"# Clever participation run: {headline}",
        "",
        "**DEMO MODE: demo key, not for real student data.**" if demo else "",
        f"- files offered: {summary['offered']} (ignored: {summary['ignored']})",
        f"- landing: {summary['landing']}",
        f"- files processed: {summary['files_processed']}; rows written "
        f"{summary['rows_written']}, quarantined {summary['rows_quarantined']}",
        f"- partitions changed: {summary['partitions_changed']}",
        f"- identities in stage2np lookups: {summary['lookups']}",
    ]
    if freshness:
        lines.append(freshness.markdown())
    misplaced = discovery.misplaced_message()
    if misplaced:
        lines.append(f"- **WARNING** {misplaced}")
    for f in processed.failed:
        lines.append(f"- **FAILED** `{f.name}`: {f.error}")
    for d in skipped:
        lines.append(f"- skipped by decision: {d.line()}")
    create_markdown_artifact(
        key="clever-summary",
        markdown="\n".join(line for i, line in enumerate(lines) if line or i == 1),
        description="Clever run summary.",
    )
    return summary
