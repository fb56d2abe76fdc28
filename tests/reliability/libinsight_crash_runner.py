"""Run the LibInsight pipeline once in this process, as the flow does, for crash tests.

python -m tests.reliability.libinsight_crash_runner BASE_URL LAKE NP_ROOT FROM TO

The same plain functions in the same order as ``flows/libinsight_dataset.py`` (fetch and
land -> months, lookups, export -> publish -> watermark), without a Prefect server, so a
SIGKILL leaves nothing orphaned behind.
"""

from __future__ import annotations

import datetime as dt
import sys

from edulake.catalog import CatalogTable, open_catalog, publish_all
from edulake.core.lake import Lake
from edulake.demo.libinsight_server import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET
from edulake.privacy.pseudonym import Pseudonymizer
from edulake.sources.libinsight import pipeline
from edulake.sources.libinsight.api import LibInsightClient
from edulake.sources.libinsight.config import load_dataset_config
from edulake.sources.libinsight.store import write_watermark
from edulake.sources.libinsight.windows import Window, split_windows

from .helpers import KEY

DATASET = 12345


def main(base_url: str, root: str, np_root: str, start: str, end: str) -> int:
    lake = Lake(root, np_root)
    lake.sweep_tmp()
    cfg = load_dataset_config("reference_desk")
    window = Window(dt.date.fromisoformat(start), dt.date.fromisoformat(end))
    with LibInsightClient(base_url, DEMO_CLIENT_ID, DEMO_CLIENT_SECRET) as client:
        fetched = pipeline.fetch_and_land(
            client, lake, DATASET, split_windows(window.start, window.end), concurrency=4
        )
    processed = pipeline.process_range(lake, cfg, fetched.keys, window, Pseudonymizer(KEY))
    cat = open_catalog("duckdb", lake)
    try:
        table = CatalogTable.from_spec(
            lake, processed.spec, {"key_id": KEY.key_id, "source": "LibInsight"}
        )
        publish_all(cat, [table])
    finally:
        cat.close()
    write_watermark(lake, cfg.name, DATASET, window.end, None)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:6]))
