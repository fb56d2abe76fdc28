"""A generic, retriable paging task: any API whose paging is a :class:`Paginator` plugs in."""

from __future__ import annotations

from collections.abc import Callable

from prefect.cache_policies import NO_CACHE

from edulake.connectors.http.client import HttpClient
from edulake.connectors.http.paging import FetchStats, Page, Paginator, fetch_consistent
from tasks.common import Progress, edulake_task, logger, retry_if_transient


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
    progress_key: str | None = None,
) -> FetchStats:
    """Fetch every page (page 1, then the rest concurrently); ``paginator`` makes a fresh one.

    A fetch whose pages change under it (totals moved, records missing) starts over up to
    ``restarts`` times; a task retry starts over too. ``on_restart`` runs before each new
    start, including a task retry's, so ``on_page`` state from an abandoned fetch can be
    dropped; what ``on_page`` did must be idempotent (landing is: same bytes, same entry).

    ``progress_key``: a progress artifact of that key follows the pages as they arrive
    (its total is the page count page 1 announces).
    """
    if on_restart is not None:
        on_restart("task started")  # a task retry: forget the failed attempt's pages
    tracked = PageProgress(paginator, progress_key, label) if progress_key else None
    _, stats = fetch_consistent(
        client,
        path,
        tracked.paginator if tracked else paginator,
        restarts=restarts,
        on_restart=tracked.restarted(on_restart) if tracked else on_restart,
        concurrency=concurrency,
        rps=rps,
        on_page=tracked.page(on_page) if tracked else on_page,
        keep=False,
    )
    if tracked:
        tracked.finish()
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


class PageProgress:
    """Follows a fetch in a progress artifact: pages done of the total page 1 announced."""

    def __init__(self, factory: Callable[[], Paginator], key: str, label: str) -> None:
        self._factory = factory
        self._current: Paginator | None = None
        self.bar = Progress(key, 0, f"{label}: pages fetched")

    def paginator(self) -> Paginator:
        """A fresh paginator (the factory fetch_consistent calls on each start)."""
        self._current = self._factory()
        return self._current

    def _total(self) -> int:
        total = getattr(self._current, "total_pages", None)
        return total if isinstance(total, int) else 0

    def page(self, on_page: Callable[[Page], None] | None) -> Callable[[Page], None]:
        """``on_page``, then one page more in the artifact."""

        def wrapped(page: Page) -> None:
            if on_page is not None:
                on_page(page)
            total = self._total()
            if total and self.bar.total != total:
                self.bar.set_total(total)
            self.bar.advance()

        return wrapped

    def restarted(self, on_restart: Callable[[str], None] | None) -> Callable[[str], None]:
        """``on_restart``, then the progress starts over with the fetch."""

        def wrapped(reason: str) -> None:
            if on_restart is not None:
                on_restart(reason)
            self.bar.restart()

        return wrapped

    def finish(self) -> None:
        self.bar.finish()
