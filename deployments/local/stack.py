"""A Prefect server and a process worker on 127.0.0.1, with every edulake deployment.

Used by `python -m deployments.local up|down` and by the integration tests
(tests/servers/prefect_server.py), so the tests exercise the same code a user runs.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from deployments.project import PREFECT_FILE, REPO_ROOT, write_local_variant

HOST = "127.0.0.1"
LOCAL_POOL = "edulake-local"
POOL_VARIABLE = "edulake_work_pool"
EXTRA_LOGGERS = "edulake"  # PREFECT_LOGGING_EXTRA_LOGGERS: ship edulake.* records to the API


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def prefect_executable() -> str:
    """The `prefect` CLI of the running interpreter's environment."""
    beside = Path(sys.executable).parent / "prefect"
    if beside.exists():
        return str(beside)
    found = shutil.which("prefect")
    if found is None:
        raise RuntimeError("the prefect CLI is not installed in this environment")
    return found


# Writing flows take a slot of it before the lake lease (tasks/lease.py): deployments queue
# in the UI instead of waiting inside a Running state (EDULAKE_LEASE__PREFECT_LIMIT).
LAKE_LIMIT = "edulake-lake"
# clever-consortium / clever-backfill-months / rotate-key-months take a slot of it per child in flight
# (tasks/fanout.py); locally two children at a time share the machine.
FANOUT_LIMIT = "edulake-fanout"
FANOUT_SLOTS = 2


class StackError(RuntimeError):
    """The local Prefect stack could not be started or used."""


