"""prefect.yaml is checked against the real flows: entrypoints, parameters, schedules, pools."""

from __future__ import annotations

import asyncio
import datetime as dt
import importlib
import inspect
import itertools
import json
import pkgutil
import re
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from prefect import Flow
from prefect.cli.deploy._models import PrefectYamlModel, RawScheduleConfig
from prefect.cli.deploy._triggers import DeploymentTriggerAdapter
from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
from prefect.server.schemas.schedules import CronSchedule
from prefect.utilities.callables import parameter_schema
from prefect.utilities.schema_tools import validate
from prefect.utilities.templating import PlaceholderType, find_placeholders

import flows
from deployments.project import (
    PREFECT_FILE,
    REPO_ROOT,
    deployments,
    load_entrypoint,
    load_project,
    local_variant,
)

PROJECT = load_project()
DEPLOYMENTS = deployments(PROJECT)
BY_NAME = {d["name"]: d for d in DEPLOYMENTS}


def by_name(ids: list[dict[str, Any]]) -> list[Any]:
    """pytest params named after their deployment."""
    return [pytest.param(d, id=d["name"]) for d in ids]


def is_template(value: Any) -> bool:
    """Whether a value is resolved only at deploy time ({{ prefect.variables.x }} etc.)."""
    return isinstance(value, str) and bool(find_placeholders(value))


def cron_of(raw: dict[str, Any]) -> CronSchedule:
    """The server-side schedule a prefect.yaml schedule entry becomes."""
    config = RawScheduleConfig.model_validate(raw)
    assert config.cron, "schedules are crons"
    return CronSchedule(cron=config.cron, timezone=config.timezone)


def run_dates(schedule: CronSchedule, n: int, start: dt.datetime) -> list[dt.datetime]:
    """The next `n` run times the Prefect server's scheduler computes from `start`."""
    return list(asyncio.run(schedule.get_dates(n=n, start=start)))


def run_parameters(flow: Flow[Any, Any], params: dict[str, Any]) -> None:
    """Fail unless `params` are names the flow takes, with values its schema accepts.

    Values templated from Prefect variables are known only at deploy time; the others are
    checked the way the server checks a run's parameters (enforce_parameter_schema).
    """
    signature = inspect.signature(flow.fn)
    unknown = set(params) - set(signature.parameters)
    assert not unknown, f"parameters the flow does not take: {sorted(unknown)}"
    concrete = json.loads(
        json.dumps({k: v for k, v in params.items() if not is_template(v)}, default=str)
    )
    schema = parameter_schema(flow).model_dump_for_openapi()
    validate(concrete, schema, raise_on_error=True, ignore_required=True)


def test_file_is_a_valid_prefect_project() -> None:
    model = PrefectYamlModel.model_validate(PROJECT)
    assert model.deployments
    names = [d["name"] for d in DEPLOYMENTS]
    assert len(names) == len(set(names)), "deployment names must be unique"


@pytest.mark.parametrize("entry", by_name(DEPLOYMENTS))
def test_entrypoint_imports_a_flow(entry: dict[str, Any]) -> None:
    flow = load_entrypoint(entry["entrypoint"])
    assert isinstance(flow, Flow)
    assert (REPO_ROOT / entry["entrypoint"].rpartition(":")[0]).is_file()


@pytest.mark.parametrize("entry", by_name(DEPLOYMENTS))
def test_parameters_fit_the_flow_signature(entry: dict[str, Any]) -> None:
    flow = load_entrypoint(entry["entrypoint"])
    params = entry.get("parameters") or {}
    run_parameters(flow, params)
    for schedule in entry.get("schedules") or []:
        run_parameters(flow, {**params, **schedule.get("parameters", {})})
    # Scheduled and triggered runs get no other parameters: required ones must be here.
    # (Hand-run deployments may leave one to the run, e.g. forget's ids_file.)
    if not (entry.get("schedules") or entry.get("triggers")):
        return
    required = {
        name
        for name, p in inspect.signature(flow.fn).parameters.items()
        if p.default is inspect.Parameter.empty
    }
    triggered = {k for t in entry.get("triggers") or [] for k in t.get("parameters", {})}
    assert required <= set(params) | triggered, f"required: {sorted(required)}"


