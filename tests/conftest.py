"""Shared fixtures. Server fixtures live in tests/servers/; area fixtures in each folder."""

from __future__ import annotations

import datetime as dt
import io
import logging
import os
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from edulake.core.lake import Lake
from edulake.privacy.pseudonym import Pseudonymizer
from tests.keys import KEY

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
# Never let a developer's environment leak a real key or lake into tests.
for var in [v for v in os.environ if v.startswith("EDULAKE_")]:
    del os.environ[var]
# One "today" for the whole session (edulake.core.clock): a run that crosses midnight UTC
# must see the same day as the test that computed its expectations.
os.environ["EDULAKE_TODAY"] = dt.datetime.now(dt.UTC).date().isoformat()


class _CurrentStderr(io.TextIOBase):
    """Whatever sys.stderr is when a line is written (pytest swaps it per test)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


@pytest.fixture(autouse=True)
def _console_to_this_test() -> None:
    """Prefect's console handlers keep the stderr of the moment they were made (a test's
    capture, closed once it ends: later lines would be "Logging error ... I/O operation on
    closed file"). Every test has them write to the stderr of the moment, as a real
    process's do. (Whether there are any yet still depends on the tests before: Prefect
    adds them when it first sets up logging in the process.)"""
    from prefect.logging.handlers import PrefectConsoleHandler

    for lg in [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]:
        for h in getattr(lg, "handlers", []):
            if isinstance(h, PrefectConsoleHandler) and not isinstance(h.stream, _CurrentStderr):
                h.stream = _CurrentStderr()
                h.console.file = h.stream


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """One Prefect test server for the whole session (it takes ~13 s to start)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture
def lake(tmp_path) -> Lake:
    """A local lake with its protected zones under a separate root."""
    return Lake(str(tmp_path / "lake"), np_root=str(tmp_path / "np"))


@pytest.fixture
def pseudonymizer() -> Pseudonymizer:
    """Pseudonyms under the test key (``KEY``; a folder's conftest may use another)."""
    return Pseudonymizer(KEY)


@pytest.fixture
def captured_events(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Events emitted through Prefect's real emit path, captured by its asserting client
    (``AssertingEventsClient.last.events`` after ``worker.drain()``)."""
    from prefect.events.clients import AssertingEventsClient
    from prefect.events.worker import EventsWorker

    worker = EventsWorker.instance(AssertingEventsClient)
    monkeypatch.setattr(EventsWorker, "instance", lambda *_a, **_k: worker)
    yield worker
    worker.drain()


@pytest.fixture
def li_server() -> Iterator[Any]:
    """The local LibInsight stand-in (tests/servers/libinsight.py), for one test."""
    from tests.servers.libinsight import libinsight_server

    with libinsight_server() as srv:
        yield srv
