"""Redaction: URLs, headers, params and free text pass through here before any log or error.

Two complementary defences: by *name* (a header or parameter called ``authorization``,
``client_secret``, ``access_token``... is masked whatever its value) and by *value* (a
:class:`SecretScrubber` knows the live secrets and tokens and masks them wherever they
appear, e.g. echoed back in a server's error message).

A secret travels encoded, and a server or proxy that echoes the request echoes the
encoding, so each registered secret is masked in every form a request carries it
(:func:`encoded_forms`): literal, url-encoded (``quote`` and ``quote_plus``, either case
of the ``%XX`` hex digits), base64 (standard and url-safe, with or without padding) of the
secret and of ``client_id:secret`` (HTTP Basic), and JSON-escaped.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import threading
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl, quote, quote_plus, urlencode, urlsplit, urlunsplit

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


_PAD = "\x00pad"  # marks a base64 form: its ``=`` padding is optional and masked too


def _b64_forms(raw: bytes) -> set[str]:
    """base64 of ``raw`` in both alphabets, without the padding (marked, see ``_PAD``)."""
    return {
        base64.b64encode(raw).decode().rstrip("=") + _PAD,
        base64.urlsafe_b64encode(raw).decode().rstrip("=") + _PAD,
    }


def encoded_forms(secret: str, user: str | None = None) -> set[str]:
    """Every form in which a request may carry ``secret`` (``user``: the HTTP Basic user).

    base64 forms are given without their padding, marked with ``_PAD`` (the scrubber
    masks the padding with them)."""
    forms = {secret, quote(secret), quote(secret, safe=""), quote_plus(secret)}
    forms |= {json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1]}
    forms |= _b64_forms(secret.encode())
    if user is not None:
        pair = f"{user}:{secret}"
        forms |= _b64_forms(pair.encode())
        forms |= {quote(pair, safe=""), quote_plus(pair)}
    return {f for f in forms if f}


def _pattern(form: str) -> str:
    """A regex for a form; its %XX escapes match in either case (servers differ), and a
    base64 form's padding is optional."""
    if form.endswith(_PAD):
        return _pattern(form.removesuffix(_PAD)) + "={0,2}"
    out, i = [], 0
    while i < len(form):
        if form[i] == "%" and re.fullmatch(r"[0-9A-Fa-f]{2}", form[i + 1 : i + 3]):
            out.append("%" + "".join(f"[{c.upper()}{c.lower()}]" for c in form[i + 1 : i + 3]))
            i += 3
        else:
            out.append(re.escape(form[i]))
            i += 1
    return "".join(out)


class SecretScrubber:
    """Masks known secret values (client secrets, live tokens) in any text, in every
    encoding a request carries them (see :func:`encoded_forms`)."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        self._forms: set[str] = set()
        self._regex: re.Pattern[str] | None = None
        for s in secrets:
            self.add(s)

    def add(self, secret: str | None, *, user: str | None = None) -> None:
        """Register a secret; with ``user``, also ``base64(user:secret)`` (HTTP Basic)."""
        # Very short values would mask innocent text and are not secrets worth the name.
        if secret and len(secret) >= 6:
            forms = encoded_forms(secret, user)
            with self._lock:
                if not forms <= self._forms:
                    self._forms |= forms
                    self._regex = None

    def scrub(self, text: str) -> str:
        with self._lock:
            if not self._forms:
                return text
            if self._regex is None:
                # longest first: a form inside a longer one is masked as part of it
                ordered = sorted(self._forms, key=len, reverse=True)
                self._regex = re.compile("|".join(_pattern(f) for f in ordered))
            regex = self._regex
        return regex.sub(MASK, text)


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