@dataclass
class LocalStack:
    """One Prefect server + process worker, their state under `home`.

    `home` holds PREFECT_HOME (the server's SQLite database), logs and pid files, so
    `down` can stop exactly the processes `up` started.
    """

    home: Path
    port: int = 4200
    pool: str = LOCAL_POOL
    ui: bool = True
    code_dir: Path = REPO_ROOT
    prefect_file: Path = PREFECT_FILE
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def api_url(self) -> str:
        """The API URL clients and workers use."""
        return f"http://{HOST}:{self.port}/api"

    @property
    def ui_url(self) -> str:
        """Where the Prefect UI is served."""
        return f"http://{HOST}:{self.port}"

    def env(self) -> dict[str, str]:
        """Environment for every prefect process of this stack (own home, own API)."""
        env = {
            key: value
            for key, value in os.environ.items()
            # Never inherit another server's or profile's settings.
            if not key.startswith("PREFECT_")
        }
        env.update(
            {
                "PREFECT_HOME": str(self.home / "prefect-home"),
                "PREFECT_API_URL": self.api_url,
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                "DO_NOT_TRACK": "1",
                # edulake's own loggers (retries, reconnects, per-file errors) reach the UI.
                "PREFECT_LOGGING_EXTRA_LOGGERS": EXTRA_LOGGERS,
                "PREFECT_UI_ENABLED": "true" if self.ui else "false",
                "PREFECT_UI_API_URL": self.api_url,
                # Flow runs import edulake/tasks/flows from the checkout.
                "PYTHONPATH": os.pathsep.join(
                    p for p in (str(self.code_dir), env.get("PYTHONPATH", "")) if p
                ),
            }
        )
        env.update(self.extra_env)
        return env

    # -- processes ---------------------------------------------------------------

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        """Start a detached process (argv, or prefect CLI arguments), logging to <name>.log."""
        self.home.mkdir(parents=True, exist_ok=True)
        log = (self.home / f"{name}.log").open("ab")
        try:
            proc = subprocess.Popen(
                args if args[0] == sys.executable else [prefect_executable(), *args],
                cwd=self.code_dir,
                env=self.env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # Its own process group: `down` stops it and its children, nothing else.
                start_new_session=True,
            )
        finally:
            log.close()
        (self.home / f"{name}.pid").write_text(str(proc.pid), encoding="utf-8")
        return proc

    def start_server(self, timeout: float = 120.0) -> subprocess.Popen[bytes]:
        """Start `prefect server start` on 127.0.0.1 and wait until /api/health answers."""
        if self.healthy():
            raise StackError(f"something already answers on {self.api_url}")
        proc = self._spawn("server", ["server", "start", "--host", HOST, "--port", str(self.port)])
        self.wait_healthy(proc, timeout)
        return proc

    def healthy(self) -> bool:
        """Whether the server answers its health check."""
        try:
            return httpx.get(f"{self.api_url}/health", timeout=2.0).status_code == 200
        except httpx.HTTPError:
            return False

    def wait_healthy(self, proc: subprocess.Popen[bytes], timeout: float) -> None:
        """Poll /api/health until it answers, failing fast if the server exits."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise StackError(
                    f"prefect server exited ({proc.returncode}):\n{self.log_tail('server')}"
                )
            if self.healthy():
                return
            time.sleep(0.5)
        raise StackError(
            f"prefect server not healthy after {timeout:.0f}s:\n{self.log_tail('server')}"
        )

    def start_worker(self) -> subprocess.Popen[bytes]:
        """Start a process worker polling this stack's pool."""
        return self._spawn("worker", ["worker", "start", "--pool", self.pool, "--type", "process"])

    def start_libinsight_demo(self) -> dict[str, str]:
        """Start the bundled LibInsight-compatible server; the settings that point at it.

        Gives the LibInsight deployments something real to fetch from on a laptop. Its
        client secret is the server's public demo secret, not a credential.
        """
        from edulake.demo.libinsight_server import (
            DEMO_CLIENT_ID,
            DEMO_CLIENT_SECRET,
            DEMO_DATASET_ID,
        )

        port = free_port()
        self._spawn(
            "libinsight",
            [
                sys.executable,
                "-m",
                "edulake.demo.libinsight_server",
                "--host",
                HOST,
                "--port",
                str(port),
            ],
        )
        return {
            "EDULAKE_LIBINSIGHT_BASE_URL": f"http://{HOST}:{port}",
            "EDULAKE_LIBINSIGHT_DATASET_ID": str(DEMO_DATASET_ID),
            # The server's second dataset (an instruction log), for the second deployment.
            "EDULAKE_LIBINSIGHT_INSTRUCTION_DATASET_ID": str(DEMO_DATASET_ID + 1),
            "EDULAKE_LIBINSIGHT_CLIENT_ID": DEMO_CLIENT_ID,
            "EDULAKE_LIBINSIGHT_CLIENT_SECRET": DEMO_CLIENT_SECRET,
        }

    def log_tail(self, name: str, lines: int = 40) -> str:
        """The end of a process's log, for error messages."""
        path = self.home / f"{name}.log"
        if not path.exists():
            return "(no log)"
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])

    def stop(self, timeout: float = 30.0) -> list[str]:
        """Stop the worker, then the server, by their recorded process ids."""
        stopped = []
        for name in ("worker", "libinsight", "server"):
            pid_file = self.home / f"{name}.pid"
            if not pid_file.exists():
                continue
            pid = int(pid_file.read_text(encoding="utf-8").strip())
            if _stop_group(pid, timeout):
                stopped.append(name)
            pid_file.unlink()
        return stopped

    # -- configuration -------------------------------------------------------------

    def prefect(self, *args: str, timeout: float = 300.0) -> str:
        """Run a prefect CLI command against this stack; its output, or StackError."""
        return self._run([prefect_executable(), "--no-prompt", *args], timeout)

    def python(self, *args: str, timeout: float = 300.0) -> str:
        """Run this interpreter against this stack (its env, cwd); its output, or StackError."""
        return self._run([sys.executable, *args], timeout)

    def _run(self, command: list[str], timeout: float) -> str:
        """Run a command with this stack's environment; its stdout, or StackError."""
        result = subprocess.run(
            command,
            cwd=self.code_dir,
            env=self.env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if result.returncode != 0:
            raise StackError(
                f"{' '.join(command[:4])} ... failed ({result.returncode}):\n"
                f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
            )
        return result.stdout

    def create_pool(self) -> None:
        """Create (or reset) the process work pool and point the pool variable at it."""
        self.prefect("work-pool", "create", self.pool, "--type", "process", "--overwrite")
        self.prefect("variable", "set", POOL_VARIABLE, self.pool, "--overwrite")

    def create_lake_limit(self, name: str = LAKE_LIMIT, limit: int = 1) -> None:
        """The global concurrency limit writing runs share (one writer per lake, queued);
        also the fan-out limit (children in flight, FANOUT_LIMIT). An existing one is kept."""
        existing = self.prefect("gcl", "ls")
        if name not in existing:
            self.prefect("gcl", "create", name, "--limit", str(limit))

    def create_blocks(self, *flags: str) -> str:
        """Blocks and variables from the environment (`python -m deployments.blocks`).

        Run before `deploy_all`: prefect.yaml's variables are resolved at deploy time.
        The pool variable keeps pointing at this stack's pool.
        """
        saved = dict(self.extra_env)
        self.extra_env["EDULAKE_WORK_POOL"] = self.pool
        try:
            return self.python("-m", "deployments.blocks", *flags)
        finally:
            self.extra_env.clear()
            self.extra_env.update(saved)

    def deploy_all(self, names: tuple[str, ...] = ()) -> str:
        """Deploy every deployment of prefect.yaml (or only ``names``, "flow/deployment")
        to the process pool (no image build)."""
        prefect_file = write_local_variant(
            self.home / "prefect.local.yaml", self.code_dir, self.prefect_file
        )
        which = [arg for name in names for arg in ("--name", name)] or ["--all"]
        return self.prefect("deploy", *which, "--prefect-file", str(prefect_file))


def _stop_group(pid: int, timeout: float) -> bool:
    """SIGTERM a process group we started, SIGKILL it if it lingers; False if gone."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return True
        _reap(pid)
        time.sleep(0.2)
    os.killpg(pid, signal.SIGKILL)
    _reap(pid)
    return True


def _reap(pid: int) -> None:
    """Collect the exit status of our own child, so it does not linger as a zombie."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
