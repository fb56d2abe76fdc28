"""Generic HTTP machinery: a retrying client, redaction, and reusable paging."""

from __future__ import annotations

from edulake.http.client import HttpClient, HttpError, RetryPolicy, TransientHttpError
from edulake.http.paging import (
    FetchStats,
    Page,
    PageNumberPaginator,
    PageRequest,
    Paginator,
    RateLimiter,
    fetch_pages,
)
from edulake.http.redaction import SecretScrubber, redact_headers, redact_params, redact_url

__all__ = [
    "FetchStats",
    "HttpClient",
    "HttpError",
    "Page",
    "PageNumberPaginator",
    "PageRequest",
    "Paginator",
    "RateLimiter",
    "RetryPolicy",
    "SecretScrubber",
    "TransientHttpError",
    "fetch_pages",
    "redact_headers",
    "redact_params",
    "redact_url",
]
