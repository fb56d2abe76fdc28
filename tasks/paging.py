"""A generic, retriable paging task: any API whose paging is a :class:`Paginator` plugs in."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prefect import Task, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State, TaskRun

from edulake.http.client import HttpClient, TransientHttpError
from edulake.http.paging import FetchStats, Page, Paginator, fetch_pages
from tasks.common import logger


def retry_transient_only(task: Task[..., Any], task_run: TaskRun, state: State[Any]) -> bool:
    """Retry the task only when the client gave up on transient errors (not 4xx, not envelopes)."""
    try:
        state.result()
    except TransientHttpError:
        return True
    except Exception:  # any other failure is permanent: fail fast
        return False
    return False


@task(
    name="fetch-pages",
    retries=2,
    retry_delay_seconds=[30, 120],
    retry_condition_fn=retry_transient_only,
    cache_policy=NO_CACHE,
)
def fetch_all_pages(
    client: HttpClient,
    path: str,
    paginator: Callable[[], Paginator],
    *,
    label: str,
    concurrency: int = 8,
    rps: float | None = None,
    on_page: Callable[[Page], None] | None = None,
) -> FetchStats:
    """Fetch every page (page 1, then the rest concurrently); ``paginator`` makes a fresh one.

    A task retry starts over with a fresh paginator; whatever ``on_page`` did for pages
    fetched before the failure must be idempotent (landing is: same bytes, same ledger entry).
    """
    _, stats = fetch_pages(
        client, path, paginator(), concurrency=concurrency, rps=rps, on_page=on_page, keep=False
    )
    logger().info(
        "%s: %d pages, %d records in %.2fs (concurrency %d%s)",
        label,
        stats.pages,
        stats.records,
        stats.seconds,
        concurrency,
        f", {rps:g} req/s cap" if rps else "",
    )
    return stats
