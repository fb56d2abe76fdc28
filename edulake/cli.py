"""``edulake`` command line: run the flows locally and look at the result.

python -m edulake demo                 # Clever on bundled test data -> ./lake -> DuckDB
python -m edulake clever --source folder --source-path DIR [--lake-root ...]
python -m edulake libinsight --base-url URL --dataset-id N --client-id ID  # secret: block/env
python -m edulake query "SELECT ..." [--format table|csv|json]   # the DuckDB catalog
python -m edulake report [--source clever|libinsight|all] [--screenshot]  # offline dashboards
python -m edulake audit [--lake-root ...] [--np-root ...]   # PII audit: exit 1 on findings
python -m edulake forget --ids-file FILE [--source libinsight] # erasure request
python -m edulake rotate-key                                 # re-pseudonymize with a new key
python -m edulake keygen                                     # print a new key (64 hex)
python -m edulake clever-skip FILE --reason "..."            # accept a bad Clever file
python -m edulake libinsight-watermark --dataset-id N --set YYYY-MM-DD | --clear
python -m edulake --version

Exit codes: 0 done, 1 a run that failed (or audit findings), 2 a usage or configuration
error. An expected error prints one line (its own message, built without data) and, for a
flow run, a short run summary; ``--debug`` shows tracebacks. Any other exception prints its
type only (its message may quote data).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime as dt
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from edulake.core import clock

if TYPE_CHECKING:
    from edulake.core.lake import Lake

# edulake's own log lines (HTTP retries, SFTP reconnects, per-file errors) reach the
# Prefect UI only when Prefect ships their logger. Prefect reads this when it is imported,
# and everything below imports it lazily: set here, unless the user chose otherwise.
os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "edulake")
# The temporary Prefect server a CLI run starts can take well over the 20 s default on a
# small or busy machine (seen on 2 shared cores): wait longer before giving up.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")

# The dashboard views are the published layer: counts of fewer than EDULAKE_PUBLISH__MIN_CELL
# people (default 10) are NULL with suppressed = true (docs/guarantees.md#published-aggregates).
DEMO_QUERIES = {
    "Active students per school (first day)": """
        SELECT school_name, active_students, suppressed
        FROM clever.active_students_per_school_day
        WHERE "date" = (SELECT MIN("date") FROM clever.active_students_per_school_day)
        ORDER BY active_students DESC NULLS LAST, school_name LIMIT 5""",
    "Average logins and resources per student-day, by school": """
        SELECT school_name, students, ROUND(avg_logins_per_student_day, 2) AS avg_logins,
               ROUND(avg_resources_per_student_day, 2) AS avg_resources
        FROM clever.avg_usage_per_student_by_school
        ORDER BY students DESC NULLS LAST, school_name LIMIT 5""",
    "Top resources by distinct students (the largest school)": """
        SELECT school_name, resource_rank, resource_name, students, suppressed
        FROM clever.top_resources_by_school
        WHERE clever_school_id = (
            SELECT clever_school_id FROM clever.avg_usage_per_student_by_school
            ORDER BY students DESC NULLS LAST, clever_school_id LIMIT 1)
        ORDER BY resource_rank""",
    "Usage over time (students)": """
        SELECT "date", active_users, logins, resources_accessed FROM clever.usage_over_time
        WHERE role = 'students' ORDER BY "date" LIMIT 7""",
    "Suppressed cells (fewer than the minimum n of people, and their complements)": """
        SELECT 'active_students_per_school_day' AS view, COUNT(*) FILTER (WHERE suppressed)
               AS suppressed, COUNT(*) AS cells FROM clever.active_students_per_school_day
        UNION ALL SELECT 'avg_usage_per_student_by_school', COUNT(*) FILTER (WHERE suppressed),
               COUNT(*) FROM clever.avg_usage_per_student_by_school
        UNION ALL SELECT 'top_apps_by_users', COUNT(*) FILTER (WHERE suppressed), COUNT(*)
               FROM clever.top_apps_by_users
        UNION ALL SELECT 'top_resources_by_school', COUNT(*) FILTER (WHERE suppressed),
               COUNT(*) FROM clever.top_resources_by_school
        UNION ALL SELECT 'usage_over_time', COUNT(*) FILTER (WHERE suppressed), COUNT(*)
               FROM clever.usage_over_time""",
}


EXIT_FAILED = 1  # a run that failed, audit findings
EXIT_USAGE = 2  # a usage or configuration error: fix the command or the settings

# Expected errors, by qualified class name (subclasses count): their messages are built by
# edulake from counts, dates, names and paths, never from row data, so they are shown.
# Usage/configuration errors exit 2, the rest (a run that failed) exit 1.
USAGE_ERRORS = (
    "edulake.core.settings.ConfigError",
    "edulake.connectors.files.SourceRootError",
    "edulake.connectors.sftp.SftpConfigError",
    "edulake.connectors.sftp.HostKeyError",
    "edulake.connectors.sftp.SftpAuthError",
    "edulake.connectors.aws.S3AccessError",
    "edulake.privacy.pseudonym.WeakKeyError",
    "edulake.privacy.pseudonym.MissingKeyError",
    "edulake.privacy.keys.DemoKeyError",
    "edulake.privacy.lookup.KeyMismatchError",
    "edulake.sources.libinsight.config.DatasetMismatchError",
    "edulake.sources.libinsight.windows.NoStartError",
    "edulake.sources.clever.decisions.SkipError",
    "tasks.libinsight.MissingClientSecretError",
)
RUN_ERRORS = (
    "flows.clever_participation.SourceStale",
    "flows.clever_participation.FilesFailed",
    "edulake.core.lease.LeaseError",  # LeaseBusy, LeaseLost
    "edulake.core.lake.StorageUnavailableError",
    "edulake.core.landing.IncompleteTransferError",
    "edulake.privacy.keys.KeyRotationInProgress",
    "edulake.privacy.scrub.DataError",
    "edulake.sources.clever.pipeline.LandingFailed",
    "edulake.sources.libinsight.pipeline.DriftError",
    "edulake.connectors.http.client.HttpError",
    "edulake.connectors.http.paging.PageFormatError",
    "edulake.connectors.http.paging.PagesChangedError",
    "edulake.connectors.sftp.SftpError",
    "edulake.catalog.athena.AthenaQueryFailed",
    "edulake.specs.HeaderMismatch",
    "edulake.specs.IdentifierPolicyError",
    "tasks.libinsight.FutureWatermarkError",
    "tasks.libinsight.LegacyTableError",
    "tasks.libinsight.TableOwnedError",
    "tasks.maintenance.ForgetIncomplete",
    "tasks.audit.LeakFound",
)


_UNKNOWN = " (run with --debug for details)"


def _is_a(exc: BaseException, names: Sequence[str]) -> bool:
    qualified = {f"{c.__module__}.{c.__qualname__}" for c in type(exc).__mro__}
    return bool(qualified.intersection(names))


def error_line(exc: BaseException) -> tuple[str, int]:
    """(the one line to print, the exit code) for an exception that ends a command.

    Expected errors keep their own message; a settings error names the fields only; any
    other exception is reduced to its type (its message may hold data)."""
    from edulake.privacy.scrub import ScrubbedError, is_safe

    name = type(exc).__name__
    if isinstance(exc, ScrubbedError):  # already reduced to its type (and a label)
        return f"edulake: failed with {exc}{_UNKNOWN}", EXIT_FAILED
    if _is_a(exc, USAGE_ERRORS):
        return f"edulake: {name}: {exc}", EXIT_USAGE
    if _is_a(exc, RUN_ERRORS) or is_safe(exc):
        return f"edulake: {name}: {exc}", EXIT_FAILED
    if _is_a(exc, ("pydantic_core._pydantic_core.ValidationError",)):
        fields = sorted(
            {".".join(str(p) for p in e.get("loc", ())) or "?" for e in exc.errors()}  # type: ignore[attr-defined]
        )
        return f"edulake: invalid setting(s): {', '.join(fields)} (check EDULAKE_*)", EXIT_USAGE
    return f"edulake: failed with {name}{_UNKNOWN}", EXIT_FAILED


def _print_table(title: str | None, table: object, max_width: int | None = 40) -> None:
    """A plain text table; values longer than ``max_width`` are cut (None: never)."""
    import pyarrow as pa

    assert isinstance(table, pa.Table)
    if title is not None:
        print(f"\n== {title}")
    rows = table.to_pylist()
    cols = table.column_names

    def cell(v: object) -> str:
        text = "NULL" if v is None else str(v)
        return text[:max_width] if max_width is not None else text

    cells = [[cell(r[c]) for c in cols] for r in rows]
    heads = [c[:max_width] if max_width is not None else c for c in cols]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(heads)]
    print("  ".join(h.ljust(w) for h, w in zip(heads, widths, strict=True)).rstrip())
    for r in cells:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())


def _print_csv(table: object) -> None:
    import csv

    import pyarrow as pa

    assert isinstance(table, pa.Table)
    out = csv.writer(sys.stdout, lineterminator="\n")
    out.writerow(table.column_names)
    for r in table.to_pylist():
        out.writerow(["" if v is None else v for v in r.values()])


def _print_json(table: object) -> None:
    import pyarrow as pa

    assert isinstance(table, pa.Table)
    print(json.dumps(table.to_pylist(), indent=2, default=str, ensure_ascii=False))


def _catalog_path(lake_root: str | None) -> str:
    """The analysts' DuckDB file: EDULAKE_CATALOG__DUCKDB_PATH, else <lake root>/catalog/."""

    from edulake.core.settings import ConfigError, get_settings

    settings = get_settings()
    configured = settings.catalog.duckdb_path
    if configured:
        return configured
    root = lake_root or settings.lake.root
    if "://" in root and not root.startswith("file://"):
        raise ConfigError(
            f"the lake {root} is not a local folder: set EDULAKE_CATALOG__DUCKDB_PATH to "
            "the DuckDB catalog file the flows publish to"
        )
    return os.path.join(os.path.abspath(root.removeprefix("file://")), "catalog", "edulake.duckdb")


