"""Read prefect.yaml and derive the image-less variant used on a local process pool."""

from __future__ import annotations

import copy
import importlib
from pathlib import Path
from typing import Any

import yaml
from prefect import Flow

REPO_ROOT = Path(__file__).resolve().parent.parent
PREFECT_FILE = REPO_ROOT / "prefect.yaml"


def load_project(path: Path = PREFECT_FILE) -> dict[str, Any]:
    """The parsed prefect.yaml (a mapping with build/push/pull and deployments)."""
    with path.open(encoding="utf-8") as fh:
        data = yaml.safe_load(fh)
    if not isinstance(data, dict):
        raise ValueError(f"{path} is not a YAML mapping")
    return data


def deployments(project: dict[str, Any]) -> list[dict[str, Any]]:
    """The deployment entries of a parsed prefect.yaml."""
    entries = project.get("deployments") or []
    if not isinstance(entries, list):
        raise ValueError("prefect.yaml: 'deployments' must be a list")
    return entries


def load_entrypoint(entrypoint: str) -> Flow[Any, Any]:
    """Import the flow an entrypoint (`path/to/module.py:function`) names, strictly.

    Unlike prefect's loader this never falls back to a placeholder flow: a missing
    dependency or a typo fails here, at build or test time, not in a scheduled run.
    """
    path, _, attr = entrypoint.rpartition(":")
    if not path.endswith(".py") or not attr:
        raise ValueError(f"entrypoint {entrypoint!r} is not 'path/to/module.py:flow'")
    module = importlib.import_module(path[: -len(".py")].replace("/", "."))
    obj = getattr(module, attr)
    if not isinstance(obj, Flow):
        raise TypeError(f"entrypoint {entrypoint!r} is not a Prefect flow")
    return obj


def local_variant(project: dict[str, Any], code_dir: Path = REPO_ROOT) -> dict[str, Any]:
    """prefect.yaml for a process pool: no image build/push, code run from `code_dir`.

    Everything else (names, entrypoints, parameters, schedules, triggers, concurrency,
    pool names) is kept as is, so the local server runs exactly what production runs.
    """
    local = copy.deepcopy(project)
    local["build"] = None
    local["push"] = None
    local["pull"] = [
        {"prefect.deployments.steps.set_working_directory": {"directory": str(code_dir)}}
    ]
    for entry in deployments(local):
        for action in ("build", "push", "pull"):
            entry.pop(action, None)
        pool = entry.get("work_pool")
        if isinstance(pool, dict):
            job_variables = dict(pool.get("job_variables") or {})
            # The image (and other container settings) mean nothing to a process worker.
            for key in ("image", "image_pull_policy", "cpu", "memory"):
                job_variables.pop(key, None)
            pool["job_variables"] = job_variables
    return local


class _PlainDumper(yaml.SafeDumper):
    """A YAML dumper that writes shared values out in full (no &anchors/*aliases)."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def write_local_variant(
    dest: Path, code_dir: Path = REPO_ROOT, source: Path = PREFECT_FILE
) -> Path:
    """Write the local variant of prefect.yaml (`source`) to `dest`, outside the repository."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.dump(
        local_variant(load_project(source), code_dir), Dumper=_PlainDumper, sort_keys=False
    )
    dest.write_text(
        "# Generated from prefect.yaml by deployments.project.local_variant; do not edit.\n" + text,
        encoding="utf-8",
    )
    return dest
