"""Reusable paging: a small strategy object says what to request; a fetcher does it concurrently.

The paginator (as in dlt's ``rest_client/paginators.py``) holds the paging state: it gives
the first request, learns from each response, and then offers the requests that can be
issued next. A page-number API offers *all* remaining pages once page 1 told the total,
so they are fetched concurrently; a cursor API would offer one next request at a time,
and the same fetcher then walks it sequentially. The fetcher bounds the number of requests
in flight and can cap requests per second; retries live in :class:`HttpClient`.
"""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from edulake.connectors.http.client import HttpClient, HttpError

log = logging.getLogger("edulake.connectors.http")


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


class PageFormatError(ValueError):
    """A page's body lacks what the paginator needs (records, a total), or has the wrong type."""


class PagesChangedError(RuntimeError):
    """The page set changed during a fetch (totals moved, records missing): fetch it again."""


class Paginator(ABC):
    """A paging strategy: first request, state updates from responses, next requests."""

    @abstractmethod
    def first(self) -> PageRequest:
        """The first request."""

    @abstractmethod
    def update(self, request: PageRequest, body: Any) -> None:
        """Learn from a response (totals, cursors); raise if it contradicts earlier pages."""

    @abstractmethod
    def next_requests(self) -> list[PageRequest]:
        """Requests that can be issued now (each offered once); empty when none yet/left."""

    def check(self, body: Any) -> None:  # noqa: B027 - optional hook
        """Raise if a response is an error even though its HTTP status said success."""

    def records(self, body: Any) -> list[Any]:
        """The records in a response."""
        return list(body) if isinstance(body, list) else []

    def where(self, number: int | None = None) -> str:
        """What a message names: the fetch, and the page when there is one."""
        return f"page {number}" if number is not None else "fetch"

    def finish(self, stats: FetchStats) -> None:  # noqa: B027 - optional hook
        """After the last page: fill in what the strategy knows; raise if pages are missing."""


def _dig(body: Any, path: Sequence[str]) -> Any:
    for key in path:
        if not isinstance(body, dict):
            return None
        body = body.get(key)
    return body


_MISSING = object()


def json_kind(value: Any) -> str:
    """A JSON value's kind for a message (never the value: it may be record data)."""
    if value is None:
        return "null"
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), "a number" if isinstance(value, int | float) else type(value).__name__
    )


def dig_strict(body: Any, path: Sequence[str]) -> Any:
    """The value at ``path``, or :class:`PageFormatError` saying which step is missing."""
    for i, key in enumerate(path):
        where = ".".join(path[: i + 1])
        if not isinstance(body, dict):
            parent = ".".join(path[:i]) or "the body"
            raise PageFormatError(
                f"{parent} is {json_kind(body)}, not an object (expected {where})"
            )
        body = body.get(key, _MISSING)
        if body is _MISSING:
            raise PageFormatError(f"{where} is missing")
    return body


