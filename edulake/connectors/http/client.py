"""A retrying httpx client: backoff with jitter, ``Retry-After``, auth refresh, redaction.

Retried: timeouts, connection errors, 429 and 5xx (exponential backoff with jitter; a
``Retry-After`` from the server wins, and pauses *every* caller sharing the client, so
concurrent workers back off together instead of hammering a throttled server).
A 401 asks the auth provider for a fresh token once or twice. Any other 4xx fails at once
with the server's own message. Every URL, header and message in a log line or an error
goes through :mod:`edulake.connectors.http.redaction` first.
"""

from __future__ import annotations

import email.utils
import json
import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx

from edulake.connectors.http.redaction import SecretScrubber, redact_url
from edulake.core.errors import TransientError

log = logging.getLogger("edulake.connectors.http")


class AuthProvider(Protocol):
    """Something that signs requests and can renew its credentials."""

    def headers(self) -> dict[str, str]:
        """Headers to add to a request (e.g. ``Authorization: Bearer ...``)."""
        ...

    def refresh(self, rejected: Mapping[str, str]) -> bool:
        """The server refused ``rejected`` headers: get new credentials once per rejection.

        Returns whether this call fetched new credentials (False: another worker already
        renewed the refused ones, so the caller simply tries again with the new ones).
        """
        ...


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to retry transient failures."""

    max_attempts: int = 6
    base_delay: float = 0.5
    max_delay: float = 30.0
    jitter: float = 0.5  # share of each delay that is random
    max_retry_after: float = 600.0  # a longer Retry-After is treated as a failure
    retry_statuses: frozenset[int] = field(default=frozenset({408, 425, 429, 500, 502, 503, 504}))
    max_auth_refreshes: int = 2

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """Delay before retry ``attempt`` (1-based): exponential, capped, with jitter."""
        d = min(self.max_delay, self.base_delay * 2.0 ** (attempt - 1))
        return d * (1 - self.jitter) + rng.uniform(0, d * self.jitter)


class HttpError(RuntimeError):
    """A request failed for good; the message is redacted and carries the server's reason."""

    def __init__(self, message: str, *, status: int | None = None, url: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.url = url


class TransientHttpError(HttpError, TransientError):
    """A request kept failing with retriable errors until the attempts ran out."""


class BadBodyError(HttpError):
    """A successful response whose body is not what was asked for (e.g. not JSON)."""


def describe_body(response: httpx.Response) -> str:
    """What a body is, without a byte of its content: its type, size and a likely cause.

    The body itself may hold record data (a truncated JSON page) or a login form: never
    quoted in a message.
    """
    ctype = response.headers.get("Content-Type", "").split(";")[0].strip() or "no content type"
    raw = response.content
    head = raw[:512].lstrip().lower()
    if not raw.strip():
        hint = "an empty body"
    elif head.startswith((b"<!doctype html", b"<html", b"<?xml", b"<")) or "html" in ctype:
        hint = "an HTML/XML page: a login, maintenance or error page?"
    elif head.startswith((b"{", b"[")):
        hint = "JSON cut off or malformed: a truncated response?"
    else:
        hint = "text that is not JSON"
    return f"{ctype}, {len(raw)} bytes; {hint}"


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (now if now is not None else time.time()))


def server_message(response: httpx.Response, limit: int = 300) -> str:
    """The reason a server gave: a JSON ``message``/``error`` field, else the text start."""
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError):
        body = None
    if isinstance(body, dict):
        for k in ("message", "error_description", "error", "errors", "detail"):
            if body.get(k):
                return str(body[k])[:limit]
    return response.text[:limit].strip() or response.reason_phrase


