"""Benchmark: LibInsight paging, sequential vs concurrent, against the local server.

200 pages (100 records each) at 50 ms server latency, fetched over real HTTP on
127.0.0.1, once with concurrency 1 and once with the flow's default concurrency, in one
run. Prints JSON with wall times and the ideal (page 1 alone, then pages/concurrency
rounds of one latency each).

    PYTHONPATH=. .venv/bin/python bench/libinsight_paging.py [--pages 200] [--latency-ms 50]
"""

from __future__ import annotations

import argparse
import datetime as dt
import inspect
import json
import math
import time

from edulake.demo.libinsight_server import (
    DEMO_CLIENT_ID,
    DEMO_CLIENT_SECRET,
    LibInsightServer,
    ServerSettings,
)
from edulake.sources.libinsight.api import LibInsightClient
from edulake.sources.libinsight.windows import Window
from flows.libinsight_dataset import libinsight_dataset


def default_concurrency() -> int:
    return int(inspect.signature(libinsight_dataset.fn).parameters["concurrency"].default)


def measure(base_url: str, window: Window, concurrency: int) -> dict[str, float | int]:
    with LibInsightClient(base_url, DEMO_CLIENT_ID, DEMO_CLIENT_SECRET) as client:
        client.auth.headers()  # token first: measure paging only
        started = time.perf_counter()
        _, stats = client.data_grid(12345, window, concurrency=concurrency, keep=False)
        wall = time.perf_counter() - started
    return {
        "concurrency": concurrency,
        "pages": stats.pages,
        "records": stats.records,
        "wall_s": round(wall, 3),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    p.add_argument("--pages", type=int, default=200)
    p.add_argument("--latency-ms", type=float, default=50.0)
    p.add_argument("--concurrency", type=int, default=default_concurrency())
    args = p.parse_args()
    latency = args.latency_ms / 1000
    settings = ServerSettings(
        records_per_day=100, fixed_daily=True, page_size=100, latency_s=latency
    )
    start = dt.date(2023, 1, 1)
    window = Window(start, start + dt.timedelta(days=args.pages - 1))  # 100 records a day
    with LibInsightServer(settings) as server:
        runs = [measure(server.base_url, window, c) for c in (1, args.concurrency)]
    seq, conc = runs
    result = {
        "pages": seq["pages"],
        "server_latency_ms": args.latency_ms,
        "sequential": seq,
        "concurrent": conc,
        "speedup": round(float(seq["wall_s"]) / float(conc["wall_s"]), 2),
        "ideal_sequential_s": round(args.pages * latency, 3),
        "ideal_concurrent_s": round(
            (1 + math.ceil((args.pages - 1) / args.concurrency)) * latency, 3
        ),
        "ideal_formula": "pages/concurrency x latency (+1 round for page 1, which comes first)",
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