def show_answers(lake_root: str, queries: dict[str, str] | None = None) -> None:
    """Print a few answers from the catalog (the Clever dashboard views by default)."""
    import duckdb

    con = duckdb.connect(_catalog_path(lake_root), read_only=True)
    try:
        for title, sql in (queries or DEMO_QUERIES).items():
            _print_table(title, con.sql(sql).to_arrow_table())
    finally:
        con.close()


@contextlib.contextmanager
def _quiet_tracebacks(debug: bool) -> Iterator[None]:
    """Keep Prefect's console log lines but drop the tracebacks they carry (unless --debug).

    Only the console handlers change: the API handler (the Prefect UI) still gets them."""
    if debug:
        yield
        return
    from prefect.logging.handlers import PrefectConsoleHandler

    loggers = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
    handlers = {
        h
        for lg in loggers
        if isinstance(lg, logging.Logger)
        for h in lg.handlers
        if isinstance(h, PrefectConsoleHandler)
    }
    originals = {h: h.format for h in handlers}

    from edulake.privacy.scrub import safe_message

    # Messages of unknown exceptions (they may quote data): Prefect repeats them in later
    # lines ("Finished in state Failed(...)"), so each is remembered and replaced there too.
    withheld: dict[str, str] = {}

    def stripped(fmt: Callable[[logging.LogRecord], str]) -> Callable[[logging.LogRecord], str]:
        def format_record(record: logging.LogRecord) -> str:
            bare = copy.copy(record)
            exc = record.exc_info[1] if record.exc_info else None
            if exc is not None and str(exc) and error_line(exc)[0].endswith(_UNKNOWN):
                withheld[str(exc)] = safe_message(exc)
            if withheld:
                text = record.getMessage()
                for raw, safe in withheld.items():
                    text = text.replace(repr(raw)[1:-1], safe).replace(raw, safe)
                bare.msg, bare.args = text, ()
            bare.exc_info, bare.exc_text, bare.stack_info = None, None, None
            return fmt(bare)

        return format_record

    for h, fmt in originals.items():
        h.format = stripped(fmt)  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        for h, fmt in originals.items():
            h.format = fmt  # type: ignore[method-assign]


