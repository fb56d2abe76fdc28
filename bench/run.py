"""The benchmark's driver: generate inputs, run every contender in its own process, report."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any

from bench.data import make_inputs
from bench.jobs import CONTENDERS

DEFAULT_ROWS = (1_000_000, 10_000_000)
# dlt processes ~10-20k rows/s here (row-by-row Python): 10M rows would take 10-15
# minutes, longer than the rest of the benchmark. It runs up to this size unless
# --dlt-max-rows says otherwise.
DLT_MAX_ROWS = 2_000_000
# The target against dlt: edulake >= 10x its rows/s at <= 0.5x its peak RSS.
DLT_TARGET_SPEEDUP = 10.0
DLT_TARGET_RSS_RATIO = 0.5


def contender_env(name: str = "edulake") -> dict[str, str]:
    """The environment of a contender: this one, with Arrow's allocator as edulake sets
    it (edulake/core/memory.py) for every contender alike, so peak RSS compares the work
    and not the allocators (dlt, the ceiling and pandas use pyarrow too); the lean
    contender's settings for it. An operator's own ``ARROW_DEFAULT_MEMORY_POOL`` is kept."""
    from bench.jobs import LEAN
    from edulake.core.memory import child_environment

    env = child_environment(LEAN if name == "edulake-lean" else None)
    env["PYTHONPATH"] = os.getcwd() + os.pathsep + os.environ.get("PYTHONPATH", "")
    return env


def _child(args: list[str]) -> dict[str, Any]:
    """Run ``python -m bench.jobs ARGS`` in a fresh process; its JSON line."""
    env = contender_env(args[0])
    done = subprocess.run(
        [sys.executable, "-m", "bench.jobs", *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"bench.jobs {args[0]} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def run_contender(name: str, inputs_path: str, scratch: str, repeat: int) -> dict[str, Any]:
    """Best of ``repeat`` runs of one contender, each on a fresh output folder."""
    best: dict[str, Any] | None = None
    for i in range(repeat):
        work = os.path.join(scratch, f"{name}-{i}")
        os.makedirs(work)
        try:
            if name.startswith("edulake"):
                _child(["land", inputs_path, work])  # untimed: processing is measured
            r = _child([name, inputs_path, work])
        finally:
            shutil.rmtree(work, ignore_errors=True)
        if best is None or r["seconds"] < best["seconds"]:
            best = r
    assert best is not None
    return best


def vs_dlt(ours: dict[str, Any], dlt: dict[str, Any]) -> dict[str, Any]:
    """edulake against dlt on one input: speed-up, peak-RSS ratio, the issue's target."""
    speedup = ours["rows_per_s"] / dlt["rows_per_s"]
    rss_ratio = ours["peak_rss_mb"] / dlt["peak_rss_mb"]
    # what the work itself adds above the imports: pyarrow's libraries and the interpreter
    # are resident in both before any row is read (dlt writes Parquet with pyarrow too)
    work = max(ours["peak_rss_mb"] - ours["setup_rss_mb"], 0)
    dlt_work = max(dlt["peak_rss_mb"] - dlt["setup_rss_mb"], 1)
    return {
        "speedup": round(speedup, 2),
        # CPU seconds for the same rows: less skewed than wall time on a busy machine
        "cpu_ratio": round(dlt["cpu_seconds"] / ours["cpu_seconds"], 2),
        "peak_rss_ratio": round(rss_ratio, 2),
        "work_rss_mb": round(work),
        "dlt_work_rss_mb": round(dlt_work),
        "work_rss_ratio": round(work / dlt_work, 2),
        "target": f">= {DLT_TARGET_SPEEDUP:g}x rows/s at <= {DLT_TARGET_RSS_RATIO:g}x peak RSS",
        "speed_target_met": speedup >= DLT_TARGET_SPEEDUP,
        "rss_target_met": rss_ratio <= DLT_TARGET_RSS_RATIO,
    }


def measure_processing(
    rows: int,
    contenders: list[str],
    repeat: int,
    scratch: str,
    dlt_max_rows: int = DLT_MAX_ROWS,
) -> dict[str, Any]:
    """Generate about ``rows`` rows, then run each contender on them."""
    data_dir = os.path.join(scratch, f"input-{rows}")
    inputs = make_inputs(data_dir, rows)
    out: dict[str, Any] = {
        "target_rows": rows,
        "rows": inputs.rows,
        "files": inputs.files,
        "input_mb": round(inputs.megabytes, 1),
        "students": inputs.students,
        "days": inputs.days,
        "generate_s": round(inputs.seconds, 2),
        "contenders": {},
        "skipped": {},
    }
    for name in contenders:
        if name == "dlt" and dlt_max_rows and rows > dlt_max_rows:
            out["skipped"][name] = f"more than --dlt-max-rows {dlt_max_rows:,}"
            continue
        print(f"  {rows:,} rows: {name} ...", file=sys.stderr, flush=True)
        load = os.getloadavg()[0]  # other work on the machine skews every figure: show it
        r = run_contender(name, inputs.path, scratch, repeat)
        if r["rows"] != inputs.rows:
            raise RuntimeError(f"{name} processed {r['rows']} rows of {inputs.rows}")
        out["contenders"][name] = {
            "seconds": round(r["seconds"], 3),
            "rows_per_s": round(inputs.rows / r["seconds"]),
            "mb_per_s": round(inputs.megabytes / r["seconds"], 1),
            "peak_rss_mb": round(r["peak_rss_mb"]),
            "setup_rss_mb": round(r["setup_rss_mb"]),
            "cpu_seconds": round(r["cpu_seconds"], 2),
            "cores_used": round(r["cpu_seconds"] / r["seconds"], 2),
            "load_1m_before": round(load, 2),
        }
        if "detail" in r:
            out["contenders"][name]["detail"] = r["detail"]
    shutil.rmtree(data_dir, ignore_errors=True)
    ours = out["contenders"].get("edulake")
    if ours:
        for c in out["contenders"].values():
            # > 1: edulake is that many times faster than this contender
            c["edulake_speedup"] = round(ours["rows_per_s"] / c["rows_per_s"], 2)
    if "dlt" in out["contenders"]:
        for name in ("edulake", "edulake-lean"):
            if name in out["contenders"]:
                out[f"{name.replace('-', '_')}_vs_dlt"] = vs_dlt(
                    out["contenders"][name], out["contenders"]["dlt"]
                )
    return out


