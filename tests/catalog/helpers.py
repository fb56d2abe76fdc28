"""Shared helpers for the catalog tests: small Clever sources, runs in subprocesses, and
what an analyst sees in the catalog (row counts and content checksums)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from edulake.catalog.duckdb import connect
from edulake.demo.clever_testdata import TestDataSource
from tests.envs import without_edulake
from tests.reliability.helpers import REPO, checksum, run_killable

PARAMS = {"students": 120, "teachers": 10, "staff": 3, "schools": 2}
TABLES = [
    "clever.daily_participation",
    "clever.resource_usage",
    "clever_np.sis_id_lookup",
    "clever_np.clever_user_id_lookup",
]
VIEW = "clever.usage_over_time"


def source(folder: str, days: int) -> str:
    """A generated Clever source of ``days`` days (the same ids every day)."""
    return TestDataSource(days=days, **PARAMS, cache_dir=folder).ensure_generated()


def first_days(src: str, dest: str, days: int) -> str:
    """A copy of ``src`` with only its first ``days`` report dates."""
    dates = sorted({n[:10] for _, _, fs in os.walk(src) for n in fs if n.endswith(".csv")})
    keep = set(dates[:days])
    for folder, _, files in os.walk(src):
        for name in files:
            if name[:10] in keep:
                rel = os.path.relpath(os.path.join(folder, name), src)
                os.makedirs(os.path.join(dest, os.path.dirname(rel)), exist_ok=True)
                shutil.copyfile(os.path.join(folder, name), os.path.join(dest, rel))
    return dest


def run_pipeline(src: str, base: str, crash_at: str | None = None) -> int:
    """One pipeline run (the flow's steps, no Prefect) in a subprocess; its exit code."""
    return run_killable(
        "tests.reliability.crash_runner", [src, f"{base}/lake", f"{base}/np"], crash_at
    )


def db_path(base: str) -> str:
    return f"{base}/lake/catalog/edulake.duckdb"


def np_dir(base: str) -> str:
    """The protected catalog files: under the np root, or beside the main file (one root)."""
    return f"{base}/np/catalog" if os.path.isdir(f"{base}/np") else f"{base}/lake/catalog"


def catalog_state(base: str) -> dict[str, tuple[int, str]]:
    """Row counts and content checksums of every table and a view, as a steward sees them."""
    con = connect(db_path(base), np_dir=np_dir(base))
    try:
        out = {t: checksum(con.sql(f"SELECT * FROM {t}").to_arrow_table()) for t in TABLES}
        out[VIEW] = checksum(con.sql(f"SELECT * FROM {VIEW}").to_arrow_table())
        return out
    finally:
        con.close()


def clean_build(base: str, src: str, dest: str) -> dict[str, tuple[int, str]]:
    """The catalog a fresh build makes from the lake of ``base`` as it is now (a copy of
    its lake without any catalog file, run once)."""
    for root in ("lake", "np"):
        if os.path.isdir(f"{base}/{root}"):
            shutil.copytree(
                f"{base}/{root}", f"{dest}/{root}", ignore=shutil.ignore_patterns("catalog")
            )
    assert run_pipeline(src, dest) == 0
    return catalog_state(dest)


def wait_for(path: str, proc: subprocess.Popen[str] | None = None) -> None:
    """Wait until ``path`` exists; fail at once if ``proc`` ends first (no timing assert)."""
    import time

    deadline = time.monotonic() + 300  # a hang guard, not an assertion on timing
    while not os.path.exists(path):
        if proc is not None and proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(
                f"process ended ({proc.returncode}) before {os.path.basename(path)}:\n"
                f"{out[-2000:]}\n{err[-3000:]}"
            )
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} never appeared")
        time.sleep(0.02)


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = without_edulake()
    env.update(extra or {})
    return env


def start(module: str, args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """``python -m module args`` in the background, from the repository root."""
    return subprocess.Popen(
        [sys.executable, "-m", module, *args],
        cwd=REPO,
        env=_env(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@contextmanager
def reader(db: str, folder: str) -> Iterator[subprocess.Popen[str]]:
    """An analyst's DuckDB connection (read_only=True) held open in another process."""
    proc = start("tests.catalog.reader", [db, folder])
    try:
        wait_for(os.path.join(folder, "opened.json"), proc)
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        proc.communicate()
