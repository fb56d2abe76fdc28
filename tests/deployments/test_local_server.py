"""prefect.yaml deployed to a real Prefect server + process worker, and a Clever run."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest

from deployments.local.stack import LocalStack
from deployments.project import REPO_ROOT, load_project
from deployments.project import deployments as deployments_of

pytestmark = pytest.mark.slow


def api_post(api_url: str, path: str, body: dict[str, object]) -> list[dict[str, object]]:
    """POST a filter query to the Prefect REST API."""
    response = httpx.post(f"{api_url}{path}", json=body, timeout=30)
    response.raise_for_status()
    result = response.json()
    assert isinstance(result, list)
    return result


LIBINSIGHT_VARIABLES = {
    "EDULAKE_LIBINSIGHT_BASE_URL": "https://library.example.libinsight.com",
    "EDULAKE_LIBINSIGHT_DATASET_ID": "7",
    "EDULAKE_LIBINSIGHT_INSTRUCTION_DATASET_ID": "8",
    "EDULAKE_LIBINSIGHT_CLIENT_ID": "42",
}


def wait_for_runs(api_url: str, deployment_id: str, timeout: float = 90.0) -> list[dict]:
    """The deployment's flow runs, once the server's scheduler has created some."""
    body = {"deployments": {"id": {"any_": [deployment_id]}}, "limit": 5}
    deadline = time.monotonic() + timeout
    while not (runs := api_post(api_url, "/flow_runs/filter", body)):
        if time.monotonic() > deadline:
            break
        time.sleep(1)
    return runs


def test_deploy_all_and_run_clever_on_a_process_worker(stack: LocalStack, tmp_path: Path) -> None:
    lake_root = tmp_path / "lake"
    stack.create_pool()
    stack.extra_env.update(LIBINSIGHT_VARIABLES)
    try:
        blocks = stack.create_blocks()
    finally:
        for name in LIBINSIGHT_VARIABLES:
            stack.extra_env.pop(name)
    assert "set variable libinsight_dataset_id = 7" in blocks
    stack.deploy_all()

    deployments = api_post(stack.api_url, "/deployments/filter", {})
    by_name = {d["name"]: d for d in deployments}
    # Everything in prefect.yaml, on the process pool the variable names.
    assert set(by_name) == {e["name"] for e in deployments_of(load_project())}
    assert {d["work_pool_name"] for d in deployments} == {stack.pool}
    daily = by_name["clever-daily"]
    (schedule,) = daily["schedules"]
    assert schedule["active"]
    assert schedule["schedule"]["timezone"] == "America/New_York"
    assert daily["global_concurrency_limit"]["limit"] == 1
    assert daily["concurrency_options"]["collision_strategy"] == "CANCEL_NEW"
    # Installation settings came from Prefect variables, typed (the flow takes an int).
    weekly = by_name["libinsight-weekly"]["parameters"]
    assert weekly["dataset_id"] == 7
    instruction = by_name["libinsight-instruction-weekly"]["parameters"]
    assert (instruction["dataset_id"], instruction["dataset_config"]) == (8, "instruction_log")
    assert weekly["base_url"] == LIBINSIGHT_VARIABLES["EDULAKE_LIBINSIGHT_BASE_URL"]
    (trigger,) = [
        a for a in api_post(stack.api_url, "/automations/filter", {}) if "athena" in a["name"]
    ]
    assert trigger["trigger"]["expect"] == ["edulake.data.committed"]
    # The server's scheduler has created the upcoming runs: visible in the UI.
    scheduled = wait_for_runs(stack.api_url, daily["id"])
    assert scheduled, "the scheduler created no runs for clever-daily"
    assert {r["state_type"] for r in scheduled} == {"SCHEDULED"}

    stack.start_worker()
    output = stack.prefect(
        "deployment",
        "run",
        "clever-participation/clever-backfill",
        "--param",
        "source=testdata",
        "--param",
        "demo=true",
        "--param",
        f"lake_root={lake_root}",
        "--param",
        'testdata={"days": 2, "students": 50}',
        "--watch",
        "--watch-timeout",
        "300",
    )
    assert "Flow run finished successfully in 'Completed'" in output, output

    runs = api_post(
        stack.api_url,
        "/flow_runs/filter",
        {"deployments": {"id": {"any_": [by_name["clever-backfill"]["id"]]}}},
    )
    (run,) = runs
    assert run["state_type"] == "COMPLETED"
    assert run["parameters"]["source"] == "testdata"

    # The lake the run wrote: raw files landed, pseudonymized Parquet per day, a catalog.
    raw = tmp_path / "lake-protected" / "stage1np" / "clever"  # the np root beside it
    assert len(list(raw.rglob("*.csv"))) == 2 * 6
    partitions = sorted(
        p.name for p in (lake_root / "stage2p" / "clever" / "daily_participation").iterdir()
    )
    assert partitions == ["date=2022-01-03", "date=2022-01-04"]
    assert list((lake_root / "stage2p" / "clever").rglob("*.parquet"))
    assert list((lake_root / "_system" / "ledger" / "clever").rglob("*.json"))
    assert (lake_root / "catalog" / "edulake.duckdb").is_file()


RENDER = """
import asyncio, json, sys
from prefect.client.orchestration import get_client
from prefect.workers.base import BaseWorker

async def main(name):
    async with get_client() as client:
        pool = await client.read_work_pool(name)
    worker = BaseWorker.get_worker_class_from_type(pool.type)
    config = await worker.job_configuration.from_template_and_values(
        pool.base_job_template, {"image": "registry.example/edulake:test"}
    )
    print(config.model_dump_json())

asyncio.run(main(sys.argv[1]))
"""


@pytest.mark.parametrize("kind", ["ecs", "docker"])
def test_work_pool_templates_create_pools_the_worker_can_render(
    stack: LocalStack, kind: str
) -> None:
    template = REPO_ROOT / "deployments" / "work-pools" / f"{kind}.json"
    name = f"edulake-{kind}"
    stack.prefect(
        "work-pool",
        "create",
        name,
        "--type",
        kind,
        "--base-job-template",
        str(template),
        "--overwrite",
    )
    # Render a flow run's job the way the worker will, from the pool the server stored.
    config = json.loads(stack.python("-c", RENDER, name))
    if kind == "ecs":
        assert config["task_definition"]["cpu"] == 1024
        assert config["task_definition"]["memory"] == 4096
        overrides = config["task_run_request"]["overrides"]
        assert overrides["taskRoleArn"].endswith(":role/edulake-pipeline")
        assert config["task_definition"]["containerDefinitions"][0]["image"].endswith(":test")
    else:
        assert config["mem_limit"] == "4g"
        assert config["image"] == "registry.example/edulake:test"
    assert config["env"]["EDULAKE_LAKE__ROOT"]
