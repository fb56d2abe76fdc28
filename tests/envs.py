"""Environments for child processes (a plain module, like tests/keys.py)."""

from __future__ import annotations

import os
from collections.abc import Mapping

KEPT = frozenset({"EDULAKE_TODAY"})  # the session's one today (tests/conftest.py)


def without_edulake(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: this process's environment) without its ``EDULAKE_*`` settings,
    so a child reads only what the test hands it, except the session's pinned today."""
    env = os.environ if base is None else base
    return {k: v for k, v in env.items() if not k.startswith("EDULAKE_") or k in KEPT}