def _run_artifacts(flow_run_id: object, keys: Sequence[str]) -> list[str]:
    """The markdown of this flow run's summary artifacts (empty when it stopped before)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterKey,
        FlowRunFilter,
        FlowRunFilterId,
    )

    try:
        with get_client(sync_client=True) as client:
            found = client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=list(keys))),
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),  # type: ignore[list-item]
            )
    except Exception:  # the summary is a courtesy; the error line was printed
        return []
    return [str(a.data) for a in found if isinstance(a.data, str)]


def _plain(markdown: str) -> list[str]:
    lines = []
    for line in markdown.splitlines():
        text = line.replace("**", "").replace("`", "").lstrip("# ").rstrip()
        if text:
            lines.append(text)
    return lines


def _run_flow(
    args: argparse.Namespace,
    flow_fn: Any,
    summary_keys: Sequence[str],
    printer: Callable[[dict[str, Any]], None],
    **params: Any,
) -> int:
    """Run a flow; print its summary; on failure one line, the run's report, exit 1 or 2."""
    with _quiet_tracebacks(args.debug):
        state = flow_fn(**params, return_state=True)
    result = state.result(raise_on_failure=False)
    if not isinstance(result, BaseException):
        if getattr(args, "json", False):
            print(json.dumps(result, indent=2, default=str))
        elif isinstance(result, dict):
            printer(result)
        return 0
    if args.debug:
        raise result
    line, code = error_line(result)
    print(f"\n{line}", file=sys.stderr)  # below Prefect's log lines, where it is seen
    if not summary_keys:  # a flow without a summary artifact: its logs above tell
        return code
    reports = _run_artifacts(state.state_details.flow_run_id, summary_keys)
    print("\n== Run summary (failed)", file=sys.stderr)
    for md in reports:
        for text in _plain(md):
            print(f"  {text}", file=sys.stderr)
    if not reports:
        print(
            "  the run stopped before its report: its log lines above say how far it got",
            file=sys.stderr,
        )
    return code


def _missing_line(report: dict[str, Any]) -> str | None:
    """Missing report days as ranges (freshness already groups them), never one per day."""
    from edulake.sources.clever.freshness import ranges_text

    days = int(report.get("missing_days") or 0)
    if not days:
        return None
    ranges = list(report.get("missing_ranges") or [])
    return f"missing from the lake: {days} day(s) in {len(ranges)} range(s): " + ranges_text(
        ranges, limit=5
    )


def print_clever_summary(s: dict[str, Any]) -> None:
    """The Clever run summary in a few lines (``--json`` prints all of it)."""
    print("\n== Run summary")
    print(f"  {s.get('headline', s.get('status', ''))}")
    if s.get("demo"):
        print("  DEMO MODE: demo key, not for real student data")
    landing = ", ".join(f"{k} {v}" for k, v in sorted((s.get("landing") or {}).items()))
    print(
        f"  files offered {s.get('offered', 0)} (ignored {s.get('ignored', 0)}); "
        f"landing: {landing or 'nothing'}"
    )
    print(
        f"  files processed {s.get('files_processed', 0)}; rows written "
        f"{s.get('rows_written', 0)}, quarantined {s.get('rows_quarantined', 0)}"
    )
    for name in s.get("failed_files") or []:
        print(f"  FAILED: {name}")
    for d in s.get("skipped_files") or []:
        print(f"  skipped by decision: {d.get('file')} ({d.get('reason')})")
    if s.get("misplaced"):
        print(f"  {len(s['misplaced'])} file(s) not where Clever puts reports")
    for name, report in (s.get("freshness") or {}).items():
        newest = report.get("newest_on_server") or "none"
        print(
            f"  {name}: newest on the server {newest}, last landed "
            f"{report.get('last_landed') or 'none'}"
        )
        missing = _missing_line(report)
        if missing:
            print(f"    {missing}")


