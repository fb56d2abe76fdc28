"""Benchmark: land a two-week Clever catch-up from a local OpenSSH sshd, sequential vs parallel.

Generates (once, cached in --data-dir) 14 days x 2 reports x 2 roles = 56 realistic
Clever files with the bundled generator (70,000 students by default), serves them from a
real sshd on 127.0.0.1 (needs root and openssh-server), and lands them into a fresh lake
with the same code the flow's land task uses (``pipeline.land_reports`` over
``SftpSource``), once per setting of max_connections.

    sudo .venv/bin/python bench/sftp_catchup.py --students 70000 --connections 1 4
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edulake.connectors.sftp import SftpSettings, SftpSource
from edulake.core.lake import Lake
from edulake.demo.clever_testdata import generate_reports
from edulake.sources.clever import pipeline
from tests.servers.sshd import running_sshd

START = dt.date(2022, 1, 3)


def ensure_data(data_dir: Path, students: int, days: int) -> Path:
    """Generate the catch-up once; reuse it on later runs with the same parameters."""
    tree = data_dir / f"clever-{students}-{days}d"
    marker = tree / ".complete"
    if not marker.exists():
        shutil.rmtree(tree, ignore_errors=True)
        t0 = time.perf_counter()
        generate_reports(
            str(tree), start=START, days=days, students=students, roles=("students", "teachers")
        )
        marker.write_text("ok")
        print(f"generated {tree} in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return tree


def land_once(settings: SftpSettings, lake_dir: Path, concurrency: int) -> dict[str, object]:
    shutil.rmtree(lake_dir, ignore_errors=True)
    lake = Lake(str(lake_dir))
    t0 = time.perf_counter()
    with SftpSource(settings) as source:
        found = pipeline.discover(source)
        t_list = time.perf_counter() - t0
        results = pipeline.land_reports(lake, source, found.reports, concurrency=concurrency)
        peak = source.peak_connections
    elapsed = time.perf_counter() - t0
    total = sum(r.size or 0 for r in results)
    assert all(r.outcome == "landed" for r in results), "every file must land"
    return {
        "max_connections": settings.max_connections,
        "files": len(results),
        "mb": round(total / 1e6, 1),
        "seconds": round(elapsed, 2),
        "list_seconds": round(t_list, 3),
        "mb_per_s": round(total / 1e6 / elapsed, 1),
        "peak_channels": peak,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--students", type=int, default=70_000)
    ap.add_argument("--days", type=int, default=14)
    ap.add_argument("--connections", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--data-dir", default=os.path.join(tempfile.gettempdir(), "edulake-bench"))
    args = ap.parse_args()

    tree = ensure_data(Path(args.data_dir), args.students, args.days)
    files = [p for p in tree.rglob("*.csv")]
    print(
        f"{len(files)} files, {sum(p.stat().st_size for p in files) / 1e6:.1f} MB "
        f"({args.students} students, {args.days} days)",
        file=sys.stderr,
    )
    rows = []
    with running_sshd() as server, tempfile.TemporaryDirectory() as tmp:
        os.symlink(tree / "daily-participation", server.root / "daily-participation")
        os.symlink(tree / "resource-usage", server.root / "resource-usage")
        for n in args.connections:
            settings = SftpSettings(
                host=server.host,
                port=server.port,
                username=server.user,
                private_key=server.client_key_text,
                host_key=server.host_key_line,
                remote_root=str(server.root),
                max_connections=n,
            )
            for _ in range(args.repeat):
                row = land_once(settings, Path(tmp) / "lake", concurrency=n)
                rows.append(row)
                print(json.dumps(row))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
