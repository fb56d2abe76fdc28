"""Redaction: URLs, headers, params and free text pass through here before any log or error.

Two complementary defences: by *name* (a header or parameter called ``authorization``,
``client_secret``, ``access_token``... is masked whatever its value) and by *value* (a
:class:`SecretScrubber` knows the live secrets and tokens and masks them wherever they
appear, e.g. echoed back in a server's error message).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

MASK = "***"

_SENSITIVE = re.compile(
    r"(authorization|token|secret|password|passwd|api[-_]?key|apikey|signature|credential|"
    r"session|cookie|client[-_]?assertion|x-amz-security)",
    re.IGNORECASE,
)


def is_sensitive(name: str) -> bool:
    """Whether a header/parameter/field name is one whose value must never be shown."""
    return bool(_SENSITIVE.search(name))


def redact_params(params: Mapping[str, Any] | None) -> dict[str, Any]:
    """Query or form parameters with sensitive values masked."""
    return {k: (MASK if is_sensitive(k) else v) for k, v in (params or {}).items()}


def redact_headers(headers: Mapping[str, str] | Iterable[tuple[str, str]] | None) -> dict[str, str]:
    """Headers with sensitive values masked (``Authorization: Bearer ***``)."""
    items = headers.items() if isinstance(headers, Mapping) else (headers or [])
    out: dict[str, str] = {}
    for k, v in items:
        if k.lower() == "authorization" and " " in v:
            out[k] = v.split(" ", 1)[0] + " " + MASK  # keep the scheme: useful when debugging
        elif is_sensitive(k):
            out[k] = MASK
        else:
            out[k] = v
    return out


def redact_url(url: str) -> str:
    """A URL without userinfo and with sensitive query parameters masked."""
    parts = urlsplit(str(url))
    netloc = parts.netloc.rsplit("@", 1)[-1] if "@" in parts.netloc else parts.netloc
    query = urlencode(
        [(k, MASK if is_sensitive(k) else v) for k, v in parse_qsl(parts.query, True)],
        safe="*",
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


class SecretScrubber:
    """Masks known secret values (client secrets, live tokens) in any text."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        self._secrets: set[str] = set()
        for s in secrets:
            self.add(s)

    def add(self, secret: str | None) -> None:
        # Very short values would mask innocent text and are not secrets worth the name.
        if secret and len(secret) >= 6:
            with self._lock:
                self._secrets.add(secret)

    def scrub(self, text: str) -> str:
        with self._lock:
            secrets = sorted(self._secrets, key=len, reverse=True)
        for s in secrets:
            if s in text:
                text = text.replace(s, MASK)
        return text


class ScrubFilter(logging.Filter):
    """A logging filter that masks known secrets in records (for third-party loggers too)."""

    def __init__(self, scrubber: SecretScrubber) -> None:
        super().__init__()
        self.scrubber = scrubber

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        clean = self.scrubber.scrub(text)
        if clean != text:
            record.msg, record.args = clean, None
        return True
