"""Fixtures for the AWS backend tests: a real S3 server (SeaweedFS) and moto for Glue/Athena."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from edulake.lake import S3Options
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
