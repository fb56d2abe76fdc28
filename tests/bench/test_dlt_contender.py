"""The dlt contender does the job the others do: every row, ids hashed, none left raw."""

from __future__ import annotations

import csv
import glob
import hashlib
import json
import os
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from bench.data import make_inputs
from bench.jobs import ID_COLUMNS, KEY
from bench.report import render
from bench.run import measure_processing, vs_dlt

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _input_ids(input_dir: str) -> dict[str, tuple[int, set[str]]]:
    """Per report: its row count and every raw id value in it."""
    out: dict[str, tuple[int, set[str]]] = {}
    for report in ("daily-participation", "resource-usage"):
        rows, ids = 0, set()
        for path in glob.glob(os.path.join(input_dir, report, "*.csv")):
            with open(path, newline="", encoding="utf-8") as f:
                for row in csv.DictReader(f):
                    rows += 1
                    ids.update(row[c].strip() for c in ID_COLUMNS if (row.get(c) or "").strip())
        out[report.replace("-", "_")] = (rows, ids)
    return out


@pytest.mark.slow
def test_dlt_writes_every_row_with_ids_hashed_as_dlt_docs_show(tmp_path):
    inputs = make_inputs(str(tmp_path / "in"), 2_000)
    work = tmp_path / "work"
    work.mkdir()
    done = subprocess.run(
        [sys.executable, "-m", "bench.jobs", "dlt", inputs.path, str(work)],
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=ROOT),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["rows"] == inputs.rows
    assert 0 < result["setup_rss_mb"] <= result["peak_rss_mb"]
    assert set(result["detail"]["step_seconds"]) >= {"extract", "normalize", "load"}

    for table, (rows, raw_ids) in _input_ids(inputs.path).items():
        files = glob.glob(str(work / "dlt" / "clever" / table / "*.parquet"))
        assert files, table
        data = pq.read_table(files).to_pydict()
        assert len(data["clever_user_id"]) == rows
        assert pq.ParquetFile(files[0]).metadata.row_group(0).column(0).compression == "ZSTD"
        written = {v for c in ID_COLUMNS for v in data.get(c, []) if v is not None}
        # The docs' recipe: SHA-256 of value + salt, hex; no raw id is left.
        expected = {hashlib.sha256((v + KEY).encode()).hexdigest() for v in raw_ids}
        assert written == expected
        assert not written & raw_ids
        assert set(data["role"]) == {"students", "teachers", "staff"}
    # dlt kept everything it writes under the work folder
    assert (work / "dlt_pipelines" / "clever_bench").is_dir()


def test_dlt_is_skipped_above_its_size_limit_and_said_so(tmp_path):
    p = measure_processing(2_000, ["dlt"], 1, str(tmp_path), dlt_max_rows=1_000)
    assert p["contenders"] == {}
    assert "dlt" in p["skipped"]
    text = render(
        {
            "machine": {"cpu_count": 2, "python": "3", "platform": "x", "load_average_1m": 0},
            "command": "python -m bench",
            "processing": [p],
            "total_s": 1,
        }
    )
    assert "dlt: not run (more than --dlt-max-rows 1,000)" in text


def test_vs_dlt_reports_the_target_both_ways():
    ours = {"rows_per_s": 800_000, "peak_rss_mb": 400, "setup_rss_mb": 100, "cpu_seconds": 2.0}
    dlt = {"rows_per_s": 10_000, "peak_rss_mb": 1_000, "setup_rss_mb": 200, "cpu_seconds": 60.0}
    assert vs_dlt(ours, dlt) == {
        "speedup": 80.0,
        "cpu_ratio": 30.0,
        "peak_rss_ratio": 0.4,
        "work_rss_mb": 300,
        "dlt_work_rss_mb": 800,
        "work_rss_ratio": 0.38,
        "target": ">= 10x rows/s at <= 0.5x peak RSS",
        "speed_target_met": True,
        "rss_target_met": True,
    }
    slow_lean = vs_dlt(
        ours, {"rows_per_s": 100_000, "peak_rss_mb": 280, "setup_rss_mb": 180, "cpu_seconds": 3.0}
    )
    assert slow_lean["speedup"] == 8.0 and not slow_lean["speed_target_met"]
    assert slow_lean["peak_rss_ratio"] == 1.43 and not slow_lean["rss_target_met"]


def test_peak_rss_is_the_contenders_own_not_its_parents():
    # Linux carries a parent's ru_maxrss into a child it forks and execs: a contender
    # started by a big bench process would report the parent's size as its peak.
    ballast = bytearray(400 * 1024 * 1024)
    for i in range(0, len(ballast), 4096):
        ballast[i] = 1
    done = subprocess.run(
        [sys.executable, "-c", "from bench.jobs import peak_rss_mb; print(peak_rss_mb())"],
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=ROOT),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    del ballast
    assert 0 < float(done.stdout) < 200
