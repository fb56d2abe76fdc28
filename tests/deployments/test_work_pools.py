"""Work-pool base job templates: valid for the server and their worker, edulake defaults set."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from prefect.server.schemas.actions import validate_base_job_template
from prefect_aws.workers.ecs_worker import ECSWorker
from prefect_docker.worker import DockerWorker

from deployments.project import REPO_ROOT

POOLS = REPO_ROOT / "deployments" / "work-pools"
WORKERS = {"ecs": ECSWorker, "docker": DockerWorker}


def template(kind: str) -> dict[str, Any]:
    """A committed base job template."""
    return json.loads((POOLS / f"{kind}.json").read_text(encoding="utf-8"))


def defaults(kind: str) -> dict[str, Any]:
    """The default of each variable of a committed template."""
    props = template(kind)["variables"]["properties"]
    return {name: spec["default"] for name, spec in props.items() if "default" in spec}


@pytest.mark.parametrize("kind", sorted(WORKERS))
def test_template_is_the_workers_own_plus_edulake_defaults(kind: str) -> None:
    mine = template(kind)
    validate_base_job_template(mine)  # what the server checks on create/update
    theirs = WORKERS[kind].get_default_base_job_template()
    # Same shape as the installed worker's template: only defaults were changed.
    assert set(mine["job_configuration"]) == set(theirs["job_configuration"])
    assert set(mine["variables"]["properties"]) == set(theirs["variables"]["properties"])
    for name, spec in mine["variables"]["properties"].items():
        their_spec = theirs["variables"]["properties"][name]
        assert {k: v for k, v in spec.items() if k not in {"default", "description"}} == {
            k: v for k, v in their_spec.items() if k not in {"default", "description"}
        }, name


def test_ecs_sizes_roles_and_lake() -> None:
    values = defaults("ecs")
    assert values["cpu"] == 1024 and values["memory"] == 4096
    # The example account and names of docs/aws.md and deployments/iam/.
    assert values["task_role_arn"] == "arn:aws:iam::123456789012:role/edulake-pipeline"
    assert values["execution_role_arn"].startswith("arn:aws:iam::123456789012:role/")
    assert values["env"]["EDULAKE_LAKE__ROOT"] == "s3://edulake-lake/lake"
    assert values["env"]["EDULAKE_LAKE__NP_ROOT"] == "s3://edulake-np/np"
    assert values["env"]["EDULAKE_CATALOG__KIND"] == "glue"
    assert values["configure_cloudwatch_logs"] is True


def test_docker_limits_and_lake_volume() -> None:
    values = defaults("docker")
    assert values["mem_limit"] == "4g"
    assert values["container_create_kwargs"] == {"nano_cpus": 2_000_000_000}
    (volume,) = values["volumes"]
    mount = volume.split(":")[1]
    assert values["env"]["EDULAKE_LAKE__ROOT"].startswith(mount + "/")


@pytest.mark.parametrize("kind", sorted(WORKERS))
def test_no_secrets_in_the_environment(kind: str) -> None:
    env = defaults(kind)["env"]
    assert not [k for k in env if re.search(r"SECRET|PASSWORD|TOKEN|KEY", k)]
