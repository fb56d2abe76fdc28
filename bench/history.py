"""Benchmark section "history": a no-op daily Clever run after 10, 100 and 1,000 days.

For each history length: a fresh local lake gets the ledger and processed records of
that many days (``edulake.demo.history.synthesize_history``: 6 report files a day,
written directly as records, about 12,000 small files for 1,000 days in a few seconds),
then one real run of a small test-data source (2 days) lands, processes and publishes,
reading the synthesized history once and compacting the state indexes. Then the same
run again, with nothing new: that no-op run is measured (best of ``repeat``) through
the counting filesystem (``edulake.core.counting``): storage requests by kind and wall
time, each run with a new ``Lake`` object (as each flow run has: nothing cached). For comparison, the requests of the same no-op run with the index manifests
deleted first (what every run read before the indexes: each record, one GET).

    python -m bench --rows 20000 --no-flow --no-libinsight   # includes this section
    python -m bench.history --days 10 100 1000               # this section alone
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import secrets
import shutil
import sys
import tempfile
import time
from typing import Any

DEFAULT_DAYS = (10, 100, 1000)
SOURCE = {"days": 2, "students": 200, "teachers": 10, "staff": 4, "schools": 3}
LAST_SYNTHETIC = dt.date(2022, 1, 2)  # the test-data source starts on 2022-01-03


def measure_history(
    days: tuple[int, ...] = DEFAULT_DAYS, repeat: int = 3, scratch: str | None = None
) -> dict[str, Any]:
    """The no-op run's requests and wall time after each history length."""
    from edulake.connectors.files import FolderSource
    from edulake.core.counting import count_requests
    from edulake.core.index import RecordIndex
    from edulake.core.lake import Lake, Zone
    from edulake.demo.clever_testdata import TestDataSource
    from edulake.demo.history import daily_run, synthesize_history
    from edulake.privacy.pseudonym import Pseudonymizer, PseudonymKey

    key = Pseudonymizer(PseudonymKey.from_text(secrets.token_hex(32)))  # a throwaway key
    base = tempfile.mkdtemp(prefix="edulake-bench-history-", dir=scratch)
    out: dict[str, Any] = {"source": SOURCE, "repeat": repeat, "runs": []}
    try:
        src = FolderSource(TestDataSource(**SOURCE, cache_dir=f"{base}/src").ensure_generated())
        for n in days:
            print(f"  history: {n} days ...", file=sys.stderr, flush=True)
            lake = Lake(f"{base}/{n}/lake", f"{base}/{n}/np")
            began = time.perf_counter()
            files = synthesize_history(lake, n, LAST_SYNTHETIC)
            synth_s = time.perf_counter() - began
            began = time.perf_counter()
            daily_run(lake, src, key)  # reads the history once, writes the manifests
            first_s = time.perf_counter() - began
            best = float("inf")
            requests: dict[str, int] = {}
            for _ in range(repeat):
                lake = Lake(f"{base}/{n}/lake", f"{base}/{n}/np")  # a new run: nothing cached
                with count_requests(lake) as counter:
                    began = time.perf_counter()
                    result = daily_run(lake, src, key)
                    took = time.perf_counter() - began
                if result["landed"] or result["processed"]:
                    raise RuntimeError(f"the no-op run after {n} days did work: {result}")
                if requests and counter.snapshot() != requests:
                    raise RuntimeError(f"no-op runs after {n} days differ in requests")
                requests = counter.snapshot()
                best = min(best, took)
            for prefix in ("ledger/clever", "processed/clever"):
                RecordIndex(lake, prefix).drop()
            with count_requests(lake) as counter:
                daily_run(lake, src, key)
            manifest = os.path.getsize(
                lake.fs_path(Zone.SYSTEM, RecordIndex(lake, "ledger/clever").manifest_key)
            )
            out["runs"].append(
                {
                    "days": n,
                    "history_files": files,
                    "synthesize_s": round(synth_s, 2),
                    "first_run_s": round(first_s, 2),
                    "noop_requests": sum(requests.values()),
                    "noop_requests_by_kind": requests,
                    "noop_s": round(best, 3),
                    "unindexed_noop_requests": counter.total,
                    "ledger_manifest_kb": round(manifest / 1024, 1),
                }
            )
    finally:
        shutil.rmtree(base, ignore_errors=True)
    runs = out["runs"]
    if len(runs) > 1:
        out["requests_ratio"] = round(runs[-1]["noop_requests"] / runs[0]["noop_requests"], 3)
        out["time_ratio"] = round(runs[-1]["noop_s"] / runs[0]["noop_s"], 3)
        out["target"] = "flat within 1.2x (last / first)"
    return out


def render(history: dict[str, Any]) -> str:
    """The section as Markdown, for the report."""
    lines = [
        "## History: a no-op daily Clever run",
        "",
        "| days of history | state files | requests (no-op run) | wall s | requests without "
        "the index | ledger manifest KB |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for r in history["runs"]:
        lines.append(
            f"| {r['days']:,} | {2 * r['history_files']:,} | {r['noop_requests']} | "
            f"{r['noop_s']} | {r['unindexed_noop_requests']:,} | {r['ledger_manifest_kb']} |"
        )
    if "requests_ratio" in history:
        lines += [
            "",
            f"Last / first: requests {history['requests_ratio']}x, wall time "
            f"{history['time_ratio']}x (target: flat within 1.2x).",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.history", description=__doc__)
    ap.add_argument("--days", type=int, nargs="+", default=list(DEFAULT_DAYS))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--scratch")
    args = ap.parse_args(argv)
    result = measure_history(tuple(args.days), args.repeat, args.scratch)
    print(json.dumps(result, indent=2))
    print(render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