def count_of(value: Any, where: str) -> int:
    """A non-negative count from JSON (an integer or a string of digits)."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, float) and value.is_integer() and value >= 0:
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    what = "negative" if isinstance(value, int | float) and not isinstance(value, bool) else None
    raise PageFormatError(f"{where} is {what or json_kind(value)}, not a count")


class PageNumberPaginator(Paginator):
    """1-based page numbers with a total-pages count in every response.

    Every page must repeat the same totals: a total that moves means records were added or
    deleted during the fetch (pages shifted), so :class:`PagesChangedError` asks for a new
    fetch. With ``total_records_path`` and ``id_key``, :meth:`finish` also checks that as
    many distinct records arrived as were announced (a page served twice, or an empty
    page in the middle, would otherwise lose records silently).
    """

    def __init__(
        self,
        params: dict[str, Any] | None = None,
        *,
        page_param: str = "page",
        total_pages_path: Sequence[str] = ("total_pages",),
        records_path: Sequence[str] = ("records",),
        total_records_path: Sequence[str] | None = None,
        id_key: str | None = None,
        first_page: int = 1,
        max_pages: int | None = None,
    ) -> None:
        self.params = dict(params or {})
        self.page_param = page_param
        self.total_pages_path = tuple(total_pages_path)
        self.records_path = tuple(records_path)
        self.total_records_path = tuple(total_records_path) if total_records_path else None
        self.id_key = id_key
        self.first_page = first_page
        self.max_pages = max_pages
        self.total_pages: int | None = None
        self.announced_pages: int | None = None
        self.total_records: int | None = None
        self.received = 0
        self.empty_pages: list[int] = []
        self._ids: set[str] = set()
        self._without_id = 0
        self._offered = False

    def _request(self, n: int) -> PageRequest:
        return PageRequest(n, {**self.params, self.page_param: n})

    def first(self) -> PageRequest:
        return self._request(self.first_page)

    def _totals(self, body: Any) -> tuple[int, int | None]:
        pages = count_of(dig_strict(body, self.total_pages_path), ".".join(self.total_pages_path))
        records = None
        if self.total_records_path is not None:
            value = _dig(body, self.total_records_path)
            if value is not None:  # optional: without it completeness cannot be checked
                records = count_of(value, ".".join(self.total_records_path))
        return pages, records

    def update(self, request: PageRequest, body: Any) -> None:
        pages, records = self._totals(body)
        if self.announced_pages is None:
            self.announced_pages, self.total_records = pages, records
            self.total_pages = pages if self.max_pages is None else min(pages, self.max_pages)
        elif (pages, records) != (self.announced_pages, self.total_records):
            raise PagesChangedError(
                f"the totals changed during the fetch: page {self.first_page} said "
                f"{self.announced_pages} pages/{self.total_records} records, page "
                f"{request.number} says {pages}/{records} (records added or deleted meanwhile)"
            )
        recs = self.records(body)
        self.received += len(recs)
        if not recs and self.total_records != 0:  # an empty range is not an empty page
            self.empty_pages.append(request.number)
        if self.id_key is not None:
            for r in recs:
                rid = r.get(self.id_key) if isinstance(r, dict) else None
                key = str(rid).strip() if rid is not None else ""
                if key:
                    self._ids.add(key)
                else:
                    self._without_id += 1

    def next_requests(self) -> list[PageRequest]:
        if self.total_pages is None or self._offered:
            return []
        self._offered = True
        # total 0 and total 1 both mean "page 1 was everything".
        last = self.first_page + self.total_pages - 1
        return [self._request(n) for n in range(self.first_page + 1, last + 1)]

    def records(self, body: Any) -> list[Any]:
        recs = dig_strict(body, self.records_path)
        if not isinstance(recs, list):
            raise PageFormatError(f"{'.'.join(self.records_path)} is {json_kind(recs)}, not a list")
        return list(recs)

    @property
    def distinct(self) -> int | None:
        """Records that arrived, each id counted once (None: ids are not tracked)."""
        return None if self.id_key is None else len(self._ids) + self._without_id

    def finish(self, stats: FetchStats) -> None:
        stats.announced_records = self.total_records
        stats.empty_pages = sorted(self.empty_pages)
        distinct = self.distinct
        if distinct is None:
            return
        stats.duplicate_ids = self.received - distinct
        capped = self.max_pages is not None and self.total_pages != self.announced_pages
        if self.total_records is not None and distinct < self.total_records and not capped:
            missing = self.total_records - distinct
            why = []
            if stats.duplicate_ids:
                why.append(f"{stats.duplicate_ids} records repeat ids of other pages")
            if stats.empty_pages:
                why.append(f"empty page(s) {', '.join(map(str, stats.empty_pages[:10]))}")
            raise PagesChangedError(
                f"{self.total_records} records announced but {distinct} distinct arrived: "
                f"{missing} missing ({'; '.join(why) or 'short pages'})"
            )


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
    announced_records: int | None = None  # what the API said the total is, if it says
    duplicate_ids: int = 0  # records whose id an earlier record of the fetch already had
    empty_pages: list[int] = field(default_factory=list)
    restarts: int = 0  # fetches started over because the page set changed
    restart_reasons: list[str] = field(default_factory=list)


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
    failure cancels what has not started and is raised, its message prefixed with what
    :meth:`Paginator.where` says about the page (e.g. the dataset, window and page number).
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
        with _naming(paginator, req.number):
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
                    with _naming(paginator, page.number):
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
    with _naming(paginator, None):
        paginator.finish(stats)
    stats.seconds = time.monotonic() - started
    stats.page_numbers.sort()
    return sorted(pages, key=lambda p: p.number), stats


@contextmanager
def _naming(paginator: Paginator, number: int | None) -> Iterator[None]:
    """Prefix a failure's message with the page it is about (same exception type)."""
    try:
        yield
    except HttpError as exc:
        raise type(exc)(
            f"{paginator.where(number)}: {exc}", status=exc.status, url=exc.url
        ) from None
    except (PageFormatError, PagesChangedError) as exc:
        raise type(exc)(f"{paginator.where(number)}: {exc}") from None


def fetch_consistent(
    client: HttpClient,
    path: str,
    make_paginator: Callable[[], Paginator],
    *,
    restarts: int = 2,
    on_restart: Callable[[str], None] | None = None,
    **kwargs: Any,
) -> tuple[list[Page], FetchStats]:
    """:func:`fetch_pages` with a fresh paginator, started over when the pages changed.

    A :class:`PagesChangedError` (totals moved between pages, records missing) means the
    data was edited during the fetch: the whole fetch starts again, up to ``restarts``
    times, then the error is raised. ``on_restart(reason)`` runs before each new start
    (e.g. to forget pages landed by the abandoned one).
    """
    reasons: list[str] = []
    while True:
        try:
            pages, stats = fetch_pages(client, path, make_paginator(), **kwargs)
        except PagesChangedError as exc:
            if len(reasons) >= restarts:
                raise PagesChangedError(
                    f"{exc}; still so after {len(reasons)} new fetch(es): the server's pages "
                    "are inconsistent. Nothing of this fetch was processed; re-run later"
                ) from None
            reasons.append(str(exc))
            log.warning("%s; fetching again (%d/%d)", exc, len(reasons), restarts)
            if on_restart is not None:
                on_restart(str(exc))
            continue
        stats.restarts, stats.restart_reasons = len(reasons), reasons
        return pages, stats
