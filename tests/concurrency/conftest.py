"""Concurrency tests: real flow runs in separate processes, overlap forced by pause points.

A run started with ``pause="<point>"`` stops there (edulake.core.faults.pausepoint) while
holding the lake lease; the test starts the other run, waits until it reports that it is
waiting for the lease (``lease.waiting``), then releases the first. Nothing depends on
timing: every step waits for a file the other process wrote.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.envs import without_edulake
from tests.keys import KEY_TEXT, OTHER_KEY_TEXT
from tests.reliability.helpers import REPO

NEW_KEY_TEXT = OTHER_KEY_TEXT  # the key a rotation moves to


@dataclass
class Run:
    """One flow run in a subprocess."""

    proc: subprocess.Popen
    pause_dir: Path
    name: str
    out: str = ""
    err: str = ""

    def reached(self, point: str) -> bool:
        return (self.pause_dir / f"{point}.reached").exists()

    def wait_reached(self, point: str, timeout: float = 600) -> None:
        deadline = time.monotonic() + timeout
        while not self.reached(point):
            if self.proc.poll() is not None:
                self.finish()
                raise AssertionError(
                    f"{self.name} ended ({self.proc.returncode}) before {point}:\n{self.err[-4000:]}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name} never reached {point}")
            time.sleep(0.05)

    def release(self, point: str) -> None:
        (self.pause_dir / f"{point}.release").touch()

    def finish(self, timeout: float = 600) -> int:
        out, err = self.proc.communicate(timeout=timeout)
        self.out += out or ""
        self.err += err or ""
        return self.proc.returncode

    def kill(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()


@dataclass
class Launcher:
    """Starts runs with a shared environment (Prefect server, key, lease timings)."""

    tmp: Path
    env: dict[str, str] = field(default_factory=dict)
    count: int = 0

    def start(
        self,
        *args: str,
        pause: str | None = None,
        note: str = "lease.waiting",
        env: dict[str, str] | None = None,
        module: str = "tests.concurrency.runner",
    ) -> Run:
        self.count += 1
        pause_dir = self.tmp / f"pause-{self.count}"
        pause_dir.mkdir()
        run_env = without_edulake()
        run_env.update(
            {
                "EDULAKE_HMAC_KEY": KEY_TEXT,
                "EDULAKE_LEASE__POLL_S": "0.1",
                "EDULAKE_LEASE__PREFECT_LIMIT": "",
                # the test data is from 2022: stale by design, not what these tests are about
                "EDULAKE_FAIL_REPORT_AGE_DAYS": "100000",
                "EDULAKE_PAUSE_DIR": str(pause_dir),
                "EDULAKE_PAUSE_AT": ",".join(p for p in (pause, note) if p),
                "PREFECT_LOGGING_LEVEL": "WARNING",
                **self.env,
                **(env or {}),
            }
        )
        cmd = [sys.executable, "-m", module, *args] if module else list(args)
        proc = subprocess.Popen(
            cmd, cwd=REPO, env=run_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        return Run(proc, pause_dir, f"run {self.count} ({' '.join(args[:1])})")

    def run(self, *args: str, **kw) -> Run:
        r = self.start(*args, **kw)
        code = r.finish()
        assert code == 0, f"{r.name} failed ({code}):\n{r.err[-4000:]}"
        return r


@pytest.fixture(scope="session")
def prefect_api(tmp_path_factory) -> Iterator[str]:
    """One real Prefect server for the concurrency tests' flow runs."""
    from tests.servers.prefect_server import prefect_server

    with prefect_server(tmp_path_factory.mktemp("prefect-home")) as stack:
        yield stack.api_url


@pytest.fixture
def launcher(tmp_path, prefect_api) -> Launcher:
    return Launcher(tmp_path, env={"PREFECT_API_URL": prefect_api})
