"""Find planted identifiers anywhere a run leaves text: raw, hex, base64, compressed."""

from __future__ import annotations

import base64
import binascii
import bz2
import contextlib
import lzma
import os
import re
import zlib

_B64 = re.compile(rb"[A-Za-z0-9+/_-]{12,}={0,2}")


def _unpacked(data: bytes) -> list[bytes]:
    """``data`` and what it may hide: base64 runs decoded, compressed payloads opened."""
    out = [data]
    for m in _B64.finditer(data):
        run = m.group()
        for decode in (base64.b64decode, base64.urlsafe_b64decode):
            try:
                raw = decode(run + b"=" * (-len(run) % 4))
            except (binascii.Error, ValueError):
                continue
            out.append(raw)
            for open_ in (zlib.decompress, bz2.decompress, lzma.decompress):
                with contextlib.suppress(Exception):  # not this compression
                    out.append(open_(raw))
    return out


def leaked(data: bytes, ids: list[str]) -> set[str]:
    """The ids present in ``data``: as text, as hex, inside base64 or compressed payloads."""
    found = set()
    for blob in _unpacked(data):
        low = blob.lower()
        for i in ids:
            b = i.encode()
            if b in blob or b.hex().encode() in low or i.encode("utf-16-le") in blob:
                found.add(i)
    return found


def leaked_in_tree(root: str, ids: list[str]) -> dict[str, set[str]]:
    """Files under ``root`` holding any of ``ids`` (see :func:`leaked`)."""
    out: dict[str, set[str]] = {}
    for folder, _dirs, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            with open(path, "rb") as f:
                hits = leaked(f.read(), ids)
            if hits:
                out[path] = hits
    return out
