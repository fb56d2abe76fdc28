"""Capture every log line a run writes, whatever its loggers' propagation (for leak checks)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

LOGGERS = ("", "prefect", "httpx", "httpcore", "edulake")


class AllRecords(logging.Handler):
    """Every record's message, at every level."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@contextmanager
def all_log_lines() -> Iterator[AllRecords]:
    """Attach one handler at DEBUG to the root, Prefect's, httpx's and edulake's loggers."""
    handler = AllRecords()
    loggers = [logging.getLogger(n) for n in LOGGERS]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.removeHandler(handler)
            lg.setLevel(level)
