"""The LibInsight demo: the local compatible server, the flow against it, a few answers."""

from __future__ import annotations

import datetime as dt
import os
from typing import Any

from edulake.demo.libinsight_server import (
    DEMO_CLIENT_ID,
    DEMO_CLIENT_SECRET,
    DEMO_DATASET_ID,
    LibInsightServer,
    ServerSettings,
)

DEMO_QUERIES = {
    "Questions per month (last 6 months)": """
        SELECT month, COUNT(*) AS questions, ROUND(AVG(duration_in_minutes), 1) AS avg_minutes
        FROM libinsight.reference_desk GROUP BY month ORDER BY month DESC LIMIT 6""",
    "Question types": """
        SELECT question_type, COUNT(*) AS questions FROM libinsight.reference_desk
        GROUP BY question_type ORDER BY questions DESC""",
    "Top research topics": """
        SELECT research_topic, COUNT(*) AS questions FROM libinsight.reference_desk
        WHERE research_topic IS NOT NULL GROUP BY research_topic
        ORDER BY questions DESC, research_topic LIMIT 5""",
    "Staff workload (pseudonymized)": """
        SELECT LEFT(entered_by_pseudonym, 12) AS staff_pseudonym, COUNT(*) AS questions
        FROM libinsight.reference_desk GROUP BY 1 ORDER BY questions DESC LIMIT 3""",
}


def run_demo(lake_root: str = "./lake", days: int = 500, latency_ms: float = 20.0) -> None:
    """Start the local server, backfill ``days`` days, run incrementally once, print answers."""
    from edulake.cli import show_answers
    from flows.libinsight_dataset import libinsight_dataset

    # The demo server's public demo secret, handed over the documented env fallback.
    os.environ.setdefault("EDULAKE_LIBINSIGHT_CLIENT_SECRET", DEMO_CLIENT_SECRET)
    yesterday = dt.date.today() - dt.timedelta(days=1)
    with LibInsightServer(ServerSettings(latency_s=latency_ms / 1000)) as server:
        print(f"LibInsight-compatible server on {server.base_url} ({latency_ms:g} ms latency)")
        common: dict[str, Any] = {
            "base_url": server.base_url,
            "dataset_id": DEMO_DATASET_ID,
            "client_id": DEMO_CLIENT_ID,
            "client_secret_block": None,
            "lake_root": lake_root,
            "demo": True,
        }
        first = libinsight_dataset(
            **common, from_date=yesterday - dt.timedelta(days=days - 1), to_date=yesterday
        )
        print(
            f"\nbackfill {first['range']}: {first['pages']} pages in {first['windows']} window(s), "
            f"{first['rows_written']} rows, {first['months_rewritten']} month files"
        )
        server.settings.revision = 1  # some records get late edits
        second = libinsight_dataset(**common)
        print(
            f"incremental {second['range']}: {second['pages']} pages, "
            f"{second['months_rewritten']} month file(s) rewritten; watermark "
            f"{second['watermark_before']} -> {second['watermark_after']}"
        )
    show_answers(lake_root, DEMO_QUERIES)
    print(
        f"\nCSV export for Tableau: {os.path.join(os.path.abspath(lake_root), 'exports', 'libinsight', 'reference_desk.csv')}"
    )
