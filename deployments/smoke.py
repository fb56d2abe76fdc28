"""Smoke check: every flow module and every prefect.yaml entrypoint imports.

Run at image build time (`python -m deployments.smoke`) so a broken image never ships.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys

from prefect import Flow

import flows
from deployments.project import PREFECT_FILE, deployments, load_entrypoint, load_project


def flow_modules() -> dict[str, list[str]]:
    """Import every module under flows/ and name the flows each defines."""
    found: dict[str, list[str]] = {}
    for info in pkgutil.iter_modules(flows.__path__, prefix="flows."):
        module = importlib.import_module(info.name)
        found[info.name] = [name for name, obj in vars(module).items() if isinstance(obj, Flow)]
    return found


def main() -> int:
    """Import everything; print a one-line summary per flow; non-zero on any failure."""
    for module, names in sorted(flow_modules().items()):
        print(f"ok  {module}: {', '.join(names) or '(no flows)'}")
    if PREFECT_FILE.exists():
        for entry in deployments(load_project()):
            flow = load_entrypoint(entry["entrypoint"])
            print(f"ok  deployment {entry['name']}: {flow.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