@pytest.mark.parametrize("entry", by_name([d for d in DEPLOYMENTS if d.get("schedules")]))
def test_schedules_parse_in_a_district_time_zone(entry: dict[str, Any]) -> None:
    for raw in entry["schedules"]:
        schedule = cron_of(raw)
        assert schedule.timezone and schedule.timezone.startswith("America/")
        zone = ZoneInfo(schedule.timezone)
        # Early morning local time, across a DST change: after the nightly drops,
        # before the school day.
        for run_at in run_dates(schedule, 20, dt.datetime(2025, 3, 1, tzinfo=zone)):
            local = run_at.astimezone(zone)
            assert 3 <= local.hour < 8, local


def test_the_expected_schedules() -> None:
    daily = cron_of(BY_NAME["clever-daily"]["schedules"][0])
    weekly = cron_of(BY_NAME["libinsight-weekly"]["schedules"][0])
    start = dt.datetime(2025, 3, 3, tzinfo=ZoneInfo("UTC"))  # a Monday
    days = [d.date() for d in run_dates(daily, 7, start)]
    assert len(set(days)) == 7, "Clever runs every day"
    zone = ZoneInfo(weekly.timezone or "UTC")
    weeks = [d.astimezone(zone).date() for d in run_dates(weekly, 3, start)]
    assert [(b - a).days for a, b in itertools.pairwise(weeks)] == [7, 7]
    # LibInsight: the flow fetches up to yesterday when to_date is empty.
    assert BY_NAME["libinsight-weekly"].get("parameters", {}).get("to_date") is None


def test_backfills_are_unscheduled_with_a_date_range() -> None:
    backfills = [d for d in DEPLOYMENTS if d["name"].endswith("-backfill")]
    assert {d["entrypoint"] for d in backfills} >= {
        BY_NAME["clever-daily"]["entrypoint"],
        BY_NAME["libinsight-weekly"]["entrypoint"],
    }
    for entry in backfills:
        assert not entry.get("schedules") and not entry.get("triggers")
        flow = load_entrypoint(entry["entrypoint"])
        date_params = {
            name
            for name, p in inspect.signature(flow.fn).parameters.items()
            if "date" in str(p.annotation)
        }
        assert date_params & set(entry["parameters"]), "a backfill names its date range"


CHILDREN = ("clever-child", "rotate-key-child")  # bounded by their parents' limit


@pytest.mark.parametrize("entry", by_name([d for d in DEPLOYMENTS if d["name"] not in CHILDREN]))
def test_one_run_at_a_time_cancelling_new_ones(entry: dict[str, Any]) -> None:
    limit = ConcurrencyLimitConfig.model_validate(entry["concurrency_limit"])
    assert limit.limit == 1
    # The extract runs per committed table: a second dataset's extract queues, never dropped.
    expected = (
        ConcurrencyLimitStrategy.ENQUEUE
        if entry["name"] == "athena-query"
        else ConcurrencyLimitStrategy.CANCEL_NEW
    )
    assert limit.collision_strategy == expected


def test_fanout_children_are_bounded_by_the_parents_not_the_deployment() -> None:
    # Children of several districts run at once: the parents' global limit bounds them
    # (tasks/fanout.py), the lake lease orders writers of one lake. A deployment limit
    # of 1 would cancel (or queue) every district behind the first.
    child = BY_NAME["clever-child"]
    assert "concurrency_limit" not in child and not child.get("schedules")
    assert child["entrypoint"] == BY_NAME["clever-daily"]["entrypoint"]
    from tasks.fanout import CHILD_DEPLOYMENT

    assert CHILD_DEPLOYMENT == "clever-participation/clever-child"
    rotate_child = BY_NAME["rotate-key-child"]
    assert "concurrency_limit" not in rotate_child and not rotate_child.get("schedules")
    from flows.clever_maintenance import ROTATE_CHILD_DEPLOYMENT

    name, _, deployment = ROTATE_CHILD_DEPLOYMENT.partition("/")
    assert deployment == "rotate-key-child" and name == "rotate-key-child"


