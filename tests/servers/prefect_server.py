"""A real Prefect server (and optionally a process worker) on 127.0.0.1, for tests.

    with prefect_server(tmp_path) as stack:      # free port, own PREFECT_HOME
        stack.create_pool(); stack.deploy_all(); stack.start_worker()
        stack.prefect("deployment", "run", ...)  # CLI calls get PREFECT_API_URL

Built on deployments.local.stack.LocalStack, the code behind `python -m deployments.local up`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from deployments.local.stack import LocalStack, free_port


@contextmanager
def prefect_server(
    home: Path, *, extra_env: dict[str, str] | None = None, timeout: float = 180.0
) -> Iterator[LocalStack]:
    """Start a Prefect server in `home` on a free port; stop it (and any worker) on exit."""
    stack = LocalStack(
        home=home,
        port=free_port(),
        ui=False,
        extra_env={
            # Workers poll and the scheduler runs every few seconds, not every 10-60 s.
            "PREFECT_WORKER_QUERY_SECONDS": "2",
            "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "2",
            **(extra_env or {}),
        },
    )
    try:
        stack.start_server(timeout=timeout)
        yield stack
    finally:
        stack.stop()
