"""Clever tasks: discover, land, pseudonymize (process), and the run report."""

from __future__ import annotations

import datetime as dt
from typing import Any

from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from edulake.connectors.files import FileSource, FolderSource
from edulake.core import clock
from edulake.core.lake import Lake, StorageUnavailableError
from edulake.core.landing import LandingResult, Ledger, SourceFile, summarize
from edulake.core.lease import LeaseError
from edulake.core.settings import ConfigError
from edulake.demo.clever_testdata import TestDataOptions
from edulake.privacy.keys import KeyRotationInProgress
from edulake.privacy.lookup import KeyMismatchError
from edulake.privacy.pseudonym import MissingKeyError, Pseudonymizer, PseudonymKey
from edulake.privacy.scrub import mark_safe
from edulake.sources.clever import decisions, pipeline
from edulake.sources.clever.decisions import SkipDecision
from edulake.sources.clever.freshness import CleverFreshness, check_reports
from edulake.sources.clever.names import FOLDERS, ReportName, parse_report_name
from edulake.sources.clever.process import SOURCE, FileResult
from tasks.common import (
    Progress,
    count_words,
    edulake_task,
    explain_storage_errors,
    logger,
    retry_if_transient,
    top_reasons,
)
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
    testdata: TestDataOptions | dict[str, Any] | None = None,
) -> FileSource:
    """The Clever source named by the flow's ``source`` parameter."""
    if source == "testdata":
        options = TestDataOptions.model_validate(testdata or {})
        src: FileSource = options.source()
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
    bar = Progress("clever-landing-progress", len(reports), "Clever files looked at for landing")

    def progress(r: LandingResult) -> None:
        nonlocal done
        done += 1
        bar.advance()
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
    bar.finish()
    log.info("landing: %s", count_words(summarize(results), LANDING_WORDS))
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
        today or clock.today(),
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
    bar = Progress("clever-processing-progress", len(entries), "Clever files pseudonymized")

    def progress(r: Any) -> None:
        nonlocal done
        done += 1
        bar.advance()
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
    bar.finish()
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


# Landing outcomes and processing statuses in words (the run report's tables and lines).
LANDING_WORDS = {
    "vanished": "vanished before it was landed",
    "landed": "landed",
    "new-version": "landed (a new version)",
    "same-content": "already landed (same content)",
    "unchanged": "already landed (unchanged)",
}
STATUS_WORDS = {
    "processed": "ok",
    "empty": "ok (empty file)",
    "header-mismatch": "FAILED: the header does not match the report",
    "not-a-report": "FAILED: not a Clever report",
    "too-many-bad-rows": "FAILED: too many bad rows",
    "error": "FAILED: error",
}
HOW_READ = {
    "fast": "all at once",
    "exact": "again, row by row (some rows were malformed)",
}


def _landing_order(r: LandingResult) -> int:
    """Problems first (vanished), then what this run landed, then what it already had."""
    return list(LANDING_WORDS).index(r.outcome) if r.outcome in LANDING_WORDS else 0


def _processing_order(f: FileResult) -> tuple[int, int, str]:
    """Failed files first, then files with quarantined rows (most first), then the rest."""
    failed = f.status not in ("processed", "empty")
    return (0 if failed else 1 if f.rows_quarantined else 2, -f.rows_quarantined, f.name)


def landing_rows(landed: list[LandingResult]) -> list[dict[str, Any]]:
    """The landing table: what happened to each offered file, problems first."""
    return [
        {
            "file": r.name,
            "outcome": LANDING_WORDS.get(r.outcome, r.outcome),
            "bytes": r.size,
            "stored as (stage1np)": r.entry.path if r.entry else "",
        }
        for r in sorted(landed, key=lambda r: (_landing_order(r), r.name))
    ] or [{"file": "(none offered)", "outcome": "", "bytes": 0, "stored as (stage1np)": ""}]


def processing_rows(files: list[FileResult]) -> list[dict[str, Any]]:
    """The processing table: problem files first, the useful columns first."""
    return [
        {
            "file": f.name,
            "status": STATUS_WORDS.get(f.status, f.status),
            "rows quarantined": f.rows_quarantined,
            "quarantine file (protected)": f.quarantine_file or "",
            "error": f.error or "",
            "why quarantined": top_reasons(f.quarantine_reasons) if f.quarantine_reasons else "",
            "rows read": f.rows_read,
            "rows written": f.rows_written,
            "table": f.table,
            "partitions": len(f.partitions),
            "read": HOW_READ.get(f.mode, f.mode),
        }
        for f in sorted(files, key=_processing_order)
    ] or [{"file": "(nothing to process)"}]


