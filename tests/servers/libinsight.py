"""The LibInsight-compatible server as a plain context manager for any test."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from edulake.demo.libinsight_server import LibInsightServer, ServerSettings


@contextmanager
def libinsight_server(**settings: Any) -> Iterator[LibInsightServer]:
    """A running server on 127.0.0.1 (ephemeral port) with the given switches."""
    with LibInsightServer(ServerSettings(**settings)) as server:
        yield server