def print_libinsight_summary(s: dict[str, Any]) -> None:
    print("\n== Run summary")
    if s.get("stale"):
        print(f"  STALE: {s['stale']}")
    print(
        f"  LibInsight dataset {s.get('dataset_id')} -> libinsight.{s.get('table')}: "
        f"{s.get('mode')} {s.get('range') or '(up to date, nothing to fetch)'}"
    )
    print(
        f"  pages {s.get('pages', 0)}, rows written {s.get('rows_written', 0)}, "
        f"quarantined {s.get('quarantined', 0)}, months rewritten {s.get('months_rewritten', 0)}"
    )
    print(f"  watermark {s.get('watermark_before')} -> {s.get('watermark_after')}")
    if s.get("held_fields"):
        print(f"  held back (classify in the config): {', '.join(map(str, s['held_fields']))}")


def print_plain_summary(s: dict[str, Any]) -> None:
    print("\n== Run summary")
    for k, v in s.items():
        print(f"  {k}: {json.dumps(v, default=str) if isinstance(v, (dict, list)) else v}")


def cmd_demo(args: argparse.Namespace) -> int:
    from flows.clever_participation import clever_participation

    testdata = {"days": args.days, "students": args.students}
    code = _run_flow(
        args,
        clever_participation,
        ["clever-summary"],
        print_clever_summary,
        source="testdata",
        lake_root=args.lake_root,
        demo=True,
        testdata=testdata,
    )
    if code or args.json:  # --json: stdout is the summary alone
        return code
    show_answers(args.lake_root)
    print(
        f"\nThe lake is in {os.path.abspath(args.lake_root)}; the SQL database is "
        f"{_catalog_path(args.lake_root)} (schema clever). The protected lookups are under "
        f"{_np_catalog_dir(args.lake_root, None)} (stewards: `edulake query --steward`).\n"
        "Run it again: nothing is landed twice and the tables stay the same."
    )
    return 0


def cmd_clever(args: argparse.Namespace) -> int:
    from flows.clever_participation import clever_participation

    return _run_flow(
        args,
        clever_participation,
        ["clever-summary"],
        print_clever_summary,
        source=args.source,
        source_path=args.source_path,
        sftp_block=args.sftp_block,
        lake_root=args.lake_root,
        np_root=args.np_root,
        report_from=args.report_from,
        report_to=args.report_to,
        demo=args.demo,
    )


def cmd_libinsight(args: argparse.Namespace) -> int:
    from flows.libinsight_dataset import libinsight_dataset

    return _run_flow(
        args,
        libinsight_dataset,
        ["libinsight-summary"],
        print_libinsight_summary,
        base_url=args.base_url,
        dataset_id=args.dataset_id,
        client_id=args.client_id,
        client_secret_block=args.client_secret_block or None,
        auth_mode=args.auth_mode,
        dataset_config=args.dataset_config,
        from_date=args.from_date,
        to_date=args.to_date,
        lake_root=args.lake_root,
        np_root=args.np_root,
        demo=args.demo,
    )


def _np_catalog_dir(lake_root: str, np_root: str | None) -> str | None:
    """The folder of the protected ``<source>_np.duckdb`` files: ``<np root>/catalog``."""
    from edulake.core.settings import get_settings, resolve_np_root

    protected = resolve_np_root(lake_root, np_root or get_settings().lake.np_root)
    if protected is None:  # an s3:// lake with a local DuckDB file: they sit beside it
        return os.path.dirname(_catalog_path(lake_root))
    return os.path.join(os.path.abspath(protected), "catalog")


def cmd_query(args: argparse.Namespace) -> int:
    import duckdb

    from edulake.catalog.duckdb import connect

    # Analysts' queries never attach the protected <source>_np catalogs; a steward asks
    # for them with --steward, and is told on stderr which were attached.
    if args.np_root and not args.steward:
        print("edulake: --np-root is for --steward queries only", file=sys.stderr)
        return EXIT_USAGE
    path = _catalog_path(args.lake_root)
    if not os.path.isfile(path):
        print(
            f"edulake: no catalog file {path}: run a flow first, or point --lake-root / "
            "EDULAKE_LAKE__ROOT / EDULAKE_CATALOG__DUCKDB_PATH at the lake",
            file=sys.stderr,
        )
        return EXIT_USAGE
    print(f"reading catalog {path}", file=sys.stderr)
    np_dir = _np_catalog_dir(args.lake_root, args.np_root) if args.steward else None
    try:
        con = connect(path, np_dir=np_dir)
    except duckdb.Error as exc:
        if args.debug:
            raise
        print(f"edulake: cannot open the catalog: {_first_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    try:
        if args.steward:
            attached = [
                r[0]
                for r in con.execute(
                    "SELECT database_name FROM duckdb_databases() "
                    "WHERE ends_with(database_name, '_np') ORDER BY 1"
                ).fetchall()
            ]
            print(
                f"STEWARD QUERY: attached the protected catalogs "
                f"{', '.join(attached) or '(none)'} from {np_dir}: results may hold raw "
                "identifiers",
                file=sys.stderr,
            )
        try:
            result = con.sql(args.sql)
            table = result.to_arrow_table() if result is not None else None
        except duckdb.Error as exc:  # a typo, an unknown table: DuckDB's message, one line
            if args.debug:
                raise
            print(f"edulake: SQL error: {_first_line(exc)}", file=sys.stderr)
            return EXIT_USAGE
    finally:
        con.close()
    if table is None:
        print("(no result)", file=sys.stderr)
    elif args.format == "csv":
        _print_csv(table)
    elif args.format == "json":
        _print_json(table)
    else:
        _print_table(None, table, args.max_width)
        print(f"({table.num_rows} row{'s' if table.num_rows != 1 else ''})", file=sys.stderr)
    return 0


def _first_line(exc: BaseException) -> str:
    return next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), type(exc).__name__)


