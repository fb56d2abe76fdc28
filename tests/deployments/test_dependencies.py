"""Dependencies declared for what the code imports (issue 14).

Every third-party module the runtime code (edulake/, tasks/, flows/, deployments/)
imports comes from a distribution pyproject.toml lists as a runtime dependency, so the
image (which installs only those) has it; and pandas, used by the benchmark alone, is
not in the runtime set."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

from deployments.project import REPO_ROOT

RUNTIME_DIRS = ("edulake", "tasks", "flows", "deployments")
LOCAL = {"edulake", "tasks", "flows", "deployments", "bench", "tests"}


def declared(group: list[str]) -> set[str]:
    """Distribution names of requirement strings, normalized (PEP 503)."""
    return {re.split(r"[\[<>=!~; ]", r, maxsplit=1)[0].lower().replace("_", "-") for r in group}


def imported_modules() -> dict[str, list[str]]:
    """Top-level third-party modules imported anywhere in the runtime code -> where."""
    found: dict[str, list[str]] = {}
    for folder in RUNTIME_DIRS:
        for path in sorted((REPO_ROOT / folder).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.split(".")[0]
                    if top not in sys.stdlib_module_names and top not in LOCAL:
                        found.setdefault(top, []).append(str(path.relative_to(REPO_ROOT)))
    return found


PROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
RUNTIME = declared(PROJECT["dependencies"])


def test_every_imported_module_is_a_declared_runtime_dependency() -> None:
    dists = packages_distributions()
    missing = {}
    for module, where in imported_modules().items():
        names = {d.lower().replace("_", "-") for d in dists.get(module, [module])}
        if not names & RUNTIME:
            missing[module] = (sorted(names), where[:2])
    assert not missing, f"imported but not declared in [project].dependencies: {missing}"


def test_numpy_and_cryptography_declared_pandas_only_for_the_benchmark() -> None:
    assert {"numpy", "cryptography"} <= RUNTIME
    assert "pandas" not in RUNTIME
    assert "pandas" not in imported_modules()
    extras = PROJECT["optional-dependencies"]
    assert "pandas" in declared(extras["bench"]) and "pandas" in declared(extras["dev"])
    assert any("import pandas" in p.read_text() for p in Path(REPO_ROOT / "bench").glob("*.py"))
