"""Shared helpers for the reliability tests: run the pipeline, fingerprint a lake."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys

import pyarrow as pa
import pyarrow.dataset as ds

from edulake.connectors.files import FolderSource
from edulake.core.lake import Lake, Zone
from edulake.core.versions import read_prefix, table_keys
from edulake.privacy.lookup import read_lookup
from edulake.privacy.pseudonym import Pseudonymizer
from edulake.sources.clever import pipeline
from tests.envs import without_edulake
from tests.keys import KEY as KEY  # the one test key, for the reliability tests
from tests.keys import KEY_TEXT as KEY_TEXT
from tests.keys import OTHER_KEY as OTHER_KEY  # a second key: rotation, mismatches
from tests.keys import OTHER_KEY_TEXT as OTHER_KEY_TEXT

DP = "daily-participation/2022-01-03-daily-participation-students.csv"
RU = "resource-usage/2022-01-03-resource-usage-students.csv"


def run(lake: Lake, src_dir: str, pseudonymizer: Pseudonymizer, share: float = 0.5):
    """discover -> land -> process, as the flow does (without Prefect)."""
    src = FolderSource(src_dir)
    found = pipeline.discover(src)
    landed = pipeline.land_reports(lake, src, found.reports)
    processed = pipeline.process_pending(
        lake, pipeline.pending(lake), pseudonymizer, max_quarantine_share=share
    )
    return found, landed, processed


def read_table(lake: Lake, name: str) -> pa.Table:
    """The live version of a Clever stage2p table (edulake.core.versions)."""
    root = lake.fs_path(Zone.STAGE2P, read_prefix(lake, "clever", name))
    files = [lake.fs_path(Zone.STAGE2P, k) for k in table_keys(lake, "clever", name)]
    if not files:
        return pa.table({})
    return ds.dataset(
        files, format="parquet", partitioning="hive", partition_base_dir=root
    ).to_table()


def checksum(table: pa.Table) -> tuple[int, str]:
    """Row count and an order-independent content checksum of a table."""
    rows = sorted(json.dumps(r, sort_keys=True, default=str) for r in table.to_pylist())
    digest = hashlib.sha256("\n".join(rows).encode()).hexdigest()
    return table.num_rows, digest


def lake_fingerprint(lake: Lake) -> dict[str, tuple[int, str]]:
    """Row counts and checksums of every stage2p table and stage2np lookup."""
    out = {}
    for name in ("daily_participation", "resource_usage"):
        out[f"stage2p.{name}"] = checksum(read_table(lake, name))
    for col in ("sis_id", "clever_user_id"):
        if lake.exists(Zone.STAGE2NP, f"clever/{col}_lookup/lookup.parquet"):
            out[f"stage2np.{col}"] = checksum(read_lookup(lake, "clever", col))
    return out


REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run_killable(module: str, args: list[str], crash_at: str | None = None) -> int:
    """Run a crash runner (``python -m module args``) in a fresh process; its exit code.

    With ``crash_at`` (``<point>:<n>``) the process SIGKILLs itself there. Any other
    failure than that kill is an assertion error with the runner's stderr.
    """
    env = without_edulake()
    if crash_at:
        env["EDULAKE_CRASH_AT"] = crash_at
    proc = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if proc.returncode not in (0, -signal.SIGKILL):
        raise AssertionError(f"runner failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc.returncode