def cmd_demo_libinsight(args: argparse.Namespace) -> int:
    from edulake.demo.libinsight import run_demo  # type: ignore[import-not-found,unused-ignore]

    run_demo(args.lake_root)
    return 0


def _settings_lake(lake_root: str | None, np_root: str | None) -> Lake:
    """``Lake(root, np_root)`` as given; what is not given comes from the settings
    (EDULAKE_LAKE__ROOT, EDULAKE_LAKE__NP_ROOT), never a silent ./lake; the np root
    defaults as the flows default it, and an S3 lake is reached as the flows reach it
    (EDULAKE_S3__*: endpoint, region, keys; else the AWS chain), its access checked."""
    from edulake.connectors.aws import connect_lake
    from edulake.core.settings import get_settings, resolve_np_root

    settings = get_settings()
    root = lake_root or settings.lake.root
    # the protected root as the flows resolve it (<root>-protected beside a local root)
    protected = resolve_np_root(root, np_root or settings.lake.np_root)
    return connect_lake(root, protected, settings.s3.options())


def _source_names() -> list[str]:
    from edulake.sources import registry

    return [s.name for s in registry.registered()]


def cmd_audit(args: argparse.Namespace) -> int:
    from edulake.privacy.audit import audit
    from edulake.sources.libinsight.config import load_dataset_config

    texts: list[tuple[str, str]] = []
    for path in args.log or []:
        with open(path, encoding="utf-8", errors="replace") as fh:
            texts.append((f"log file {path}", fh.read()))
    blobs: list[tuple[str, bytes]] = []
    if args.flow_run or args.prefect_storage:
        from tasks.audit import prefect_storage_files, prefect_texts

        # logs, state messages, artifacts, events; and the pickled results and exceptions
        texts += prefect_texts(args.flow_run or [])
        for folder in args.prefect_storage or [None]:
            blobs += prefect_storage_files(folder)
    report = audit(
        _settings_lake(args.lake_root, args.np_root),
        catalog_paths=args.catalog or [],
        texts=texts,
        blobs=blobs,
        dataset_configs=[load_dataset_config(c) for c in args.dataset_config or []],
        sources=args.source,
    )
    print(
        f"PII audit ({', '.join(args.source or ['every registered source'])}): "
        f"{report.ids_checked} raw identifiers from stage1np checked "
        f"({report.ids_too_short} shorter than 4 characters not searchable); scanned "
        + ", ".join(f"{n} {k}" for k, n in sorted(report.scanned.items()))
    )
    for w in report.warnings:
        print(f"WARNING: {w}")
    for hit in report.findings:
        if hit.kind == "small-cell":
            print(f"FOUND small cell in {hit.location} ({hit.detail})")
        else:
            print(f"FOUND raw identifier #{hit.fingerprint} in {hit.location} ({hit.detail})")
    print(f"{len(report.findings)} finding(s)")
    return 1 if report.findings else 0


def cmd_forget(args: argparse.Namespace) -> int:
    from flows.forget import forget_flow

    return _run_flow(
        args,
        forget_flow,
        [],
        print_plain_summary,
        ids_file=args.ids_file,
        lake_root=args.lake_root,
        np_root=args.np_root,
        demo=args.demo,
        source=args.source,
    )


def cmd_rotate_key(args: argparse.Namespace) -> int:
    from flows.clever_maintenance import rotate_key_flow

    return _run_flow(
        args,
        rotate_key_flow,
        [],
        print_plain_summary,
        source=args.source,
        lake_root=args.lake_root,
        np_root=args.np_root,
    )


def cmd_keygen(args: argparse.Namespace) -> int:
    from edulake.privacy.pseudonym import PseudonymKey, generate_key_text

    text = generate_key_text()
    print(text)
    # stderr, so `python -m edulake keygen > keyfile` stores the key alone
    print(
        f"a new pseudonymization key (32 random bytes, hex; key_id "
        f"{PseudonymKey.from_text(text).key_id}): store it in the Secret block or "
        "EDULAKE_HMAC_KEY, keep a copy offline - losing it means a full rotation",
        file=sys.stderr,
    )
    return 0


