"""Clever tasks: discover, land, pseudonymize (process), and the run report."""

from __future__ import annotations

import datetime as dt
from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from edulake.connectors.files import FileSource, FolderSource
from edulake.core.lake import Lake
from edulake.core.landing import LandingResult, Ledger, SourceFile, summarize
from edulake.privacy.pseudonym import Pseudonymizer, PseudonymKey
from edulake.sources.clever import pipeline
from edulake.sources.clever.freshness import FreshnessReport, check_freshness
from edulake.sources.clever.names import ReportName, parse_report_name
from edulake.sources.clever.process import SOURCE
from tasks.common import explain_storage_errors, logger, retry_if_transient

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
            raise ValueError(
                "source='folder' needs source_path: a folder laid out like Clever's SFTP"
            )
        return FolderSource(source_path)
    if source == "sftp":
        from edulake.connectors.blocks import open_sftp_source  # type: ignore[attr-defined,unused-ignore]

        return open_sftp_source(sftp_block)  # type: ignore[no-any-return,unused-ignore]
    raise ValueError(f"unknown source {source!r}: use testdata, folder or sftp")


@task(
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
    return found


@task(
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


@task(name="check-freshness", cache_policy=NO_CACHE)
def check_report_freshness(
    lake: Lake, discovery: pipeline.Discovery, max_age_days: int, today: dt.date | None = None
) -> FreshnessReport:
    """Warn when the server's newest report is old or report days are missing from the lake."""
    landed: set[dt.date] = set()
    for name in Ledger(lake, SOURCE).latest():
        try:
            landed.add(parse_report_name(name).report_date)
        except ValueError:
            continue
    available = {name.report_date for _f, name in discovery.reports}
    report = check_freshness(
        available, landed, today or dt.datetime.now(dt.UTC).date(), max_age_days
    )
    log = logger()
    log.info(
        "newest report on the server: %s (%s days old); last landed: %s",
        report.newest_available,
        report.age_days,
        report.last_landed,
    )
    for warning in report.warnings:
        log.warning("freshness: %s", warning)
    return report


@task(
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


def report_run(
    discovery: pipeline.Discovery,
    landed: list[LandingResult],
    processed: pipeline.ProcessingResult,
    published: list[dict[str, object]],
    demo: bool,
    freshness: FreshnessReport | None = None,
) -> dict[str, Any]:
    """Leave the run's report as Prefect artifacts and return its summary."""
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
        "demo": demo,
        "freshness": freshness.as_dict() if freshness else None,
    }
    lines = [
        "# Clever participation run",
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
    for f in processed.failed:
        lines.append(f"- **FAILED** `{f.name}`: {f.error}")
    create_markdown_artifact(
        key="clever-summary", markdown="\n".join(lines), description="Clever run summary."
    )
    return summary
