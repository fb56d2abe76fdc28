"""A generic, retriable paging task: any API whose paging is a :class:`Paginator` plugs in."""

from __future__ import annotations

from collections.abc import Callable

from prefect.cache_policies import NO_CACHE

from edulake.connectors.http.client import HttpClient
from edulake.connectors.http.paging import FetchStats, Page, Paginator, fetch_consistent
from tasks.common import edulake_task, logger, retry_if_transient


@edulake_task(
    name="fetch-pages",
    retries=2,
    retry_delay_seconds=[30, 120],
    retry_condition_fn=retry_if_transient,
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
    on_restart: Callable[[str], None] | None = None,
    restarts: int = 2,
) -> FetchStats:
    """Fetch every page (page 1, then the rest concurrently); ``paginator`` makes a fresh one.

    A fetch whose pages change under it (totals moved, records missing) starts over up to
    ``restarts`` times; a task retry starts over too. ``on_restart`` runs before each new
    start, including a task retry's, so ``on_page`` state from an abandoned fetch can be
    dropped; what ``on_page`` did must be idempotent (landing is: same bytes, same entry).
    """
    if on_restart is not None:
        on_restart("task started")  # a task retry: forget the failed attempt's pages
    _, stats = fetch_consistent(
        client,
        path,
        paginator,
        restarts=restarts,
        on_restart=on_restart,
        concurrency=concurrency,
        rps=rps,
        on_page=on_page,
        keep=False,
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
    log = logger()
    for why in stats.restart_reasons:
        log.warning("%s: fetched again because %s", label, why)
    if stats.duplicate_ids:
        log.warning("%s: %d records repeat an id of another page", label, stats.duplicate_ids)
    if stats.empty_pages:
        log.warning("%s: empty page(s) %s", label, ", ".join(map(str, stats.empty_pages)))
    return stats
