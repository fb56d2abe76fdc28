"""`python -m bench --quick` runs end to end and reports every section (no timing checks)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.slow
def test_bench_quick_reports_every_section(tmp_path):
    out = tmp_path / "bench.json"
    env = dict(
        os.environ,
        PREFECT_HOME=str(tmp_path / "prefect"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PYTHONPATH=ROOT,
    )
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--rows", "20000", "--quick", "--json", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["machine"]["cpu_count"] == os.cpu_count()
    (size,) = report["processing"]
    assert size["rows"] > 10_000
    assert set(size["contenders"]) == {
        "edulake",
        "edulake-lean",
        "ceiling",
        "pandas",
        "duckdb",
        "dlt",
    }
    for c in size["contenders"].values():
        assert c["rows_per_s"] > 0 and c["peak_rss_mb"] > 0 and c["edulake_speedup"] > 0
    assert report["machine"]["versions"]["dlt"] != "not installed"
    for key in ("edulake_vs_dlt", "edulake_lean_vs_dlt"):
        vd = size[key]
        assert vd["speedup"] > 0 and vd["cpu_ratio"] > 0 and vd["peak_rss_ratio"] > 0
        assert vd["work_rss_mb"] >= 0 and vd["dlt_work_rss_mb"] > 0
    li = report["libinsight"]
    assert li["pages"] == 20 and li["sequential_s"] > 0 and li["concurrent_s"] > 0
    flow = report["flow"]
    assert flow["demo_first_run_s"] > 0 and flow["trivial_flow_s"] > 0
    history = report["history"]
    assert [r["days"] for r in history["runs"]] == [10, 100]
    assert history["requests_ratio"] == 1.0  # the no-op run's requests do not grow
    for heading in (
        "Clever processing",
        "LibInsight paging",
        "Whole flow",
        "History",
        "edulake vs dlt:",
        "edulake-lean vs dlt:",
    ):
        assert heading in done.stdout
