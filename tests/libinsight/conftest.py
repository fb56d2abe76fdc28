from __future__ import annotations

import pytest

from edulake.connectors.http.client import RetryPolicy
from edulake.demo.libinsight_server import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, LibInsightServer
from edulake.privacy.pseudonym import Pseudonymizer
from edulake.sources.libinsight.api import LibInsightClient
from tests.keys import LIBINSIGHT_KEY as KEY
from tests.servers.libinsight import libinsight_server

FAST = RetryPolicy(base_delay=0.01, max_delay=0.05, max_attempts=6)


@pytest.fixture
def server():
    with libinsight_server() as srv:
        yield srv


@pytest.fixture
def make_client():
    """A client factory for a server (closed at teardown)."""
    clients: list[LibInsightClient] = []

    def make(srv: LibInsightServer, **kw) -> LibInsightClient:
        kw.setdefault("retry", FAST)
        c = LibInsightClient(srv.base_url, DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, **kw)
        clients.append(c)
        return c

    yield make
    for c in clients:
        c.close()


@pytest.fixture
def pseudonymizer() -> Pseudonymizer:
    """LibInsight's tests pseudonymize with their own key."""
    return Pseudonymizer(KEY)
