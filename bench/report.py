"""The benchmark report as readable tables."""

from __future__ import annotations

from typing import Any


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) for c, w in zip(cells, widths, strict=True))

    return "\n".join([line(headers), line(["-" * w for w in widths]), *map(line, rows)])


def render(report: dict[str, Any]) -> str:
    """Every section of a report, as text."""
    m = report["machine"]
    out = [
        "",
        f"edulake benchmark - {m['cpu_count']} CPUs, Python {m['python']}, "
        f"{m['platform']} (load {m['load_average_1m']} at start)",
        f"command: {report['command']}",
    ]
    alloc = m.get("arrow_allocator")
    if alloc:
        out.append(
            "Arrow allocator: jemalloc for every contender ("
            + "; ".join(f"{k}: {v}" for k, v in alloc.items())
            + "; the others as edulake)"
        )
    for p in report["processing"]:
        out += [
            "",
            f"== Clever processing: {p['rows']:,} rows, {p['files']} files, {p['input_mb']} MB "
            f"CSV ({p['students']:,} students x {p['days']} days)",
        ]
        rows = [
            [
                name,
                f"{c['seconds']:.2f}",
                f"{c['rows_per_s']:,}",
                f"{c['mb_per_s']:.1f}",
                f"{c['peak_rss_mb']:,}",
                f"{c['setup_rss_mb']:,}",
                f"{c['cores_used']:.2f}",
                f"{c.get('edulake_speedup', float('nan')):.2f}x",
                f"{c.get('load_1m_before', float('nan')):.1f}",
            ]
            for name, c in p["contenders"].items()
        ]
        out.append(
            _table(
                [
                    "contender",
                    "s",
                    "rows/s",
                    "MB/s",
                    "peak RSS MB",
                    "after imports",
                    "cores",
                    "edulake vs it",
                    "load",
                ],
                rows,
            )
        )
        for name, why in p.get("skipped", {}).items():
            out.append(f"{name}: not run ({why})")
        for name in ("edulake", "edulake-lean"):
            vd = p.get(f"{name.replace('-', '_')}_vs_dlt")
            if vd is None:
                continue
            met = "met" if vd["speed_target_met"] and vd["rss_target_met"] else "not met"
            out.append(
                f"{name} vs dlt: {vd['speedup']:.1f}x rows/s ({vd['cpu_ratio']:.1f}x less CPU) "
                f"at {vd['peak_rss_ratio']:.2f}x peak RSS (target {vd['target']}: {met}); "
                f"the work itself, above the imports: {vd['work_rss_mb']} MB against dlt's "
                f"{vd['dlt_work_rss_mb']} MB ({vd['work_rss_ratio']:.2f}x)"
            )
    li = report.get("libinsight")
    if li is not None:
        out += [
            "",
            f"== LibInsight paging: {li['pages']} pages at {li['latency_ms']:g} ms a request",
            _table(
                ["fetching", "wall s", "vs ideal"],
                [
                    ["sequential (concurrency 1)", f"{li['sequential_s']:.2f}", ""],
                    [
                        f"edulake (concurrency {li['default_concurrency']})",
                        f"{li['concurrent_s']:.2f}",
                        f"{li['concurrent_vs_ideal']:.2f}x",
                    ],
                    [f"ideal: {li['ideal_formula']}", f"{li['ideal_s']:.2f}", "1.00x"],
                ],
            ),
            f"concurrent is {li['speedup_vs_sequential']:.1f}x faster than sequential",
        ]
    fl = report.get("flow")
    if fl is not None:
        out += [
            "",
            f"== Whole flow: {fl['command'].strip()}",
            _table(
                ["run", "wall s"],
                [
                    ["demo, first run (land + process + publish)", f"{fl['demo_first_run_s']:.2f}"],
                    ["demo, re-run (nothing new)", f"{fl['demo_rerun_s']:.2f}"],
                    ["trivial Prefect flow (same way)", f"{fl['trivial_flow_s']:.2f}"],
                    ["python -c 'import prefect'", f"{fl['import_prefect_s']:.2f}"],
                ],
            ),
            f"Prefect's own start-up is about {fl['prefect_share_of_demo']:.0%} of the demo's "
            "first run.",
        ]
    out += ["", f"total benchmark time: {report['total_s']} s"]
    return "\n".join(out)
