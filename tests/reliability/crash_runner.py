"""Run the Clever pipeline once in this process, as the flow does, for crash tests.

python -m tests.reliability.crash_runner SRC LAKE NP_ROOT [LANDING_DATE]

The same plain functions in the same order as ``flows/clever_participation.py``
(discover -> land -> process -> publish), without a Prefect server so
that a SIGKILL leaves no orphaned server behind and each run takes about a second.
"""

from __future__ import annotations

import datetime as dt
import sys

from edulake.catalog import open_catalog, publish_all
from edulake.connectors.files import FolderSource
from edulake.core.lake import Lake
from edulake.privacy.pseudonym import Pseudonymizer
from edulake.sources.clever import pipeline

from .helpers import KEY


def main(src_dir: str, root: str, np_root: str, landing_date: str | None = None) -> int:
    lake = Lake(root, np_root)
    lake.sweep_tmp()
    src = FolderSource(src_dir)
    found = pipeline.discover(src)
    now = None
    if landing_date:  # a run on another day (the default is the clock)
        now = dt.datetime.combine(dt.date.fromisoformat(landing_date), dt.time(6), dt.UTC)
    pipeline.land_reports(lake, src, found.reports, concurrency=2, now=now)
    processed = pipeline.process_pending(
        lake, pipeline.pending(lake), Pseudonymizer(KEY), max_quarantine_share=0.5
    )
    cat = open_catalog("duckdb", lake)
    try:
        publish_all(cat, pipeline.catalog_tables(lake, KEY.key_id), views_for="clever")
    finally:
        cat.close()
    return 1 if processed.failed else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:5]))
