"""A lake with a long history, made in seconds, and the daily run measured on it.

:func:`synthesize_history` writes the state records ``days`` days of Clever runs leave
behind (one ledger record and one processed record per report file: 2 reports x 3 roles
a day), directly, as the records themselves: no raw files, no Parquet. That is what a
run reads of its history; the raw files and stage2p partitions of those days are not
read by a no-op run's state reads (publishing lists stage2p: see docs/benchmarks.md).
The records are written without an index, as a lake from before indexes has them: the
next run lists and reads them once, and its compaction writes the manifests.

:func:`daily_run` is the flow's steps as plain functions (discover, land, process,
publish to the DuckDB catalog), as ``tests/reliability/crash_runner.py`` runs them.
"""

from __future__ import annotations

import datetime as dt
import json
import posixpath
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from typing import Any

from edulake.catalog import open_catalog, publish_all
from edulake.connectors.files import FileSource
from edulake.core.lake import Lake, Zone
from edulake.core.landing import LedgerEntry
from edulake.privacy.pseudonym import Pseudonymizer
from edulake.sources.clever import pipeline
from edulake.sources.clever.names import REPORTS, ROLES, landing_key, parse_report_name
from edulake.sources.clever.process import SOURCE, processed_key

SYNTHETIC_SHA = "0" * 48  # + 16 hex digits of the file's number: never a real checksum


def synthesize_history(lake: Lake, days: int, last_day: dt.date) -> int:
    """Ledger and processed records of ``days`` days of reports up to ``last_day``; how many
    report files (6 a day)."""
    items: list[tuple[str, dict[str, Any]]] = []
    n = 0
    for back in range(days):
        day = last_day - dt.timedelta(days=days - 1 - back)
        for folder in REPORTS:
            for role in ROLES:
                n += 1
                items += _records(day, folder, role, n)
    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(lambda kv: _put(lake, kv[0], kv[1]), items))
    return n


def _put(lake: Lake, key: str, obj: dict[str, Any]) -> None:
    """One plain write (one PUT on S3): no staging, nothing reads the lake meanwhile."""
    store = lake.store(Zone.SYSTEM)
    path = lake.fs_path(Zone.SYSTEM, key)
    if store.is_local:
        store.fs.create_dir(posixpath.dirname(path), recursive=True)
    with store.fs.open_output_stream(path) as out:
        out.write(json.dumps(obj, indent=1, sort_keys=True).encode())


def _records(day: dt.date, folder: str, role: str, n: int) -> list[tuple[str, dict[str, Any]]]:
    name = parse_report_name(f"{folder}/{day.isoformat()}-{folder}-{role}.csv")
    sha = f"{SYNTHETIC_SHA}{n:016x}"
    landed = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(6), dt.UTC)
    entry = LedgerEntry(
        source=SOURCE,
        name=name.relative,
        sha256=sha,
        size=1000 + n,
        path=landing_key(name, landed.date()),
        landed_at=landed.isoformat(),
        mtime=landed.timestamp(),
        attrs={"report": name.report, "role": name.role, "report_date": str(day)},
    )
    processed = {
        "name": name.relative,
        "sha256": sha,
        "table": name.table,
        "status": "processed",
        "rows_read": 0,
        "rows_written": 0,
        "rows_quarantined": 0,
        "outputs": [],
        "partitions": [],
        "path": entry.path,
        "processed_at": landed.isoformat(),
    }
    ledger_key = f"ledger/{SOURCE}/{name.relative}/{sha}.json"
    return [(ledger_key, asdict(entry)), (processed_key(name.relative, sha), processed)]


def daily_run(lake: Lake, source: FileSource, pseudonymizer: Pseudonymizer) -> dict[str, Any]:
    """One Clever run as the flow makes it, without Prefect: what it landed and processed."""
    found = pipeline.discover(source)
    landed = pipeline.land_reports(lake, source, found.reports, concurrency=2)
    processed = pipeline.process_pending(lake, pipeline.pending(lake), pseudonymizer)
    cat = open_catalog("duckdb", lake)
    try:
        publish_all(cat, pipeline.catalog_tables(lake, pseudonymizer.key_id), views_for="clever")
    finally:
        cat.close()
    return {
        "offered": len(found.reports),
        "landed": sum(1 for r in landed if r.landed),
        "processed": len(processed.files),
    }
