"""The run `python -m deployments.local up` suggests works after `make demo` (issue 14).

`make demo` writes ./lake with the public demo key; `up` then creates a random key block.
A lake that held the demo key refuses any other key, so the suggested run must handle
the key as the demo does. Here: the command is parsed as printed, its parameters are
decoded as `prefect deployment run --param` decodes them, and the flow runs with them
under the suite's Prefect server, with the block `up` would create in place."""

from __future__ import annotations

import itertools
import json
import secrets
import shlex
from pathlib import Path
from typing import Any

import pytest
from prefect.blocks.system import Secret

from deployments.local.__main__ import main as local_main
from deployments.local.__main__ import suggested_run
from deployments.local.stack import LocalStack, free_port
from deployments.project import REPO_ROOT
from edulake.privacy.keys import DemoKeyError
from flows.clever_participation import clever_participation

pytestmark = pytest.mark.usefixtures("prefect_harness")

TINY = {"days": 1, "students": 20, "teachers": 2, "staff": 1, "schools": 1}


def parse(line: str) -> tuple[dict[str, str], list[str], dict[str, Any]]:
    """(environment, argv, --param values decoded like the prefect CLI: JSON, else text)."""
    words = shlex.split(line)
    env = {}
    while "=" in words[0] and not words[0].startswith("-"):
        name, _, value = words.pop(0).partition("=")
        env[name] = value
    params: dict[str, Any] = {}
    for flag, value in itertools.pairwise(words):
        if flag == "--param":
            name, _, text = value.partition("=")
            try:
                params[name] = json.loads(text)
            except json.JSONDecodeError:
                params[name] = text
    return env, words, params


@pytest.fixture
def stack(tmp_path: Path) -> LocalStack:
    return LocalStack(home=tmp_path / "home", port=free_port())


@pytest.fixture
def up_key_block(monkeypatch: pytest.MonkeyPatch):
    """The random key block `up --generate-hmac-key` leaves; removed after the test."""
    monkeypatch.delenv("EDULAKE_HMAC_KEY", raising=False)
    Secret(value=secrets.token_hex(32)).save("edulake-hmac-key", overwrite=True)
    try:
        yield
    finally:
        Secret.delete("edulake-hmac-key")


def run_as_suggested(params: dict[str, Any]) -> Any:
    deployment = {"source": "sftp", "sftp_block": "edulake-clever-sftp"}  # clever-backfill's
    return clever_participation(**(deployment | params), testdata=TINY, return_state=True)


def test_after_make_demo_the_suggested_run_uses_the_demo_key(
    stack: LocalStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lake = tmp_path / "lake"
    monkeypatch.delenv("EDULAKE_HMAC_KEY", raising=False)
    # what `make demo` does (python -m edulake demo), on a small lake
    clever_participation(source="testdata", lake_root=str(lake), demo=True, testdata=TINY)

    env, argv, params = parse(suggested_run(stack, lake))
    assert env == {"PREFECT_API_URL": stack.api_url}
    prefect = Path(argv[0]) if Path(argv[0]).is_absolute() else REPO_ROOT / argv[0]
    assert prefect.name == "prefect" and prefect.is_file()  # runs without prefect on PATH
    assert argv[1:4] == ["deployment", "run", "clever-participation/clever-backfill"]
    assert argv[-1] == "--watch"
    assert params == {
        "source": "testdata",
        "lake_root": str(lake),
        "demo": True,
        "hmac_key_block": None,
    }

    Secret(value=secrets.token_hex(32)).save("edulake-hmac-key", overwrite=True)
    try:
        state = run_as_suggested(params)
        assert state.is_completed(), state.message
        assert state.result()["landing"] == {"unchanged": 6}  # the demo's files, as they were
        # what `up` used to suggest (the block's key over the demo's lake) is refused
        old = {"source": "testdata", "lake_root": str(lake), "demo": True}
        refused = run_as_suggested(old)
        assert isinstance(refused.result(raise_on_failure=False), DemoKeyError)
    finally:
        Secret.delete("edulake-hmac-key")
    # LibInsight's line: its own source's key record decides (make demo wrote only Clever)
    _, argv, params = parse(suggested_run(stack, lake, "libinsight"))
    assert argv[3] == "libinsight-dataset/libinsight-weekly"
    assert params == {"lake_root": str(lake)}


def test_on_a_fresh_lake_the_suggested_run_uses_ups_key(
    stack: LocalStack, tmp_path: Path, up_key_block: None
) -> None:
    lake = tmp_path / "fresh"
    _, _, params = parse(suggested_run(stack, lake))
    assert params == {"source": "testdata", "lake_root": str(lake)}  # the block's key
    state = run_as_suggested(params)
    assert state.is_completed(), state.message
    assert not state.result()["demo"]


def test_port_is_documented(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        local_main(["--help"])
    assert "--port" in capsys.readouterr().out
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    assert "deployments.local up --port" in readme