def problem_lines(
    discovery: pipeline.Discovery,
    landed: list[LandingResult],
    processed: pipeline.ProcessingResult,
    freshness: CleverFreshness | None,
    skipped: list[SkipDecision],
) -> list[str]:
    """The report's problems, worst first: failed, quarantined, skipped, stale, the rest."""
    lines = [f"- **FAILED** `{f.name}`: {f.error}" for f in processed.failed]
    quarantined = sorted(
        (f for f in processed.files if f.rows_quarantined), key=lambda f: -f.rows_quarantined
    )
    for f in quarantined:
        kept = "" if f in processed.failed else " (the rest of the file was written)"
        why = f"; why: {top_reasons(f.quarantine_reasons)}" if f.quarantine_reasons else ""
        lines.append(
            f"- **QUARANTINED** {f.rows_quarantined:,} of {f.rows_read:,} rows of `{f.name}`"
            f"{kept}, in `{f.quarantine_file}` (protected zone){why}"
        )
    lines += [f"- skipped by decision: {d.line()}" for d in skipped]
    if freshness:
        lines += [
            f"- **WARNING** {w}" for r in freshness.reports.values() for w in r.warning_lines()
        ]
    vanished = [r.name for r in landed if r.outcome == "vanished"]
    if vanished:
        lines.append(
            f"- **WARNING** {len(vanished)} file(s) vanished from the source before they were "
            "landed"
        )
    misplaced = discovery.misplaced_message()
    if misplaced:
        lines.append(f"- **WARNING** {misplaced}")
    if discovery.missing_folders:
        folders = ", ".join(f"{f}/" for f in discovery.missing_folders)
        lines.append(f"- **WARNING** the source has no {folders} folder")
    return lines


def count_lines(
    discovery: pipeline.Discovery,
    landed: list[LandingResult],
    processed: pipeline.ProcessingResult,
    published: list[dict[str, object]],
    freshness: CleverFreshness | None,
) -> list[str]:
    """The report's counts, in words."""
    files = processed.files
    read_again = sum(1 for f in files if f.mode == "exact")
    lines = [
        f"- files offered: {len(discovery.reports):,}"
        + (f" ({len(discovery.ignored):,} other names ignored)" if discovery.ignored else ""),
        f"- landing: {count_words(summarize(landed), LANDING_WORDS)}",
        f"- files processed: {len(files):,}; {sum(f.rows_written for f in files):,} rows "
        f"written, {sum(f.rows_quarantined for f in files):,} quarantined"
        + (f"; {read_again} file(s) read again row by row" if read_again else ""),
        "- partitions changed: "
        + count_words({f"in {t}": len(p) for t, p in processed.changed.items()}),
        "- identities in the protected lookups: "
        + count_words({f"by {c}": n for c, n in processed.lookups.items()}),
    ]
    if published:
        lines.append(f"- tables published: {len(published)}")
    if freshness:
        lines += [f"- {r.status_line()}" for r in freshness.reports.values()]
    return lines


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

    The summary's first line says how the run ends (OK / WARNING / FAILED) and why; then
    the problems (failed, quarantined, skipped, stale), then the counts, in words: a
    stale source or a failed file is never hidden below the counts.
    """
    skipped = skipped or []
    status, headline = run_status(discovery, processed, freshness, skipped)
    create_table_artifact(
        key="clever-landing",
        table=landing_rows(landed),
        description="Clever files landed or skipped in this run (problems first).",
    )
    create_table_artifact(
        key="clever-processing",
        table=processing_rows(processed.files),
        description="Per landed file: problems first; rows quarantined, where, and why.",
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
        "quarantine_files": [f.quarantine_file for f in processed.files if f.quarantine_file],
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
    problems = problem_lines(discovery, landed, processed, freshness, skipped)
    lines = [f"# Clever participation run: {headline}", ""]
    if demo:
        lines += ["**DEMO MODE: demo key, not for real student data.**", ""]
    lines += ["## Problems", *(problems or ["- none"]), "", "## Counts"]
    lines += count_lines(discovery, landed, processed, published, freshness)
    create_markdown_artifact(
        key="clever-summary", markdown="\n".join(lines), description="Clever run summary."
    )
    return summary