def measure_libinsight(pages: int, latency_ms: float) -> dict[str, Any]:
    """LibInsight paging against the local server: sequential, concurrent, ideal.

    Reuses ``bench/libinsight_paging.py`` (the LibInsight client's own benchmark): the
    same server settings (100 records a page, fixed latency per request) and the same
    measurement (token first, then every page of one window).
    """
    import math

    from bench.libinsight_paging import default_concurrency, measure
    from edulake.demo.libinsight_server import LibInsightServer, ServerSettings
    from edulake.sources.libinsight.windows import Window

    latency = latency_ms / 1000
    concurrency = default_concurrency()
    settings = ServerSettings(
        records_per_day=100, fixed_daily=True, page_size=100, latency_s=latency
    )
    start = dt.date(2023, 1, 1)
    window = Window(start, start + dt.timedelta(days=pages - 1))  # 100 records a day
    with LibInsightServer(settings) as server:
        seq = measure(server.base_url, window, 1)
        conc = measure(server.base_url, window, concurrency)
    # Page 1 comes alone (it tells how many pages there are), then rounds of `concurrency`.
    ideal = (1 + math.ceil((pages - 1) / concurrency)) * latency
    return {
        "pages": seq["pages"],
        "latency_ms": latency_ms,
        "default_concurrency": concurrency,
        "sequential_s": seq["wall_s"],
        "concurrent_s": conc["wall_s"],
        "ideal_s": round(ideal, 3),
        "ideal_formula": "(1 + ceil((pages - 1) / concurrency)) x latency",
        "speedup_vs_sequential": round(float(seq["wall_s"]) / float(conc["wall_s"]), 2),
        "concurrent_vs_ideal": round(float(conc["wall_s"]) / ideal, 2),
    }


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for p in ("pyarrow", "pandas", "duckdb", "prefect", "dlt"):
        try:
            found[p] = version(p)
        except PackageNotFoundError:  # dlt is in the `bench` extra
            found[p] = "not installed"
    return found


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    ap.add_argument(
        "--rows",
        type=int,
        nargs="+",
        default=list(DEFAULT_ROWS),
        help="input sizes in rows (default: 1000000 10000000)",
    )
    ap.add_argument("--contenders", nargs="+", choices=list(CONTENDERS), default=list(CONTENDERS))
    ap.add_argument(
        "--dlt-max-rows",
        type=int,
        default=DLT_MAX_ROWS,
        help=f"run dlt only on sizes up to this (default {DLT_MAX_ROWS:,}; 0: every size)",
    )
    ap.add_argument("--repeat", type=int, default=1, help="runs per contender; best is kept")
    ap.add_argument("--quick", action="store_true", help="small flow and paging runs (smoke)")
    ap.add_argument("--no-flow", action="store_true", help="skip the whole-flow timing")
    ap.add_argument("--no-libinsight", action="store_true", help="skip LibInsight paging")
    ap.add_argument("--pages", type=int, default=200, help="LibInsight pages (default 200)")
    ap.add_argument("--latency-ms", type=float, default=50.0, help="per request (default 50)")
    ap.add_argument("--no-history", action="store_true", help="skip the history section")
    ap.add_argument("--json", help="also write the JSON report to this file")
    ap.add_argument("--scratch", help="folder for inputs and outputs (default: a temp dir)")
    return ap


def main(argv: list[str] | None = None) -> int:
    from bench.report import render

    args = build_parser().parse_args(argv)
    began = time.perf_counter()
    report: dict[str, Any] = {
        "command": "python -m bench " + " ".join(sys.argv[1:] if argv is None else argv),
        "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "load_average_1m": round(os.getloadavg()[0], 2),
            "versions": _versions(),
            "arrow_allocator": {
                name: contender_env(name).get("JE_ARROW_MALLOC_CONF", "(Arrow's default)")
                for name in ("edulake", "edulake-lean")
            },
        },
        "processing": [],
    }
    scratch = tempfile.mkdtemp(prefix="edulake-bench-", dir=args.scratch)
    try:
        for rows in args.rows:
            report["processing"].append(
                measure_processing(rows, args.contenders, args.repeat, scratch, args.dlt_max_rows)
            )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if not args.no_libinsight:
        print("  libinsight paging ...", file=sys.stderr, flush=True)
        pages = min(args.pages, 20) if args.quick else args.pages
        report["libinsight"] = measure_libinsight(pages, args.latency_ms)
    if not args.no_flow:
        from bench.flowtime import measure_flow

        print("  whole flow ...", file=sys.stderr, flush=True)
        demo_args = ["--days", "1", "--students", "300"] if args.quick else []
        report["flow"] = measure_flow(demo_args)
    if not args.no_history:
        from bench.history import measure_history

        report["history"] = measure_history((10, 100) if args.quick else (10, 100, 1000))
    report["total_s"] = round(time.perf_counter() - began, 1)
    text = json.dumps(report, indent=2)
    print(text)
    print(render(report))
    if "history" in report:
        from bench.history import render as render_history

        print("\n" + render_history(report["history"]))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            f.write(text + "\n")
    return 0
