"""Reusable paging: a small strategy object says what to request; a fetcher does it concurrently.

The paginator (as in dlt's ``rest_client/paginators.py``) holds the paging state: it gives
the first request, learns from each response, and then offers the requests that can be
issued next. A page-number API offers *all* remaining pages once page 1 told the total,
so they are fetched concurrently; a cursor API would offer one next request at a time,
and the same fetcher then walks it sequentially. The fetcher bounds the number of requests
in flight and can cap requests per second; retries live in :class:`HttpClient`.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from edulake.http.client import HttpClient


@dataclass(frozen=True)
class PageRequest:
    """One page to fetch: its number (for ordering and reports) and query parameters."""

    number: int
    params: dict[str, Any]


@dataclass(frozen=True)
class Page:
    """A fetched page: the request, the parsed body, the raw bytes and its records."""

    request: PageRequest
    body: Any
    raw: bytes
    records: list[Any]

    @property
    def number(self) -> int:
        return self.request.number


class Paginator(ABC):
    """A paging strategy: first request, state updates from responses, next requests."""

    @abstractmethod
    def first(self) -> PageRequest:
        """The first request."""

    @abstractmethod
    def update(self, request: PageRequest, body: Any) -> None:
        """Learn from a response (totals, cursors)."""

    @abstractmethod
    def next_requests(self) -> list[PageRequest]:
        """Requests that can be issued now (each offered once); empty when none yet/left."""

    def check(self, body: Any) -> None:  # noqa: B027 - optional hook
        """Raise if a response is an error even though its HTTP status said success."""

    def records(self, body: Any) -> list[Any]:
        """The records in a response."""
        return list(body) if isinstance(body, list) else []


def _dig(body: Any, path: Sequence[str]) -> Any:
    for key in path:
        if not isinstance(body, dict):
            return None
        body = body.get(key)
    return body


class PageNumberPaginator(Paginator):
    """1-based page numbers with a total-pages count in the first response."""

    def __init__(
        self,
        params: dict[str, Any] | None = None,
        *,
        page_param: str = "page",
        total_pages_path: Sequence[str] = ("total_pages",),
        records_path: Sequence[str] = ("records",),
        first_page: int = 1,
        max_pages: int | None = None,
    ) -> None:
        self.params = dict(params or {})
        self.page_param = page_param
        self.total_pages_path = tuple(total_pages_path)
        self.records_path = tuple(records_path)
        self.first_page = first_page
        self.max_pages = max_pages
        self.total_pages: int | None = None
        self._offered = False

    def _request(self, n: int) -> PageRequest:
        return PageRequest(n, {**self.params, self.page_param: n})

    def first(self) -> PageRequest:
        return self._request(self.first_page)

    def update(self, request: PageRequest, body: Any) -> None:
        if self.total_pages is None:
            total = _dig(body, self.total_pages_path)
            try:
                self.total_pages = int(total)
            except (TypeError, ValueError):
                where = ".".join(self.total_pages_path)
                raise ValueError(f"page {request.number}: no total page count at {where}") from None
            if self.max_pages is not None:
                self.total_pages = min(self.total_pages, self.max_pages)

    def next_requests(self) -> list[PageRequest]:
        if self.total_pages is None or self._offered:
            return []
        self._offered = True
        # total 0 and total 1 both mean "page 1 was everything".
        last = self.first_page + self.total_pages - 1
        return [self._request(n) for n in range(self.first_page + 1, last + 1)]

    def records(self, body: Any) -> list[Any]:
        recs = _dig(body, self.records_path)
        return list(recs) if isinstance(recs, list) else []


class RateLimiter:
    """At most ``rps`` request starts per second across threads (None: no cap)."""

    def __init__(self, rps: float | None, clock: Callable[[], float] = time.monotonic) -> None:
        if rps is not None and rps <= 0:
            raise ValueError("requests per second must be positive")
        self.interval = 1.0 / rps if rps else 0.0
        self._clock = clock
        self._next = 0.0
        self._lock = threading.Lock()

    def acquire(self) -> None:
        if not self.interval:
            return
        with self._lock:
            now = self._clock()
            slot = max(now, self._next)
            self._next = slot + self.interval
        if slot > now:
            time.sleep(slot - now)


@dataclass
class FetchStats:
    """What a fetch did (for artifacts and benchmarks)."""

    pages: int = 0
    records: int = 0
    seconds: float = 0.0
    page_numbers: list[int] = field(default_factory=list)


def fetch_pages(
    client: HttpClient,
    path: str,
    paginator: Paginator,
    *,
    concurrency: int = 8,
    rps: float | None = None,
    on_page: Callable[[Page], None] | None = None,
    keep: bool = True,
) -> tuple[list[Page], FetchStats]:
    """Fetch every page the paginator offers: first alone, then up to ``concurrency`` at once.

    ``on_page`` runs in the worker thread right after a page arrives (e.g. to land it), so
    slow storage overlaps with the network too. Pages come back sorted by number. The first
    failure cancels what has not started and is raised.
    """
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    limiter = RateLimiter(rps)
    started = time.monotonic()
    stats = FetchStats()
    pages: list[Page] = []
    issued: set[int] = set()

    def work(req: PageRequest) -> Page:
        limiter.acquire()
        body, raw = client.get_json(path, params=req.params)
        paginator.check(body)
        page = Page(req, body, raw, paginator.records(body))
        if on_page is not None:
            on_page(page)
        return page

    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="page") as pool:
        queue: list[PageRequest] = [paginator.first()]
        running: set[Future[Page]] = set()
        try:
            while queue or running:
                while queue and len(running) < concurrency:
                    req = queue.pop(0)
                    if req.number in issued:
                        continue  # a strategy offering a page twice must not cost a request
                    issued.add(req.number)
                    running.add(pool.submit(work, req))
                done, running = wait(running, return_when=FIRST_COMPLETED)
                for fut in done:
                    page = fut.result()  # raises the worker's error
                    paginator.update(page.request, page.body)
                    queue.extend(paginator.next_requests())
                    stats.pages += 1
                    stats.records += len(page.records)
                    stats.page_numbers.append(page.number)
                    if keep:
                        pages.append(page)
        except BaseException:
            for fut in running:
                fut.cancel()
            raise
    stats.seconds = time.monotonic() - started
    stats.page_numbers.sort()
    return sorted(pages, key=lambda p: p.number), stats
