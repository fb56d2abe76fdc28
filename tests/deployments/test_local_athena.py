"""The local stack end to end: a LibInsight commit fires athena-query, which now succeeds.

Before, the event-triggered athena-query deployment always went to Athena and failed
(`Unable to locate credentials`), retried for minutes, after every LibInsight commit. On
the embedded default it runs on the DuckDB catalog and writes the Tableau CSV.
This is `python -m deployments.local up`'s sequence, on its own server and lake.
"""

from __future__ import annotations

import csv
import time
from pathlib import Path

import httpx
import pytest

from tests.servers.prefect_server import prefect_server

pytestmark = pytest.mark.slow  # a Prefect server, a process worker, the LibInsight stand-in

TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def _post(api_url: str, path: str, body: dict[str, object]) -> list[dict[str, object]]:
    response = httpx.post(f"{api_url}{path}", json=body, timeout=30)
    response.raise_for_status()
    return list(response.json())


def _finished_runs(api_url: str, deployment_id: str, timeout: float) -> list[dict[str, object]]:
    """The deployment's flow runs once one has finished (polls the API; fails at timeout)."""
    body = {"deployments": {"id": {"any_": [deployment_id]}}, "limit": 10}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = _post(api_url, "/flow_runs/filter", body)
        if any(r["state_type"] in TERMINAL for r in runs):
            return runs
        time.sleep(1)
    raise AssertionError(f"no finished run of deployment {deployment_id} within {timeout:.0f}s")


def test_a_libinsight_commit_fires_a_local_athena_query_that_writes_the_csv(
    tmp_path: Path,
) -> None:
    lake = tmp_path / "lake"
    # No AWS anywhere: the local stack must not need it.
    no_aws = {
        "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    with prefect_server(
        tmp_path / "home", extra_env={"EDULAKE_LAKE__ROOT": str(lake), **no_aws}
    ) as stack:
        stack.create_pool()
        stack.extra_env.update(stack.start_libinsight_demo())
        stack.create_blocks("--generate-hmac-key")
        stack.deploy_all()
        stack.start_worker()
        output = stack.prefect(
            "deployment",
            "run",
            "libinsight-dataset/libinsight-backfill",
            "--param",
            "from_date=2023-01-01",
            "--param",
            "to_date=2023-02-28",
            "--watch",
            "--watch-timeout",
            "300",
        )
        assert "Flow run finished successfully in 'Completed'" in output, output

        (athena,) = _post(
            stack.api_url,
            "/deployments/filter",
            {"deployments": {"name": {"any_": ["athena-query"]}}},
        )
        runs = _finished_runs(stack.api_url, str(athena["id"]), timeout=300)
        (run,) = [r for r in runs if r["state_type"] in TERMINAL]
        assert run["state_type"] == "COMPLETED", (run["state_name"], stack.log_tail("worker"))
        assert run["parameters"]["query_names"] == ["libinsight_tableau_extract"]
        # the trigger rendered the committed table's resource id into the run's parameters
        table = run["parameters"]["table"].rsplit(".", 1)[-1]
        assert table.startswith("reference_desk_")

    out = lake / "exports" / "athena" / f"libinsight_tableau_extract-{table}.csv"
    with out.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert rows and {"id", "start_day", "start_weekday"} <= set(rows[0])
    assert len({r["id"] for r in rows}) == len(rows)