def cmd_clever_skip(args: argparse.Namespace) -> int:
    import getpass

    from edulake.sources.clever.decisions import SkipError, skip_file
    from tasks.common import make_lake

    lake = make_lake(args.lake_root, args.np_root)  # settings as the flow reads them
    try:
        decision, new = skip_file(lake, args.file, args.reason, by=args.by or getpass.getuser())
    except SkipError as exc:
        print(f"clever-skip: {exc}", file=sys.stderr)
        return 2
    print(
        ("recorded" if new else "already recorded (unchanged)")
        + f": skipped by decision {decision.line()}\n"
        "Runs no longer process or fail on this version; it stays in stage1np and every "
        "run summary lists it. A new version of the file is processed normally."
    )
    return 0


def cmd_libinsight_watermark(args: argparse.Namespace) -> int:
    from edulake.core.lease import LeaseConfig, lake_lease
    from edulake.core.settings import get_settings
    from edulake.sources.libinsight.config import load_dataset_config
    from edulake.sources.libinsight.store import (
        clear_watermark,
        read_watermark,
        write_watermark,
    )

    yesterday = clock.yesterday()
    if args.set is not None and args.set > yesterday:
        raise SystemExit(
            f"--set {args.set} is after yesterday ({yesterday}): a watermark in the future "
            "makes every run 'up to date'"
        )
    table = args.table or load_dataset_config(args.dataset_config).table_name(args.dataset_id)
    lake = _settings_lake(args.lake_root, args.np_root)
    lease = get_settings().lease
    config = LeaseConfig(wait_s=lease.wait_s, ttl_s=lease.ttl_s, poll_s=lease.poll_s)
    # The watermark is shared state: a run committing the dataset holds the lake lease.
    with lake_lease(lake, "libinsight-watermark", owner="cli", config=config):
        before = read_watermark(lake, table, args.dataset_id)
        if args.clear:
            clear_watermark(lake, table, args.dataset_id)
            after = None
        else:
            write_watermark(lake, table, args.dataset_id, args.set, "cli:libinsight-watermark")
            after = args.set
    print(
        f"watermark of LibInsight dataset {args.dataset_id} (table libinsight.{table}): "
        f"{before} -> {after}"
        + ("" if after else "; the next run starts at the config's backfill_from")
    )
    return 0


