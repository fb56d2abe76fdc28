"""Clever Participation Reports: source -> stage1np -> stage2p + stage2np -> catalog."""

from __future__ import annotations

import datetime as dt
from typing import Any

from edulake.core.faults import pausepoint
from edulake.core.settings import CatalogKind, SourceKind, get_settings
from edulake.demo.clever_testdata import TestDataOptions
from edulake.privacy.keys import demo_refusal
from edulake.sources import registry
from edulake.sources.clever import pipeline
from tasks.audit import audit_before_publish
from tasks.clever import (
    apply_skip_decisions,
    check_report_freshness,
    discover_reports,
    land_files,
    open_source,
    pseudonymize_reports,
    report_run,
)
from tasks.common import edulake_flow, make_catalog, make_lake, resolve_key, validate_run
from tasks.events import emit_data_committed
from tasks.lease import hold_lake_lease
from tasks.publish import publish_tables, results_rows
from tasks.report import publish_report


class FilesFailed(RuntimeError):
    """Some files could not be processed; the rest of the run was committed."""


class SourceStale(RuntimeError):
    """The newest Clever report is older than fail_report_age_days (or there is none)."""


@edulake_flow(name="clever-participation")
def clever_participation(
    source: SourceKind = "testdata",
    source_path: str | None = None,
    sftp_block: str = "edulake-clever-sftp",
    lake_root: str | None = None,
    np_root: str | None = None,
    report_from: dt.date | None = None,
    report_to: dt.date | None = None,
    demo: bool = False,
    hmac_key_block: str | None = "edulake-hmac-key",
    aws_credentials_block: str | None = None,
    catalog: CatalogKind | None = None,
    max_concurrent_downloads: int = 4,
    max_quarantine_share: float | None = None,
    max_report_age_days: int = 2,
    fail_report_age_days: int | None = None,
    skip_files: list[str] | None = None,
    skip_reason: str | None = None,
    testdata: TestDataOptions | None = None,
) -> dict[str, Any]:
    """Land Clever reports, pseudonymize them and publish them for BI tools.

    Args:
        source: where the reports come from: sftp (Clever's SFTP server, production),
            folder (a folder laid out like it) or testdata (the bundled generator, demo).
        source_path: the folder, for source=folder (unused otherwise).
        sftp_block: name of the SftpServer block (host, user, key, pinned host key), for
            source=sftp.
        lake_root: the lake's root (a folder or s3://bucket/prefix); empty:
            EDULAKE_LAKE__ROOT.
        np_root: the root of the protected zones (identity lookups, quarantine), ideally
            another bucket; empty: EDULAKE_LAKE__NP_ROOT, else <lake_root>-protected for
            a local lake (an s3:// lake then shares its root, with a warning).
        report_from: the first report date to take (inclusive); empty: no lower bound.
        report_to: the last report date to take (inclusive); empty: no upper bound.
        demo: allow the public demo key when no key is configured (test data only; refused
            for real sources).
        hmac_key_block: name of the Secret (or AwsSecret) block holding the
            pseudonymization key; empty (null), or no such block: EDULAKE_HMAC_KEY, else
            the demo key when demo is true.
        aws_credentials_block: name of a prefect-aws AwsCredentials block for an s3://
            lake or the Glue catalog; empty: settings or the AWS default chain.
        catalog: where tables are published: duckdb (embedded) or glue (Athena); empty:
            EDULAKE_CATALOG__KIND.
        max_concurrent_downloads: parallel transfers when many files are due.
        max_quarantine_share: a file fails (nothing of it written) above this share of bad
            rows, e.g. 0.01; empty: EDULAKE_MAX_QUARANTINE_SHARE.
        max_report_age_days: warn, and emit edulake.source.stale, when the newest report on
            the server is older than this (not checked for testdata, whose dates are fixed).
        fail_report_age_days: fail the run when the newest report is older than this, after
            everything else is committed; empty: EDULAKE_FAIL_REPORT_AGE_DAYS (7).
        skip_files: report files (FILE or FILE@<sha256 prefix>) whose newest version is
            acknowledged as bad: recorded as skipped by decision, not processed.
        skip_reason: why those files are skipped (required with skip_files; kept with the
            decision).
        testdata: the generator's options, for source=testdata (days, students, seed, ...).
    """
    validate_run(
        lake_root=lake_root,
        np_root=np_root,
        catalog=catalog,
        source=source,
        source_path=source_path,
        aws_credentials_block=aws_credentials_block,
    )
    lake = make_lake(lake_root, np_root, aws_credentials_block)
    key = resolve_key(
        hmac_key_block, demo, demo_refusal=demo_refusal(source), lake=lake, source="clever"
    )
    share = (
        max_quarantine_share
        if max_quarantine_share is not None
        else (get_settings().max_quarantine_share)
    )
    fail_age = (
        fail_report_age_days
        if fail_report_age_days is not None
        else get_settings().fail_report_age_days
    )
    lake.sweep_tmp()
    # One writer at a time: landing (the ledger's skip check must see every landing),
    # processing (lookups, suppression read at commit time), publishing.
    with hold_lake_lease(lake, "clever-participation"):
        src = open_source(source, source_path, sftp_block, testdata)
        try:
            found = discover_reports(src, report_from, report_to)
            landed = land_files(lake, src, found.reports, max_concurrent_downloads)
        finally:
            src.close()
        fresh = (
            check_report_freshness(lake, found, max_report_age_days, fail_age_days=fail_age)
            if source != "testdata"
            else None
        )
        skipped = apply_skip_decisions(lake, skip_files or [], skip_reason)
        processed = pseudonymize_reports(lake, key, report_from, report_to, share)
        pausepoint("clever.processed")
        # A raw id where analysts could read it fails the run here, unpublished (tasks/audit.py).
        audit_before_publish(lake, registry.clever_scope(processed.files, processed.changed))
        cat = make_catalog(lake, catalog)
        try:
            # the catalog catches up with the lake, whatever earlier runs left undone
            tables = pipeline.catalog_tables(lake, key.key_id)
            published = publish_tables(cat, tables, views_for="clever")
        finally:
            cat.close()
        changed = sorted(t for t, parts in processed.changed.items() if parts)
        if changed:
            # After commit and publish: deployment triggers may react to it.
            rows: dict[str, int] = {}
            for f in processed.files:
                rows[f.table] = rows.get(f.table, 0) + f.rows_written
            emit_data_committed("clever", changed, rows)
    summary = report_run(found, landed, processed, results_rows(published), demo, fresh, skipped)
    publish_report(lake, "clever", catalog, freshness=fresh)  # exports/dashboard/clever.html
    stale = fresh.failure_message() if fresh else None
    if processed.failed:
        raise FilesFailed(
            f"{len(processed.failed)} file(s) not processed (the rest was committed): "
            + "; ".join(f"{f.name}: {f.error}" for f in processed.failed)
            + ". To accept a bad file: python -m edulake clever-skip FILE --reason '...'."
            + (f" Also: {stale}" if stale else "")
        )
    if stale:
        raise SourceStale(stale)
    return summary
