"""The LibInsight demo: the local compatible server, the flow against it, a few answers.

Two datasets of one instance side by side: the reference desk (dataset 12345, the bundled
``reference_desk`` config, table ``reference_desk_12345``) and an instruction log
(dataset 12346, ``instruction_log``, table ``instruction_log_12346``).
"""

from __future__ import annotations

import datetime as dt
import os
from typing import Any

from edulake.core import clock
from edulake.demo.libinsight_server import (
    DEMO_CLIENT_ID,
    DEMO_CLIENT_SECRET,
    DEMO_DATASET_ID,
    LibInsightServer,
    ServerSettings,
)

INSTRUCTION_DATASET_ID = DEMO_DATASET_ID + 1
DESK = f"libinsight.reference_desk_{DEMO_DATASET_ID}"
INSTRUCTION = f"libinsight.instruction_log_{INSTRUCTION_DATASET_ID}"
DEMO_QUERIES = {
    "Questions per month (last 6 months)": f"""
        SELECT month, COUNT(*) AS questions, ROUND(AVG(duration_in_minutes), 1) AS avg_minutes
        FROM {DESK} GROUP BY month ORDER BY month DESC LIMIT 6""",
    "Question types": f"""
        SELECT question_type, COUNT(*) AS questions FROM {DESK}
        GROUP BY question_type ORDER BY questions DESC""",
    "Top research topics": f"""
        SELECT research_topic, COUNT(*) AS questions FROM {DESK}
        WHERE research_topic IS NOT NULL GROUP BY research_topic
        ORDER BY questions DESC, research_topic LIMIT 5""",
    "Staff workload (pseudonymized)": f"""
        SELECT LEFT(entered_by_pseudonym, 12) AS staff_pseudonym, COUNT(*) AS questions
        FROM {DESK} GROUP BY 1 ORDER BY questions DESC LIMIT 3""",
    "Instruction sessions by type (the second dataset, its own table)": f"""
        SELECT session_type, COUNT(*) AS sessions, SUM(attendees) AS attendees
        FROM {INSTRUCTION} GROUP BY session_type ORDER BY sessions DESC""",
}


def run_demo(lake_root: str = "./lake", days: int = 500, latency_ms: float = 20.0) -> None:
    """Start the local server, backfill ``days`` days, run incrementally once, print answers."""
    from edulake.cli import show_answers
    from flows.libinsight_dataset import libinsight_dataset

    # The demo server's public demo secret, handed over the documented env fallback.
    os.environ.setdefault("EDULAKE_LIBINSIGHT_CLIENT_SECRET", DEMO_CLIENT_SECRET)
    yesterday = clock.yesterday()
    settings = ServerSettings(
        latency_s=latency_ms / 1000,
        dataset_ids=(DEMO_DATASET_ID, INSTRUCTION_DATASET_ID),
        profiles={INSTRUCTION_DATASET_ID: "instruction"},
    )
    with LibInsightServer(settings) as server:
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
        other = libinsight_dataset(
            **{**common, "dataset_id": INSTRUCTION_DATASET_ID},
            dataset_config="instruction_log",
            from_date=yesterday - dt.timedelta(days=days - 1),
            to_date=yesterday,
        )
        print(
            f"second dataset {INSTRUCTION_DATASET_ID} (instruction_log): {other['rows_written']} "
            f"rows in its own table {INSTRUCTION}"
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
        f"\nCSV export for Tableau: {os.path.join(os.path.abspath(lake_root), 'exports', 'libinsight', f'reference_desk_{DEMO_DATASET_ID}.csv')}"
    )
