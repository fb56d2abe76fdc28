"""``edulake`` command line: run the flows locally and look at the result.

python -m edulake demo                 # Clever on bundled test data -> ./lake -> DuckDB
python -m edulake clever --source folder --source-path DIR [--lake-root ...]
python -m edulake query "SELECT ..."   # against the DuckDB catalog
python -m edulake audit [--lake-root ...] [--np-root ...]   # PII audit: exit 1 on findings
python -m edulake forget --ids-file FILE [--source libinsight] # erasure request
python -m edulake rotate-key                                 # re-pseudonymize with a new key
python -m edulake keygen                                     # print a new key (64 hex)
python -m edulake clever-skip FILE --reason "..."            # accept a bad Clever file
python -m edulake libinsight-watermark --dataset-id N --set YYYY-MM-DD | --clear
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from collections.abc import Sequence

# edulake's own log lines (HTTP retries, SFTP reconnects, per-file errors) reach the
# Prefect UI only when Prefect ships their logger. Prefect reads this when it is imported,
# and everything below imports it lazily: set here, unless the user chose otherwise.
os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "edulake")

DEMO_QUERIES = {
    "Active students per school (first day)": """
        SELECT school_name, active_students FROM clever.active_students_per_school_day
        WHERE "date" = (SELECT MIN("date") FROM clever.active_students_per_school_day)
        ORDER BY active_students DESC LIMIT 5""",
    "Average logins and resources per student-day, by school": """
        SELECT school_name, students, ROUND(avg_logins_per_student_day, 2) AS avg_logins,
               ROUND(avg_resources_per_student_day, 2) AS avg_resources
        FROM clever.avg_usage_per_student_by_school ORDER BY students DESC LIMIT 5""",
    "Top resources by distinct students (one school)": """
        SELECT school_name, resource_rank, resource_name, students
        FROM clever.top_resources_by_school
        WHERE clever_school_id = (SELECT MIN(clever_school_id) FROM clever.top_resources_by_school)
        ORDER BY resource_rank""",
    "Usage over time (students)": """
        SELECT "date", active_users, logins, resources_accessed FROM clever.usage_over_time
        WHERE role = 'students' ORDER BY "date" LIMIT 7""",
}


def _print_table(title: str, table: object) -> None:
    import pyarrow as pa

    assert isinstance(table, pa.Table)
    print(f"\n== {title}")
    rows = table.to_pylist()
    cols = table.column_names
    widths = [max(len(c), *(len(str(r[c])) for r in rows)) if rows else len(c) for c in cols]
    widths = [min(w, 40) for w in widths]
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)))
    for r in rows:
        print("  ".join(str(r[c])[:40].ljust(w) for c, w in zip(cols, widths, strict=True)))


def _catalog_path(lake_root: str) -> str:
    from edulake.core.settings import get_settings

    configured = get_settings().catalog.duckdb_path
    return configured or os.path.join(os.path.abspath(lake_root), "catalog", "edulake.duckdb")


def show_answers(lake_root: str, queries: dict[str, str] | None = None) -> None:
    """Print a few answers from the catalog (the Clever dashboard views by default)."""
    import duckdb

    con = duckdb.connect(_catalog_path(lake_root), read_only=True)
    try:
        for title, sql in (queries or DEMO_QUERIES).items():
            _print_table(title, con.sql(sql).to_arrow_table())
    finally:
        con.close()


def cmd_demo(args: argparse.Namespace) -> int:
    from flows.clever_participation import clever_participation

    testdata = {"days": args.days, "students": args.students}
    summary = clever_participation(
        source="testdata", lake_root=args.lake_root, demo=True, testdata=testdata
    )
    print("\n== Run summary")
    print(json.dumps(summary, indent=2, default=str))
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

    summary = clever_participation(
        source=args.source,
        source_path=args.source_path,
        sftp_block=args.sftp_block,
        lake_root=args.lake_root,
        np_root=args.np_root,
        report_from=args.report_from,
        report_to=args.report_to,
        demo=args.demo,
    )
    print(json.dumps(summary, indent=2, default=str))
    return 0


def _np_catalog_dir(lake_root: str, np_root: str | None) -> str | None:
    """The folder of the protected ``<source>_np.duckdb`` files: ``<np root>/catalog``."""
    from edulake.core.settings import get_settings, resolve_np_root

    protected = resolve_np_root(lake_root, np_root or get_settings().lake.np_root)
    if protected is None:  # an s3:// lake with a local DuckDB file: they sit beside it
        return os.path.dirname(_catalog_path(lake_root))
    return os.path.join(os.path.abspath(protected), "catalog")


def cmd_query(args: argparse.Namespace) -> int:
    from edulake.catalog.duckdb import connect

    # Analysts' queries never attach the protected <source>_np catalogs; a steward asks
    # for them with --steward, and is told on stderr which were attached.
    if args.np_root and not args.steward:
        print("error: --np-root is for --steward queries only", file=sys.stderr)
        return 2
    np_dir = _np_catalog_dir(args.lake_root, args.np_root) if args.steward else None
    con = connect(_catalog_path(args.lake_root), np_dir=np_dir)
    if args.steward:
        attached = [
            r[0]
            for r in con.execute(
                "SELECT database_name FROM duckdb_databases() "
                "WHERE ends_with(database_name, '_np') ORDER BY 1"
            ).fetchall()
        ]
        print(
            f"STEWARD QUERY: attached the protected catalogs {', '.join(attached) or '(none)'} "
            f"from {np_dir}: results may hold raw identifiers",
            file=sys.stderr,
        )
    try:
        _print_table(args.sql.strip()[:60], con.sql(args.sql).to_arrow_table())
    finally:
        con.close()
    return 0


def cmd_demo_libinsight(args: argparse.Namespace) -> int:
    from edulake.demo.libinsight import run_demo  # type: ignore[import-not-found,unused-ignore]

    run_demo(args.lake_root)
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    from edulake.core.lake import Lake
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
        Lake(args.lake_root, args.np_root),
        catalog_paths=args.catalog or [],
        texts=texts,
        blobs=blobs,
        dataset_configs=[load_dataset_config(c) for c in args.dataset_config or []],
    )
    print(
        f"PII audit: {report.ids_checked} raw identifiers from stage1np checked "
        f"({report.ids_too_short} shorter than 4 characters not searchable); scanned "
        + ", ".join(f"{n} {k}" for k, n in sorted(report.scanned.items()))
    )
    for w in report.warnings:
        print(f"WARNING: {w}")
    for hit in report.findings:
        print(f"FOUND raw identifier #{hit.fingerprint} in {hit.location} ({hit.detail})")
    print(f"{len(report.findings)} finding(s)")
    return 1 if report.findings else 0


def cmd_forget(args: argparse.Namespace) -> int:
    from flows.forget import forget_flow

    result = forget_flow(
        ids_file=args.ids_file,
        lake_root=args.lake_root,
        np_root=args.np_root,
        demo=args.demo,
        source=args.source,
    )
    print(json.dumps(result, indent=2, default=str))
    return 0


def cmd_rotate_key(args: argparse.Namespace) -> int:
    from flows.clever_maintenance import clever_rotate_key

    print(json.dumps(clever_rotate_key(lake_root=args.lake_root, np_root=args.np_root), indent=2))
    return 0


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
    from edulake.core.lake import Lake
    from edulake.sources.libinsight.config import load_dataset_config
    from edulake.sources.libinsight.store import (
        clear_watermark,
        read_watermark,
        write_watermark,
    )

    yesterday = dt.date.today() - dt.timedelta(days=1)
    if args.set is not None and args.set > yesterday:
        raise SystemExit(
            f"--set {args.set} is after yesterday ({yesterday}): a watermark in the future "
            "makes every run 'up to date'"
        )
    table = args.table or load_dataset_config(args.dataset_config).table_name(args.dataset_id)
    lake = Lake(args.lake_root, args.np_root)
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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="edulake", description=__doc__.splitlines()[0] if __doc__ else ""
    )
    sub = p.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="Clever pipeline on bundled test data (demo key)")
    demo.add_argument("--lake-root", default="./lake")
    demo.add_argument("--days", type=int, default=5)
    demo.add_argument("--students", type=int, default=2000)
    demo.set_defaults(func=cmd_demo)

    cl = sub.add_parser("clever", help="run the Clever flow once")
    cl.add_argument("--source", choices=["testdata", "folder", "sftp"], default="testdata")
    cl.add_argument("--source-path")
    cl.add_argument("--sftp-block", default="edulake-clever-sftp")
    cl.add_argument("--lake-root")
    cl.add_argument("--np-root")
    cl.add_argument("--report-from", type=dt.date.fromisoformat)
    cl.add_argument("--report-to", type=dt.date.fromisoformat)
    cl.add_argument(
        "--demo", action="store_true", help="allow the public demo key (test data only)"
    )
    cl.set_defaults(func=cmd_clever)

    li = sub.add_parser("demo-libinsight", help="LibInsight pipeline against the local server")
    li.add_argument("--lake-root", default="./lake")
    li.set_defaults(func=cmd_demo_libinsight)

    q = sub.add_parser("query", help="run SQL against the DuckDB catalog")
    q.add_argument("sql")
    q.add_argument("--lake-root", default="./lake")
    q.add_argument(
        "--steward",
        action="store_true",
        help="also attach the protected *_np catalogs (raw identifiers: data stewards only)",
    )
    q.add_argument(
        "--np-root", help="with --steward: the protected root (default: <root>-protected)"
    )
    q.set_defaults(func=cmd_query)

    au = sub.add_parser("audit", help="PII audit: raw identifiers outside the protected zones")
    au.add_argument("--lake-root", default="./lake")
    au.add_argument("--np-root")
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
    au.set_defaults(func=cmd_audit)

    fg = sub.add_parser("forget", help="remove people (raw ids in a file, one a line)")
    fg.add_argument("--ids-file", required=True)
    fg.add_argument("--lake-root")
    fg.add_argument("--np-root")
    fg.add_argument("--demo", action="store_true", help="the lake uses the demo key")
    fg.add_argument(
        "--source",
        choices=["clever", "libinsight"],
        default="clever",
        help="clever: sis_id/staff_id/clever_user_id; libinsight: staff names (_entered_by)",
    )
    fg.set_defaults(func=cmd_forget)

    rk = sub.add_parser("rotate-key", help="re-pseudonymize everything with the configured key")
    rk.add_argument("--lake-root")
    rk.add_argument("--np-root")
    rk.set_defaults(func=cmd_rotate_key)

    kg = sub.add_parser("keygen", help="print a new pseudonymization key (32 random bytes, hex)")
    kg.set_defaults(func=cmd_keygen)

    sk = sub.add_parser(
        "clever-skip", help="accept a bad Clever file: skip its current version, by decision"
    )
    sk.add_argument("file", help="report file name (or FILE@<sha256 prefix> for one version)")
    sk.add_argument("--reason", required=True, help="why skipping it is right (kept, shown)")
    sk.add_argument("--by", help="who decides (default: this user's login name)")
    sk.add_argument("--lake-root")
    sk.add_argument("--np-root")
    sk.set_defaults(func=cmd_clever_skip)

    wm = sub.add_parser(
        "libinsight-watermark", help="set or clear a LibInsight dataset's watermark"
    )
    wm.add_argument("--dataset-id", type=int, required=True)
    wm.add_argument(
        "--dataset-config", default="reference_desk", help="the dataset's config (name or YAML)"
    )
    wm.add_argument(
        "--table", help="the table's state to edit, overriding the config's (repairs only)"
    )
    wm.add_argument("--lake-root", default="./lake")
    wm.add_argument("--np-root")
    what = wm.add_mutually_exclusive_group(required=True)
    what.add_argument(
        "--set", type=dt.date.fromisoformat, metavar="YYYY-MM-DD", help="last day committed"
    )
    what.add_argument("--clear", action="store_true", help="forget it (next run: backfill)")
    wm.set_defaults(func=cmd_libinsight_watermark)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    from edulake.core.settings import ConfigError

    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:  # a setting or parameter to fix: one line, no traceback
        print(f"edulake: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
