"""Typed, described parameters (issue 14): the run form Prefect builds from each flow.

The schema is the one a deployment stores (``parameter_schema(flow.fn)``): enums for the
Literal parameters, a description for every parameter, the test-data options a model."""

from __future__ import annotations

from typing import Any

import pytest
from prefect import Flow
from prefect.utilities.callables import parameter_schema
from pydantic import ValidationError

from deployments.project import deployments, load_entrypoint, load_project
from edulake.demo.clever_testdata import TestDataOptions

DEPLOYMENTS = deployments(load_project())
FLOWS: dict[str, Flow[Any, Any]] = {
    d["entrypoint"]: load_entrypoint(d["entrypoint"]) for d in DEPLOYMENTS
}
# parameter -> the choices the run form must offer, wherever a flow takes it
ENUMS = {
    "source": {("testdata", "folder", "sftp"), ("clever", "libinsight")},
    "catalog": {("duckdb", "glue")},
    "auth_mode": {("form", "basic")},
    "mode": {("select", "unload", "ctas")},
    "fmt": {("parquet", "csv")},
}


def schema_of(flow: Flow[Any, Any]) -> dict[str, Any]:
    return parameter_schema(flow.fn).model_dump_for_openapi()


def enum_of(prop: dict[str, Any], schema: dict[str, Any]) -> tuple[str, ...] | None:
    """The choices of a property: its enum, or the enum of an Optional's non-null branch."""
    for branch in [prop, *prop.get("anyOf", [])]:
        if "$ref" in branch:
            branch = schema["definitions"][branch["$ref"].rsplit("/", 1)[1]]
        if "enum" in branch:
            return tuple(branch["enum"])
    return None


@pytest.mark.parametrize("entrypoint", sorted(FLOWS))
def test_every_parameter_is_described(entrypoint: str) -> None:
    schema = schema_of(FLOWS[entrypoint])
    undescribed = [n for n, p in schema["properties"].items() if not p.get("description")]
    assert not undescribed, f"{entrypoint}: no description for {undescribed}"


@pytest.mark.parametrize("entrypoint", sorted(FLOWS))
def test_choices_are_enums(entrypoint: str) -> None:
    schema = schema_of(FLOWS[entrypoint])
    for name, prop in schema["properties"].items():
        if name in ENUMS:
            assert enum_of(prop, schema) in ENUMS[name], (entrypoint, name, prop)


def test_testdata_is_a_described_model() -> None:
    flow = FLOWS["flows/clever_participation.py:clever_participation"]
    schema = schema_of(flow)
    model = schema["definitions"]["TestDataOptions"]
    assert {"days", "students", "seed", "start"} <= set(model["properties"])
    assert all(p.get("description") for p in model["properties"].values())
    assert model["properties"]["days"]["minimum"] == 1
    assert model.get("additionalProperties") is False  # a misspelt option is refused
    with pytest.raises(ValidationError):
        TestDataOptions.model_validate({"dayz": 3})
    assert TestDataOptions.model_validate({"days": 2}).source().label.startswith("testdata(days=2,")


def test_views_for_offers_the_sources() -> None:
    schema = schema_of(FLOWS["flows/athena_query.py:athena_query"])
    prop = schema["properties"]["views_for"]
    items = next(b for b in prop["anyOf"] if b.get("type") == "array")["items"]
    assert tuple(items["enum"]) == ("clever", "libinsight")


@pytest.mark.parametrize(
    "entry",
    [d for d in DEPLOYMENTS if d["entrypoint"].endswith(":clever_participation")],
    ids=lambda d: d["name"],
)
def test_production_clever_deployments_read_clevers_server(entry: dict[str, Any]) -> None:
    """prefect.yaml is production: its Clever deployments default to sftp, never test data."""
    assert entry["parameters"]["source"] == "sftp"
    assert not entry["parameters"].get("demo")