class HttpClient:
    """httpx with retries, shared back-off, auth refresh and redacted logs and errors."""

    def __init__(
        self,
        base_url: str = "",
        *,
        auth: AuthProvider | None = None,
        retry: RetryPolicy | None = None,
        timeout: float = 30.0,
        max_connections: int = 16,
        scrubber: SecretScrubber | None = None,
        sleep: Callable[[float], None] = time.sleep,
        seed: int | None = None,
        headers: Mapping[str, str] | None = None,
        auth_failure: Callable[[httpx.Response], bool] | None = None,
    ) -> None:
        self.auth = auth
        # Some APIs refuse an expired token with HTTP 200 and an error body: let them say so.
        self.auth_failure = auth_failure
        self.retry = retry or RetryPolicy()
        self.scrubber = scrubber or SecretScrubber()
        self._sleep = sleep
        self._rng = random.Random(seed)  # noqa: S311 - jitter, not cryptography
        self._lock = threading.Lock()
        self._pause_until = 0.0
        self.stats: dict[str, int] = {"requests": 0, "retries": 0, "auth_refreshes": 0}
        self._client = httpx.Client(
            base_url=base_url,
            timeout=timeout,
            headers=dict(headers or {}),
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
        )

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    def _count(self, key: str) -> None:
        with self._lock:
            self.stats[key] = self.stats.get(key, 0) + 1

    def pause(self, seconds: float) -> None:
        """Make every caller of this client wait ``seconds`` before its next request."""
        with self._lock:
            self._pause_until = max(self._pause_until, time.monotonic() + seconds)

    def _wait_for_pause(self) -> None:
        with self._lock:
            wait = self._pause_until - time.monotonic()
        if wait > 0:
            self._sleep(wait)

    def _fail(self, msg: str, status: int | None, url: str, transient: bool = False) -> HttpError:
        cls = TransientHttpError if transient else HttpError
        return cls(self.scrubber.scrub(msg), status=status, url=url)

    def request(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, Any] | None = None,
        data: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        use_auth: bool = True,
    ) -> httpx.Response:
        """Send a request, retrying what is transient; returns a 2xx/3xx response or raises."""
        shown = redact_url(str(self._client.build_request(method, url, params=params).url))
        attempt = 0
        refreshes = 0
        while True:
            attempt += 1
            self._wait_for_pause()
            sent = dict(headers or {})
            if use_auth and self.auth is not None:
                sent.update(self.auth.headers())
            self._count("requests")
            log.debug("%s %s (attempt %d)", method, shown, attempt)
            try:
                resp = self._client.request(method, url, params=params, data=data, headers=sent)
            except (httpx.TimeoutException, httpx.TransportError) as exc:
                reason = f"{type(exc).__name__}"
                delay = self.retry.backoff(attempt, self._rng)
                if attempt >= self.retry.max_attempts:
                    raise self._fail(
                        f"{method} {shown} failed after {attempt} attempts: {reason}",
                        None,
                        shown,
                        transient=True,
                    ) from None
                self._retrying(method, shown, attempt, reason, delay)
                continue
            status = resp.status_code
            refused = status == 401 or (
                status < 300 and self.auth_failure is not None and self.auth_failure(resp)
            )
            can_refresh = refreshes < self.retry.max_auth_refreshes
            if refused and use_auth and self.auth is not None and can_refresh:
                log.info("%s %s: token refused (HTTP %d), renewing it", method, shown, status)
                if self.auth.refresh(sent):
                    # Only a token this request itself renewed counts against its limit:
                    # under concurrency others may use up and renew tokens in between.
                    refreshes += 1
                    self._count("auth_refreshes")
                attempt -= 1  # a renewed token is not a retry of a failure
                continue
            if status < 400:
                return resp
            if status not in self.retry.retry_statuses:
                raise self._fail(
                    f"{method} {shown} failed: HTTP {status}: {server_message(resp)}", status, shown
                )
            retry_after = parse_retry_after(resp.headers.get("Retry-After"))
            if retry_after is not None and retry_after > self.retry.max_retry_after:
                raise self._fail(
                    f"{method} {shown}: HTTP {status}, server asks to wait {retry_after:.0f}s "
                    f"(more than {self.retry.max_retry_after:.0f}s): {server_message(resp)}",
                    status,
                    shown,
                    transient=True,
                )
            if attempt >= self.retry.max_attempts:
                raise self._fail(
                    f"{method} {shown} failed after {attempt} attempts: HTTP {status}: "
                    f"{server_message(resp)}",
                    status,
                    shown,
                    transient=True,
                )
            if retry_after is not None:
                self.pause(retry_after)  # everyone waits: the server asked politely
                delay = 0.0
            else:
                delay = self.retry.backoff(attempt, self._rng)
            self._retrying(method, shown, attempt, f"HTTP {status}", delay, retry_after)

    def _retrying(
        self,
        method: str,
        shown: str,
        attempt: int,
        reason: str,
        delay: float,
        retry_after: float | None = None,
    ) -> None:
        self._count("retries")
        why = f"backoff {delay:.2f}s" if retry_after is None else f"Retry-After {retry_after:g}s"
        log.warning("%s %s: %s, retrying (%s, attempt %d)", method, shown, reason, why, attempt)
        if delay > 0:
            self._sleep(delay)

    def get_json(self, url: str, params: Mapping[str, Any] | None = None) -> tuple[Any, bytes]:
        """GET a JSON document; returns it parsed and as the raw bytes received.

        A body that is not JSON (an HTML login or maintenance page served with HTTP 200, a
        truncated document) raises :class:`BadBodyError` naming the URL, the content type
        and the size, never the body: it is not retried (a re-run fetches it again).
        """
        resp = self.request("GET", url, params=params)
        raw = resp.content
        try:
            return json.loads(raw), raw
        except (json.JSONDecodeError, UnicodeDecodeError):
            shown = redact_url(str(resp.request.url))
            msg = (
                f"GET {shown}: HTTP {resp.status_code} but the body is not JSON "
                f"({describe_body(resp)})"
            )
            raise BadBodyError(
                self.scrubber.scrub(msg), status=resp.status_code, url=shown
            ) from None
