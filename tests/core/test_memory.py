"""Arrow's allocator: jemalloc with immediate purging in every edulake process.

Measured (``python -m bench``, docs/benchmarks.md): Arrow's default allocator kept ~150 MB of
freed pages resident on the 1M-row input; jemalloc with ``dirty_decay_ms:0`` returns
them at once, at the same speed. Arrow reads the choice once, when pyarrow loads, so
these tests start fresh processes the way a worker does.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from edulake.core import memory
from edulake.core.settings import ConfigError, get_settings
from tests.envs import without_edulake

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ENTRYPOINTS = sorted(
    {
        line.split("entrypoint:", 1)[1].strip()
        for line in open(os.path.join(ROOT, "prefect.yaml"), encoding="utf-8")
        if "entrypoint:" in line
    }
)


def _fresh_env(**extra: str) -> dict[str, str]:
    """This environment without the allocator choice this test process made for itself."""
    env = without_edulake()
    for name in (memory.POOL_VARIABLE, memory.JEMALLOC_VARIABLE, memory.CHOICE_VARIABLE):
        env.pop(name, None)
    env.update(PYTHONPATH=ROOT, **extra)
    return env


def _backend_after(code: str, **extra: str) -> str:
    probe = code + "\nimport pyarrow as pa\nprint(pa.default_memory_pool().backend_name)"
    done = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=ROOT,
        env=_fresh_env(**extra),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize("path", sorted({e.split(":")[0] for e in ENTRYPOINTS}))
def test_every_deployment_runs_on_jemalloc(path):
    """Loaded as Prefect's worker loads an entrypoint (by path), before anything else."""
    entry = next(e for e in ENTRYPOINTS if e.startswith(path + ":"))
    code = (
        f"from prefect.flows import load_flow_from_entrypoint\nload_flow_from_entrypoint({entry!r})"
    )
    assert _backend_after(code) == "jemalloc"


def test_the_cli_and_a_plain_import_run_on_jemalloc():
    assert _backend_after("import edulake.cli") == "jemalloc"
    assert _backend_after("import tasks.clever") == "jemalloc"


def test_an_operators_choice_wins():
    assert _backend_after("import edulake", ARROW_DEFAULT_MEMORY_POOL="system") == "system"
    assert _backend_after("import edulake", EDULAKE_ARROW_ALLOCATOR="arrow-default") == "mimalloc"


def test_configure_allocator_sets_arrows_own_switches_only_when_free_to():
    env: dict[str, str] = {}
    assert memory.configure_allocator(env) is True
    assert env == {
        "ARROW_DEFAULT_MEMORY_POOL": "jemalloc",
        "JE_ARROW_MALLOC_CONF": "dirty_decay_ms:10000,muzzy_decay_ms:0",
    }
    purge = {"EDULAKE_ARROW_ALLOCATOR": "jemalloc-purge"}
    assert memory.configure_allocator(purge) is True
    assert purge["JE_ARROW_MALLOC_CONF"] == "dirty_decay_ms:0,muzzy_decay_ms:0"
    mine = {"ARROW_DEFAULT_MEMORY_POOL": "mimalloc"}
    assert memory.configure_allocator(mine) is False and mine == {
        "ARROW_DEFAULT_MEMORY_POOL": "mimalloc"
    }
    tuned = {"JE_ARROW_MALLOC_CONF": "dirty_decay_ms:1000"}
    assert memory.configure_allocator(tuned) is True
    assert tuned["JE_ARROW_MALLOC_CONF"] == "dirty_decay_ms:1000"  # kept


def test_the_settings_know_every_allocator_choice():
    """The setting validates the variable configure_allocator reads: the same choices."""
    from typing import get_args

    from edulake.core.settings import Settings

    choices = set(get_args(Settings.model_fields["arrow_allocator"].annotation))
    assert choices == set(memory.JEMALLOC_CONF) | {"arrow-default"}
    assert Settings.model_fields["arrow_allocator"].default == memory.DEFAULT_CHOICE


def test_no_jemalloc_outside_linux(monkeypatch):
    monkeypatch.setattr(sys, "platform", "darwin")
    env: dict[str, str] = {}
    assert memory.configure_allocator(env) is False and env == {}


def test_processing_settings_reach_the_run(monkeypatch, tmp_path):
    from edulake.sources.clever import pipeline, process

    monkeypatch.setenv("EDULAKE_PROCESSING__WORKERS", "1")
    monkeypatch.setenv("EDULAKE_PROCESSING__BLOCK_MB", "2")
    assert process.read_block_size() == 2 << 20
    seen = {}

    def fake_map(fn, items, workers, name):
        seen["workers"] = workers
        return []

    monkeypatch.setattr(pipeline, "_map", fake_map)
    from edulake.core.lake import Lake
    from edulake.privacy.pseudonym import Pseudonymizer
    from tests.keys import KEY

    lake = Lake(str(tmp_path / "lake"), np_root=str(tmp_path / "np"))
    pipeline.process_pending(lake, [], Pseudonymizer(KEY))
    assert seen["workers"] == 1


@pytest.mark.parametrize(
    ("name", "value"),
    [("PROCESSING__WORKERS", "0"), ("PROCESSING__BLOCK_MB", "100"), ("ARROW_ALLOCATOR", "jemaloc")],
)
def test_a_bad_memory_setting_is_named(monkeypatch, name, value):
    monkeypatch.setenv(f"EDULAKE_{name}", value)
    with pytest.raises(ConfigError, match=f"EDULAKE_{name}"):
        get_settings()


def test_a_child_chooses_its_own_allocator(monkeypatch):
    """What edulake set in this process is not passed on as an operator's choice."""
    here: dict[str, str] = {}
    assert memory.configure_allocator(here) is True  # as at this process's start
    for name, value in here.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(memory, "SET_HERE", here)
    child = memory.child_environment({"EDULAKE_ARROW_ALLOCATOR": "jemalloc-purge"})
    assert child["JE_ARROW_MALLOC_CONF"] == "dirty_decay_ms:0,muzzy_decay_ms:0"
    assert memory.child_environment()["JE_ARROW_MALLOC_CONF"].startswith("dirty_decay_ms:10000")
