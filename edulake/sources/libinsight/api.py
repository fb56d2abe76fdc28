"""The LibInsight API client: token, data-grid paging over date windows."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from typing import Any

import httpx

from edulake.connectors.http.client import HttpClient, HttpError, RetryPolicy
from edulake.connectors.http.paging import (
    FetchStats,
    Page,
    PageFormatError,
    PageNumberPaginator,
    fetch_consistent,
    json_kind,
)
from edulake.connectors.http.redaction import ScrubFilter, SecretScrubber
from edulake.sources.libinsight.auth import AuthMode, ClientCredentials
from edulake.sources.libinsight.windows import Window

API = "/v1.0"
_THIRD_PARTY_LOGGERS = ("httpx", "httpcore")
_AUTH_WORDS = re.compile(r"token|unauthori[sz]ed|not authenticated|expired", re.IGNORECASE)


class LibInsightError(HttpError):
    """LibInsight answered with ``{"type": "error"}`` (possibly with HTTP 200)."""


def _envelope_message(body: Any) -> str:
    """The reason an error envelope gives: text fields only (a payload may hold records)."""
    if isinstance(body, dict):
        keys = ("message", "error", "errors") + (
            ("payload",) if body.get("type") == "error" else ()
        )
        for k in keys:
            v = body.get(k)
            if isinstance(v, list) and v and all(isinstance(x, str) for x in v):
                v = "; ".join(v)
            if isinstance(v, str) and v.strip():
                return v.strip()[:300]
    return "no message"


def is_expired_token_envelope(resp: httpx.Response) -> bool:
    """An error envelope that means "your token is no good" (renew it, do not fail)."""
    if "json" not in resp.headers.get("Content-Type", ""):
        return False
    try:
        body = resp.json()
    except ValueError:
        return False
    return (
        isinstance(body, dict)
        and body.get("type") == "error"
        and bool(_AUTH_WORDS.search(_envelope_message(body)))
    )


class DataGridPaginator(PageNumberPaginator):
    """Pages of ``custom-dataset/{id}/data-grid`` for one window; checks the envelope."""

    def __init__(
        self,
        window: Window,
        *,
        request_id: int | str | None = None,
        extra_params: dict[str, Any] | None = None,
        scrubber: SecretScrubber | None = None,
        describe: str = "",
    ) -> None:
        params: dict[str, Any] = {
            "from": window.start.isoformat(),
            "to": window.end.isoformat(),
            **(extra_params or {}),
        }
        if request_id is not None and str(request_id) != "":
            params["request_id"] = request_id
        super().__init__(
            params,
            total_pages_path=("payload", "total_pages"),
            records_path=("payload", "records"),
            total_records_path=("payload", "total_records"),
            id_key="_id",
        )
        self.window = window
        self.scrubber = scrubber or SecretScrubber()
        self.describe = describe

    def where(self, number: int | None = None) -> str:
        page = f" page {number}" if number is not None else ""
        return f"{self.describe or 'LibInsight'} window {self.window}{page}".strip()

    def check(self, body: Any) -> None:
        """``type: success`` passes; an error envelope or another shape raises."""
        if not isinstance(body, dict):
            raise PageFormatError(
                f"the body is {json_kind(body)}, not a LibInsight envelope "
                '({"type": ..., "payload": ...})'
            )
        kind = body.get("type")
        if kind == "success":
            return
        if kind == "error" or "message" in body or "error" in body:
            msg = self.scrubber.scrub(_envelope_message(body))
            raise LibInsightError(f"LibInsight returned an error: {msg}")
        raise PageFormatError(
            "the envelope's type is "
            + ("missing" if kind is None else "not 'success' or 'error'")
            + ": not a LibInsight data-grid response"
        )


class LibInsightClient:
    """A LibInsight instance: authenticated, retrying, redacting."""

    def __init__(
        self,
        base_url: str,
        client_id: str,
        client_secret: str,
        *,
        auth_mode: AuthMode = "form",
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        max_connections: int = 16,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        base = base_url.rstrip("/")
        if base.endswith(API):
            base = base[: -len(API)]
        self.base_url = base
        self.scrubber = SecretScrubber([client_secret])
        self.auth = ClientCredentials(
            f"{API}/oauth/token", client_id, client_secret, mode=auth_mode, scrubber=self.scrubber
        )
        self.http = HttpClient(
            base,
            auth=self.auth,
            retry=retry,
            timeout=timeout,
            max_connections=max_connections,
            scrubber=self.scrubber,
            sleep=sleep,
            auth_failure=is_expired_token_envelope,
            headers={"Accept": "application/json", "User-Agent": "edulake-libinsight"},
        )
        self.auth.http = self.http
        # httpx logs every request itself: make sure a live token could never show there.
        self._filter = ScrubFilter(self.scrubber)
        for name in _THIRD_PARTY_LOGGERS:
            logging.getLogger(name).addFilter(self._filter)

    def __repr__(self) -> str:
        return f"LibInsightClient({self.base_url!r}, client_id={self.auth.client_id!r})"

    def __enter__(self) -> LibInsightClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()
        for name in _THIRD_PARTY_LOGGERS:
            logging.getLogger(name).removeFilter(self._filter)

    def data_grid_request(
        self, dataset_id: int, window: Window, request_id: int | str | None = None
    ) -> tuple[str, Callable[[], DataGridPaginator]]:
        """The data grid's path and a factory of fresh paginators for one window."""

        def paginator() -> DataGridPaginator:
            return DataGridPaginator(
                window,
                request_id=request_id,
                scrubber=self.scrubber,
                describe=f"dataset {dataset_id}",
            )

        return f"{API}/custom-dataset/{int(dataset_id)}/data-grid", paginator

    def data_grid(
        self,
        dataset_id: int,
        window: Window,
        *,
        request_id: int | str | None = None,
        concurrency: int = 8,
        rps: float | None = None,
        on_page: Callable[[Page], None] | None = None,
        keep: bool = True,
        restarts: int = 2,
        on_restart: Callable[[str], None] | None = None,
    ) -> tuple[list[Page], FetchStats]:
        """Every page of a custom dataset's data grid for one window (at most one year).

        A page set that changes during the fetch is fetched again (see
        :func:`~edulake.connectors.http.paging.fetch_consistent`).
        """
        path, paginator = self.data_grid_request(dataset_id, window, request_id)
        return fetch_consistent(
            self.http,
            path,
            paginator,
            restarts=restarts,
            on_restart=on_restart,
            concurrency=concurrency,
            rps=rps,
            on_page=on_page,
            keep=keep,
        )
