"""Keyed pseudonyms: HMAC-SHA-256(key, value), hex.

Unlike the reference implementation's SHA-256(value || salt) with an empty salt, a keyed
HMAC cannot be reversed by hashing candidate ids without the key. Equal values get equal
pseudonyms across files, runs, reports and sources (the value alone is hashed, not the
column). Blank values stay null.

Work that does not grow with rows does not repeat per row: every value hashed is kept in
a :class:`~edulake.core.strindex.StringIndex` with its pseudonym and a stable integer *code*;
a batch is mapped to codes in one vectorized lookup, only values never seen before are
hashed (once per run), and the pseudonyms are gathered by code in Arrow. The codes also
let :class:`~edulake.privacy.lookup.IdentityTracker` track identities without hashing strings
again.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from edulake.core.strindex import StringIndex

# Clearly labelled: a pseudonym made with this key protects nothing.
DEMO_KEY = b"edulake-DEMO-KEY--not-secret--never-use-for-real-student-data"
MIN_KEY_BYTES = 16


class MissingKeyError(RuntimeError):
    """No pseudonymization key was configured and demo mode is off."""


@dataclass(frozen=True)
class PseudonymKey:
    """The secret key and a public identifier of it (recorded beside every table)."""

    secret: bytes = field(repr=False)
    demo: bool = False

    def __post_init__(self) -> None:
        if len(self.secret) < MIN_KEY_BYTES:
            raise ValueError(f"the pseudonymization key must be at least {MIN_KEY_BYTES} bytes")

    @property
    def key_id(self) -> str:
        """A short public fingerprint of the key: tells keys apart, reveals nothing."""
        digest = hashlib.sha256(b"edulake-key-id\x00" + self.secret).hexdigest()[:16]
        return ("demo-" if self.demo else "") + digest

    @classmethod
    def resolve(cls, secret: str | bytes | None, demo: bool) -> PseudonymKey:
        """The key to use: the configured secret, or the demo key in demo mode only."""
        if secret:
            raw = secret.encode() if isinstance(secret, str) else secret
            return cls(raw, demo=False)
        if demo:
            return cls(DEMO_KEY, demo=True)
        raise MissingKeyError(
            "no pseudonymization key: create a Prefect Secret block (default name "
            "'edulake-hmac-key') or set EDULAKE_HMAC_KEY; for a demo on test data only, "
            "pass demo=True (a labelled, non-secret demo key is used)"
        )


class Pseudonymizer:
    """Computes pseudonyms, hashing each distinct value once; safe to share between threads."""

    def __init__(self, key: PseudonymKey) -> None:
        self._key = key.secret
        self.key_id = key.key_id
        self._index = StringIndex(self._hmac_many, pa.string())
        # HMAC's keyed inner and outer states, computed once (RFC 2104): each value then
        # costs two SHA-256 compressions instead of four, with no key set-up.
        block = hashlib.sha256().block_size
        padded = (
            hashlib.sha256(key.secret).digest() if len(key.secret) > block else key.secret
        ).ljust(block, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in padded))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in padded))

    def __repr__(self) -> str:
        return f"Pseudonymizer(key_id={self.key_id!r}, cached={len(self._index)})"

    def pseudonym(self, value: str) -> str:
        """The pseudonym of one value."""
        return hmac.digest(self._key, value.encode("utf-8"), "sha256").hex()

    def _hmac_many(self, values: list[str]) -> list[str]:
        """HMAC-SHA-256 hex of each value (equal to :meth:`pseudonym`, about 2.5x faster)."""
        inner, outer = self._inner, self._outer
        out = []
        for v in values:
            h = inner.copy()
            h.update(v.encode("utf-8"))
            o = outer.copy()
            o.update(h.digest())
            out.append(o.hexdigest())
        return out

    def pseudonymize(self, values: pa.Array | pa.ChunkedArray) -> pa.Array:
        """Pseudonyms of a string array; nulls (and blanks, see :func:`clean_ids`) stay null."""
        return self.encode(values)[0]

    def encode(self, values: pa.Array | pa.ChunkedArray) -> tuple[pa.Array, pa.Array]:
        """(pseudonyms, codes) of a string array; a code stands for one distinct value.

        Codes are stable for this pseudonymizer's lifetime; nulls stay null in both.
        """
        codes = self._index.codes(values)
        return self._index.payload_of(codes), codes

    def values_of(self, codes: pa.Array | np.ndarray) -> pa.Array:
        """The raw values of codes."""
        return self._index.values_of(codes)

    def pseudonyms_of(self, codes: pa.Array | np.ndarray) -> pa.Array:
        """The pseudonyms of codes."""
        return self._index.payload_of(codes)


def clean_ids(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Identifier values trimmed, with blanks made null (a blank never becomes a pseudonym)."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    trimmed = pc.utf8_trim_whitespace(values)
    return pc.if_else(pc.equal(trimmed, ""), pa.scalar(None, pa.string()), trimmed)
