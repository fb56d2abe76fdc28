"""The lake lease for a flow run: Prefect's global concurrency limit, then the lake's own lease.

Deployments that write to one lake share the global concurrency limit named by
``EDULAKE_LEASE__PREFECT_LIMIT`` (default ``edulake-lake``; create it once with
``prefect gcl create edulake-lake --limit 1``), so overlapping runs queue visibly in the
UI. The lake lease (edulake.core.lease) is the real guard: it also protects runs that
Prefect's server does not see (a CLI run with a temporary server, a second server).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from prefect.concurrency.sync import concurrency
from prefect.runtime import flow_run

from edulake.core.faults import pausepoint
from edulake.core.lake import Lake
from edulake.core.lease import LakeLease, LeaseConfig
from edulake.core.settings import get_settings
from tasks.common import logger


@contextlib.contextmanager
def hold_lake_lease(lake: Lake, purpose: str) -> Iterator[LakeLease]:
    """Hold the lake for this run's commit section; logs who it waited for and how long."""
    settings = get_settings().lease
    config = LeaseConfig(wait_s=settings.wait_s, ttl_s=settings.ttl_s, poll_s=settings.poll_s)
    log = logger()
    limit = settings.prefect_limit
    with contextlib.ExitStack() as stack:
        if limit:
            stack.enter_context(
                concurrency(limit, occupy=1, timeout_seconds=settings.wait_s, strict=False)
            )
        lease = LakeLease(
            lake, purpose, owner=flow_run.get_id() or "cli", config=config, on_wait=log.info
        )
        lease.acquire()
        stack.callback(lease.release)
        log.info("lake lease taken for %s after waiting %.1f s", purpose, lease.waited_s)
        pausepoint("lease.acquired")
        try:
            yield lease
        finally:
            log.info("lake lease held for %.1f s by %s", lease.held_s, purpose)
