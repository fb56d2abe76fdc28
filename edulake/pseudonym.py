"""Keyed pseudonyms: HMAC-SHA-256(key, value), hex.

Unlike the reference implementation's SHA-256(value || salt) with an empty salt, a keyed
HMAC cannot be reversed by hashing candidate ids without the key. Equal values get equal
pseudonyms across files, runs, reports and sources (the value alone is hashed, not the
column). Blank values stay null.

Work that does not grow with rows does not repeat per row: each batch is dictionary-
encoded, only values never seen before are hashed, and the pseudonyms are gathered back
by index in Arrow.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

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
    """Computes pseudonyms with a cache of values already hashed."""

    def __init__(self, key: PseudonymKey) -> None:
        self._key = key.secret
        self.key_id = key.key_id
        self._cache: dict[str, str] = {}

    def __repr__(self) -> str:
        return f"Pseudonymizer(key_id={self.key_id!r}, cached={len(self._cache)})"

    def pseudonym(self, value: str) -> str:
        hit = self._cache.get(value)
        if hit is None:
            hit = hmac.new(self._key, value.encode("utf-8"), hashlib.sha256).hexdigest()
            self._cache[value] = hit
        return hit

    def pseudonymize(self, values: pa.Array | pa.ChunkedArray) -> pa.Array:
        """Pseudonyms of a string array; nulls (and blanks, see :func:`clean_ids`) stay null."""
        if isinstance(values, pa.ChunkedArray):
            values = values.combine_chunks()
        encoded = pc.dictionary_encode(values)
        dictionary = encoded.dictionary.to_pylist()
        pseudo = pa.array([self.pseudonym(v) for v in dictionary], type=pa.string())
        return pc.take(pseudo, encoded.indices)


def clean_ids(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Identifier values trimmed, with blanks made null (a blank never becomes a pseudonym)."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    trimmed = pc.utf8_trim_whitespace(values)
    return pc.if_else(pc.equal(trimmed, ""), pa.scalar(None, pa.string()), trimmed)
