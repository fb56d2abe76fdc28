"""edulake's own log lines reach the Prefect API (and so the UI), wherever a flow runs.

Prefect ships only its own loggers unless PREFECT_LOGGING_EXTRA_LOGGERS names others, and
it reads that setting when it is imported. Each case runs a flow in a fresh process
against a real Prefect server, logs through ``logging.getLogger("edulake.x")``, and reads
the flow run's logs back from the API.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from deployments.local.stack import LocalStack

pytestmark = pytest.mark.slow  # a real Prefect server and flow runs in subprocesses

LINE = "edulake probe: 3 retries after HTTP 503"

SCRIPT = """
import logging, sys
if sys.argv[1] == "cli":
    import edulake.cli  # noqa: F401 - what `python -m edulake` does first
from prefect import flow

@flow(name="edulake-log-probe")
def probe() -> None:
    logging.getLogger("edulake.connectors.http").warning({line!r})

state = probe(return_state=True)
print("FLOW_RUN_ID=" + str(state.state_details.flow_run_id))
"""


def _run_probe(stack: LocalStack, tmp_path: Path, env: dict[str, str], mode: str) -> str:
    script = tmp_path / "probe.py"
    script.write_text(SCRIPT.format(line=LINE), encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(script), mode],
        cwd=stack.code_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (line,) = [x for x in done.stdout.splitlines() if x.startswith("FLOW_RUN_ID=")]
    return line.split("=", 1)[1]


def _logs(stack: LocalStack, flow_run_id: str) -> list[dict[str, object]]:
    response = httpx.post(
        f"{stack.api_url}/logs/filter",
        json={"logs": {"flow_run_id": {"any_": [flow_run_id]}}, "limit": 200},
        timeout=30,
    )
    response.raise_for_status()
    return list(response.json())


def _shipped(stack: LocalStack, flow_run_id: str) -> list[dict[str, object]]:
    return [log for log in _logs(stack, flow_run_id) if log["message"] == LINE]


def test_the_local_stack_ships_edulake_loggers(stack: LocalStack, tmp_path: Path) -> None:
    env = stack.env()
    assert env["PREFECT_LOGGING_EXTRA_LOGGERS"] == "edulake"
    run_id = _run_probe(stack, tmp_path, env, "plain")
    (log,) = _shipped(stack, run_id)
    assert log["name"] == "edulake.connectors.http"
    assert log["level"] == 30  # WARNING
    # Prefect's own lines are there too: the run's logs were read, not some other run's.
    assert any(str(x["name"]).startswith("prefect.flow_runs") for x in _logs(stack, run_id))


def test_the_cli_sets_it_before_prefect_is_imported(stack: LocalStack, tmp_path: Path) -> None:
    env = {k: v for k, v in stack.env().items() if k != "PREFECT_LOGGING_EXTRA_LOGGERS"}
    run_id = _run_probe(stack, tmp_path, env, "cli")
    assert len(_shipped(stack, run_id)) == 1


def test_without_the_setting_the_line_stays_on_the_console(
    stack: LocalStack, tmp_path: Path
) -> None:
    """The control: what every deployment did before (edulake.* lines never reached the UI)."""
    env = {k: v for k, v in stack.env().items() if k != "PREFECT_LOGGING_EXTRA_LOGGERS"}
    run_id = _run_probe(stack, tmp_path, env, "plain")
    assert _logs(stack, run_id)  # Prefect's own lines arrived
    assert _shipped(stack, run_id) == []


def test_every_place_a_flow_runs_sets_it() -> None:
    root = Path(__file__).parents[2]
    dockerfile = (root / "Dockerfile").read_text(encoding="utf-8")
    assert "PREFECT_LOGGING_EXTRA_LOGGERS=edulake" in dockerfile
    makefile = (root / "Makefile").read_text(encoding="utf-8")
    assert "export PREFECT_LOGGING_EXTRA_LOGGERS ?= edulake" in makefile
    for pool in sorted((root / "deployments" / "work-pools").glob("*.json")):
        env = json.loads(pool.read_text(encoding="utf-8"))["variables"]["properties"]["env"]
        assert env["default"]["PREFECT_LOGGING_EXTRA_LOGGERS"] == "edulake", pool.name