def cmd_move_raw(args: argparse.Namespace) -> int:
    from edulake.core.layout import has_legacy_raw, move_raw
    from edulake.core.lease import LeaseConfig, lake_lease
    from edulake.core.settings import get_settings

    lake = _settings_lake(args.lake_root, args.np_root)
    if lake.protected is lake.main:
        print(
            "move-raw: this lake has no separate np root (one-root layout): nothing to move; "
            "give --np-root to move the raw files (stage1np) there",
            file=sys.stderr,
        )
        return EXIT_USAGE
    if not has_legacy_raw(lake):
        print(f"nothing to move: no raw files under {lake.main.uri}")
        return 0
    lease = get_settings().lease
    config = LeaseConfig(wait_s=lease.wait_s, ttl_s=lease.ttl_s, poll_s=lease.poll_s)
    with lake_lease(lake, "move-raw", owner="cli", config=config):
        files, size = move_raw(lake)
    print(
        f"moved {files} raw file(s) ({size:,} bytes) from {lake.main.uri} to "
        f"{lake.protected.uri} (stage1np); runs accept this lake again"
    )
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from edulake.report import SOURCES, NothingPublishedError, write_reports
    from edulake.report.browser import BrowserMissingError, find_chromium

    # the protected root as the flows resolve it: the quarantine counts are read there
    lake = _settings_lake(args.lake_root, args.np_root)
    path = _catalog_path(args.lake_root)
    if not os.path.isfile(path):
        print(
            f"edulake: no catalog file {path}: run a flow first, or point --lake-root / "
            "EDULAKE_LAKE__ROOT / EDULAKE_CATALOG__DUCKDB_PATH at the lake",
            file=sys.stderr,
        )
        return EXIT_USAGE
    if args.screenshot:
        try:
            find_chromium()  # before any page is built: say so at once
        except BrowserMissingError as exc:
            print(f"edulake: {exc}", file=sys.stderr)
            return EXIT_USAGE
    sources = SOURCES if args.source == "all" else (args.source,)
    print(f"reading catalog {path}", file=sys.stderr)
    try:
        written = write_reports(lake, sources, catalog_path=path, screenshot=args.screenshot)
    except NothingPublishedError as exc:
        print(f"edulake: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if not written:
        print(f"edulake: nothing is published in {path} yet: run a flow first", file=sys.stderr)
        return EXIT_USAGE
    for w in written:
        print(f"{w.source} dashboard: {w.uri}")
        if w.screenshot:
            print(f"{w.source} screenshot: {w.screenshot}")
    skipped = [s for s in sources if s not in {w.source for w in written}]
    if skipped:
        print(f"(no page for {', '.join(skipped)}: nothing published yet)", file=sys.stderr)
    return 0


def version() -> str:
    """The installed distribution's version, else the package's own (a source checkout)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("edulake")
    except PackageNotFoundError:
        from edulake import __version__

        return __version__


LAKE_HELP = "lake root: a folder or s3://bucket/prefix (default: EDULAKE_LAKE__ROOT, ./lake)"
NP_HELP = (
    "protected root: stage2np lookups, quarantine, *_np catalogs (default: "
    "EDULAKE_LAKE__NP_ROOT, else <root>-protected)"
)


def build_parser() -> argparse.ArgumentParser:
    # allow_abbrev=False: `--client-secret S` must not pass as `--client-secret-block S`
    # (a block name is a flow parameter, kept by Prefect)
    p = argparse.ArgumentParser(
        prog="edulake",
        allow_abbrev=False,
        description=__doc__.splitlines()[0] if __doc__ else "",
        epilog="Exit codes: 0 done, 1 a failed run (or audit findings), 2 usage/configuration.",
    )
    p.add_argument("--version", action="version", version=f"edulake {version()}")
    p.add_argument(
        "--debug", action="store_true", help="show tracebacks (they may quote data: not for logs)"
    )
    # --debug after the subcommand too (SUPPRESS: it does not reset the one before it)
    common = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    common.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks"
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        return sub.add_parser(
            name, help=help_text, description=help_text, parents=[common], allow_abbrev=False
        )

    def json_option(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--json", action="store_true", help="print the whole run summary as JSON (stdout)"
        )

    demo = command("demo", "Clever pipeline on bundled test data (demo key)")
    demo.add_argument("--lake-root", default="./lake", help="lake root (default: ./lake)")
    demo.add_argument("--days", type=int, default=5, help="report days to generate (default 5)")
    demo.add_argument(
        "--students", type=int, default=2000, help="students to generate (default 2000)"
    )
    json_option(demo)
    demo.set_defaults(func=cmd_demo)

    cl = command("clever", "run the Clever participation flow once")
    cl.add_argument(
        "--source",
        choices=["testdata", "folder", "sftp"],
        default="testdata",
        help="where the reports come from (default: testdata)",
    )
    cl.add_argument("--source-path", help="the reports' folder, for --source folder")
    cl.add_argument(
        "--sftp-block",
        default="edulake-clever-sftp",
        help="SftpServer block name, for --source sftp (default: edulake-clever-sftp)",
    )
    cl.add_argument("--lake-root", help=LAKE_HELP)
    cl.add_argument("--np-root", help=NP_HELP)
    cl.add_argument(
        "--report-from", type=dt.date.fromisoformat, metavar="YYYY-MM-DD", help="first report day"
    )
    cl.add_argument(
        "--report-to", type=dt.date.fromisoformat, metavar="YYYY-MM-DD", help="last report day"
    )
    cl.add_argument(
        "--demo", action="store_true", help="allow the public demo key (test data only)"
    )
    json_option(cl)
    cl.set_defaults(func=cmd_clever)

    lb = command("libinsight", "run the LibInsight dataset flow once against an instance")
    lb.add_argument(
        "--base-url", required=True, help="the instance, e.g. https://yourlib.libinsight.com"
    )
    lb.add_argument("--dataset-id", type=int, required=True, help="the custom dataset's id")
    lb.add_argument(
        "--dataset-config",
        default="reference_desk",
        metavar="NAME|PATH",
        help="bundled config name or a YAML path (default: reference_desk)",
    )
    lb.add_argument(
        "--from",
        dest="from_date",
        type=dt.date.fromisoformat,
        metavar="YYYY-MM-DD",
        help="backfill from this day (default: watermark - lookback)",
    )
    lb.add_argument(
        "--to",
        dest="to_date",
        type=dt.date.fromisoformat,
        metavar="YYYY-MM-DD",
        help="up to this day (default and cap: yesterday)",
    )
    lb.add_argument(
        "--client-id",
        required=True,
        help="API client id (Admin > Widgets & APIs > Manage API Authentication)",
    )
    lb.add_argument(
        "--client-secret-block",
        default="edulake-libinsight-secret",
        help="Secret block holding the client secret (default: edulake-libinsight-secret); "
        "without it EDULAKE_LIBINSIGHT_CLIENT_SECRET. Never pass the secret itself",
    )
    lb.add_argument(
        "--auth-mode",
        choices=["form", "basic"],
        default="form",
        help="send the client credentials as form fields or HTTP Basic (default: form)",
    )
    lb.add_argument("--lake-root", help=LAKE_HELP)
    lb.add_argument("--np-root", help=NP_HELP)
    lb.add_argument(
        "--demo", action="store_true", help="allow the public demo key (stand-in server only)"
    )
    json_option(lb)
    lb.set_defaults(func=cmd_libinsight)

    li = command("demo-libinsight", "LibInsight pipeline against the bundled local server")
    li.add_argument("--lake-root", default="./lake", help="lake root (default: ./lake)")
    li.set_defaults(func=cmd_demo_libinsight)

    q = command("query", "run SQL against the DuckDB catalog (analysts: no protected data)")
    q.add_argument("sql", help="the SQL (DuckDB dialect); schemas clever, libinsight")
    q.add_argument(
        "--lake-root",
        help="read <root>/catalog/edulake.duckdb (default: EDULAKE_CATALOG__DUCKDB_PATH, "
        "else EDULAKE_LAKE__ROOT, else ./lake)",
    )
    q.add_argument(
        "--format",
        choices=["table", "csv", "json"],
        default="table",
        help="output format (default: table; csv and json for scripts)",
    )
    q.add_argument(
        "--max-width",
        type=int,
        metavar="N",
        help="table format: cut values at N characters (default: never cut)",
    )
    q.add_argument(
        "--steward",
        action="store_true",
        help="also attach the protected *_np catalogs (raw identifiers: data stewards only)",
    )
    q.add_argument(
        "--np-root", help="with --steward: the protected root (default: <root>-protected)"
    )
    q.set_defaults(func=cmd_query)

    au = command("audit", "PII audit: raw identifiers outside the protected zones")
    au.add_argument("--lake-root", help=LAKE_HELP)
    au.add_argument("--np-root", help=NP_HELP)
    au.add_argument("--catalog", action="append", help="a DuckDB catalog file outside the lake")
    au.add_argument("--log", action="append", help="a log file to scan (repeatable)")
    au.add_argument(
        "--flow-run",
        action="append",
        help="a Prefect flow run id: its logs, state messages, artifacts, events, and "
        "Prefect's result storage",
    )
    au.add_argument(
        "--prefect-storage",
        action="append",
        help="Prefect's result storage folder (default: PREFECT_LOCAL_STORAGE_PATH)",
    )
    au.add_argument(
        "--dataset-config",
        action="append",
        help="a LibInsight dataset config YAML that is not bundled (repeatable)",
    )
    au.add_argument(
        "--source",
        action="append",
        choices=_source_names(),
        help="only the raw identifiers of this registered source (repeatable; default: "
        "every registered source and any other CSV in stage1np)",
    )
    au.set_defaults(func=cmd_audit)

    rp = command(
        "report", "write the offline HTML dashboard of each source into <lake>/exports/dashboard/"
    )
    rp.add_argument(
        "--source",
        choices=["clever", "libinsight", "all"],
        default="all",
        help="which source's page to write (default: all)",
    )
    rp.add_argument("--lake-root", help=LAKE_HELP)
    rp.add_argument("--np-root", help=NP_HELP + "; only quarantine counts are read from it")
    rp.add_argument(
        "--screenshot",
        action="store_true",
        help="also write a PNG of each page (headless Chromium, 1400x1000) beside it",
    )
    rp.set_defaults(func=cmd_report)

    fg = command("forget", "remove people (raw ids in a file, one a line)")
    fg.add_argument("--ids-file", required=True, help="file of raw ids to forget, one a line")
    fg.add_argument("--lake-root", help=LAKE_HELP)
    fg.add_argument("--np-root", help=NP_HELP)
    fg.add_argument("--demo", action="store_true", help="the lake uses the demo key")
    json_option(fg)
    fg.add_argument(
        "--source",
        choices=["clever", "libinsight"],
        default="clever",
        help="clever: sis_id/staff_id/clever_user_id; libinsight: staff names (_entered_by)",
    )
    fg.set_defaults(func=cmd_forget)

    rk = command("rotate-key", "re-pseudonymize everything with the configured key")
    rk.add_argument("--lake-root", help=LAKE_HELP)
    rk.add_argument("--np-root", help=NP_HELP)
    rk.add_argument(
        "--source",
        choices=["clever", "libinsight"],
        default=None,
        help="rotate one source (default: every registered source)",
    )
    json_option(rk)
    rk.set_defaults(func=cmd_rotate_key)

    kg = command("keygen", "print a new pseudonymization key (32 random bytes, hex)")
    kg.set_defaults(func=cmd_keygen)

    sk = command("clever-skip", "accept a bad Clever file: skip its current version, by decision")
    sk.add_argument("file", help="report file name (or FILE@<sha256 prefix> for one version)")
    sk.add_argument("--reason", required=True, help="why skipping it is right (kept, shown)")
    sk.add_argument("--by", help="who decides (default: this user's login name)")
    sk.add_argument("--lake-root", help=LAKE_HELP)
    sk.add_argument("--np-root", help=NP_HELP)
    sk.set_defaults(func=cmd_clever_skip)

    mv = command(
        "move-raw",
        "move raw files (stage1np) left under the lake root by an older edulake to the np root",
    )
    mv.add_argument("--lake-root", help=LAKE_HELP)
    mv.add_argument("--np-root", help=NP_HELP)
    mv.set_defaults(func=cmd_move_raw)

    wm = command("libinsight-watermark", "set or clear a LibInsight dataset's watermark")
    wm.add_argument("--dataset-id", type=int, required=True, help="the custom dataset's id")
    wm.add_argument(
        "--dataset-config", default="reference_desk", help="the dataset's config (name or YAML)"
    )
    wm.add_argument(
        "--table", help="the table's state to edit, overriding the config's (repairs only)"
    )
    wm.add_argument("--lake-root", help=LAKE_HELP)
    wm.add_argument("--np-root", help=NP_HELP)
    what = wm.add_mutually_exclusive_group(required=True)
    what.add_argument(
        "--set", type=dt.date.fromisoformat, metavar="YYYY-MM-DD", help="last day committed"
    )
    what.add_argument("--clear", action="store_true", help="forget it (next run: backfill)")
    wm.set_defaults(func=cmd_libinsight_watermark)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; expected errors become one line and exit 1 or 2 (see error_line)."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except Exception as exc:
        if args.debug:
            raise
        line, code = error_line(exc)
        print(line, file=sys.stderr)
        return code


if __name__ == "__main__":
    sys.exit(main())
