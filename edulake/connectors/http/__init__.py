"""Generic HTTP machinery: a retrying client, redaction, and reusable paging."""

from __future__ import annotations

from edulake.connectors.http.client import (
    BadBodyError,
    HttpClient,
    HttpError,
    RetryPolicy,
    TransientHttpError,
)
from edulake.connectors.http.paging import (
    FetchStats,
    Page,
    PageFormatError,
    PageNumberPaginator,
    PageRequest,
    PagesChangedError,
    Paginator,
    RateLimiter,
    fetch_consistent,
    fetch_pages,
)
from edulake.connectors.http.redaction import (
    SecretScrubber,
    redact_headers,
    redact_params,
    redact_url,
)

__all__ = [
    "BadBodyError",
    "FetchStats",
    "HttpClient",
    "HttpError",
    "Page",
    "PageFormatError",
    "PageNumberPaginator",
    "PageRequest",
    "PagesChangedError",
    "Paginator",
    "RateLimiter",
    "RetryPolicy",
    "SecretScrubber",
    "TransientHttpError",
    "fetch_consistent",
    "fetch_pages",
    "redact_headers",
    "redact_params",
    "redact_url",
]
