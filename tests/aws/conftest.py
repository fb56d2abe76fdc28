"""Fixtures for the AWS backend tests: a real S3 server (SeaweedFS) and moto for Glue/Athena."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from edulake.core.lake import S3Options
from tests.servers.seaweedfs import SeaweedS3, seaweedfs

LAKE_BUCKET = "edulake-lake"
NP_BUCKET = "edulake-np"


@pytest.fixture(scope="session")
def s3_server() -> Iterator[SeaweedS3]:
    """One SeaweedFS for the session, with a lake bucket and a separate np bucket."""
    with seaweedfs(buckets=[LAKE_BUCKET, NP_BUCKET]) as server:
        yield server


@pytest.fixture
def s3_options(s3_server: SeaweedS3) -> S3Options:
    return S3Options(
        endpoint_url=s3_server.endpoint_url,
        region=s3_server.region,
        access_key_id=s3_server.access_key,
        secret_access_key=s3_server.secret_key,
    )


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """An in-process moto server (Glue and Athena have no local server) on a free port."""
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def moto(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A clean moto (reset before each test) and fake AWS credentials for boto3."""
    import httpx

    httpx.post(f"{moto_endpoint}/moto-api/reset").raise_for_status()
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    return moto_endpoint


class CallCounter:
    """Counts the AWS API calls a boto3 client makes (registered on its event system)."""

    def __init__(self, client: object) -> None:
        self.calls: list[tuple[str, dict[str, object]]] = []
        client.meta.events.register("provide-client-params.*.*", self._record)  # type: ignore[attr-defined]

    def _record(self, params: dict[str, object], model: object, **_: object) -> None:
        self.calls.append((model.name, dict(params)))  # type: ignore[attr-defined]

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]


@pytest.fixture
def glue_client(moto: str) -> object:
    import boto3

    return boto3.client("glue", endpoint_url=moto, region_name="us-east-1")
