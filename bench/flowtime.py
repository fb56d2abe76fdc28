"""Whole-flow timing: the README's main command, and Prefect's own start-up beside it."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from typing import Any

# A flow that does nothing, run the same way as the demo (a fresh Python process, a
# fresh PREFECT_HOME, Prefect's temporary local server): what is left is Prefect's cost.
TRIVIAL_FLOW = """
from prefect import flow

@flow(name="bench-trivial")
def trivial() -> int:
    return 1

trivial()
"""


def _env(prefect_home: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        PREFECT_HOME=prefect_home,
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        DO_NOT_TRACK="1",
        PYTHONPATH=os.getcwd() + os.pathsep + env.get("PYTHONPATH", ""),
    )
    env.pop("EDULAKE_LAKE__ROOT", None)
    return env


def _timed(cmd: list[str], cwd: str, env: dict[str, str]) -> float:
    began = time.perf_counter()
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - began
    if done.returncode != 0:
        tail = (done.stderr or done.stdout)[-2000:]
        raise RuntimeError(f"{' '.join(cmd[:4])} failed ({done.returncode}):\n{tail}")
    return seconds


def measure_flow(demo_args: list[str] | None = None) -> dict[str, Any]:
    """Wall time of ``python -m edulake demo`` (first run and re-run) and of a trivial flow."""
    demo_args = demo_args or []
    with tempfile.TemporaryDirectory(prefix="edulake-bench-flow-") as tmp:
        env = _env(os.path.join(tmp, "prefect"))
        lake = os.path.join(tmp, "lake")
        # The first run lands and processes everything; the re-run finds nothing new.
        demo = [sys.executable, "-m", "edulake", "demo", "--lake-root", lake, *demo_args]
        trivial = [sys.executable, "-c", TRIVIAL_FLOW]
        warm = _timed(trivial, tmp, env)  # first Prefect start creates its database
        first = _timed(demo, os.getcwd(), env)
        again = _timed(demo, os.getcwd(), env)
        bare = _timed(trivial, tmp, env)
        python = _timed([sys.executable, "-c", "import prefect"], tmp, env)
    return {
        "command": "python -m edulake demo " + " ".join(demo_args),
        "demo_first_run_s": round(first, 2),
        "demo_rerun_s": round(again, 2),
        "trivial_flow_s": round(bare, 2),
        "trivial_flow_first_ever_s": round(warm, 2),
        "import_prefect_s": round(python, 2),
        # The machine may be busy: the quicker trivial run is Prefect's start-up.
        "prefect_share_of_demo": round(min(bare, warm) / first, 2) if first else None,
    }