@pytest.mark.parametrize("entry", by_name(DEPLOYMENTS))
def test_work_pool_comes_from_a_variable_and_runs_the_built_image(entry: dict[str, Any]) -> None:
    pool = entry["work_pool"]
    (placeholder,) = find_placeholders(pool["name"])
    assert placeholder.type is PlaceholderType.VARIABLE
    assert placeholder.full_match == pool["name"]
    step_ids = {step_args.get("id") for step in PROJECT["build"] for step_args in step.values()}
    image = pool["job_variables"]["image"]
    assert re.fullmatch(r"\{\{ ([\w-]+)\.image \}\}", image), image
    assert image.split()[1].split(".")[0] in step_ids


def test_build_push_and_pull_steps() -> None:
    (build,) = PROJECT["build"]
    args = build["prefect_docker.deployments.steps.build_docker_image"]
    assert args["dockerfile"] == "Dockerfile"
    assert {p.type for p in find_placeholders([args["image_name"], args["tag"]])} == {
        PlaceholderType.ENV_VAR
    }
    (push,) = PROJECT["push"]
    assert "prefect_docker.deployments.steps.push_docker_image" in push
    for step in (build, push):
        module, _, func = next(iter(step)).rpartition(".")
        assert callable(getattr(importlib.import_module(module), func))
    # The pull step enters the folder the Dockerfile puts the code in.
    (pull,) = PROJECT["pull"]
    directory = pull["prefect.deployments.steps.set_working_directory"]["directory"]
    workdirs = re.findall(r"^WORKDIR\s+(\S+)", (REPO_ROOT / "Dockerfile").read_text(), re.M)
    assert workdirs == [directory]


def test_athena_runs_on_data_committed_events() -> None:
    triggered = [d for d in DEPLOYMENTS if d.get("triggers")]
    assert triggered, "one deployment is event-triggered"
    for entry in triggered:
        flow = load_entrypoint(entry["entrypoint"])
        for i, spec in enumerate(entry["triggers"]):
            trigger = DeploymentTriggerAdapter.validate_python(
                {**spec, "name": f"{entry['name']}-{i}"}
            )
            assert trigger.expect == {"edulake.data.committed"}
            assert trigger.enabled
            params = trigger.parameters or {}
            unknown = set(params) - set(inspect.signature(flow.fn).parameters)
            assert not unknown, unknown


def test_athena_trigger_is_the_documented_one() -> None:
    documented = load_project(REPO_ROOT / "deployments" / "triggers" / "athena-query.yaml")
    assert BY_NAME["athena-query"]["triggers"] == documented["triggers"]


def test_every_flow_module_is_deployed() -> None:
    deployed = {d["entrypoint"] for d in DEPLOYMENTS}
    for info in pkgutil.iter_modules(flows.__path__, prefix="flows."):
        module = importlib.import_module(info.name)
        path = info.name.replace(".", "/") + ".py"
        for name, obj in vars(module).items():
            if isinstance(obj, Flow) and obj.fn.__module__ == info.name:
                assert f"{path}:{name}" in deployed, f"{path}:{name} has no deployment"


def test_no_secret_is_a_parameter_or_job_variable() -> None:
    text = PREFECT_FILE.read_text(encoding="utf-8")
    for entry in DEPLOYMENTS:
        keys = set(entry.get("parameters") or {}) | set(entry["work_pool"]["job_variables"])
        for key in keys:
            # Secrets are referenced by block name only (`*_block`).
            assert key.endswith("_block") or not re.search(
                r"secret|password|token|key", key, re.I
            ), key
    assert "prefect.blocks." not in text, "no block values templated into deployments"


def test_local_variant_keeps_everything_but_the_image() -> None:
    local = local_variant(PROJECT)
    assert not local["build"] and not local["push"]
    (pull,) = local["pull"]
    assert pull["prefect.deployments.steps.set_working_directory"]["directory"] == str(REPO_ROOT)
    assert len(deployments(local)) == len(DEPLOYMENTS)
    for mine, theirs in zip(deployments(local), DEPLOYMENTS, strict=True):
        assert "image" not in mine["work_pool"]["job_variables"]
        same = {k: v for k, v in theirs.items() if k != "work_pool"}
        assert {k: v for k, v in mine.items() if k != "work_pool"} == same
        assert mine["work_pool"]["name"] == theirs["work_pool"]["name"]
    PrefectYamlModel.model_validate(local)
