"""Fixtures for the deployment tests: one real Prefect server shared by the slow tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from deployments.local.stack import LocalStack
from tests.servers.prefect_server import prefect_server


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """A real Prefect server on 127.0.0.1 (free port, own PREFECT_HOME) for the session."""
    with prefect_server(tmp_path_factory.mktemp("prefect")) as running:
        yield running
