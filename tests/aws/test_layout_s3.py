"""An s3:// lake without an np root keeps one bucket, and every run says so loudly."""

from __future__ import annotations

import logging
import uuid

import pytest

from tasks.common import make_lake
from tests.aws.conftest import LAKE_BUCKET, NP_BUCKET
from tests.servers.seaweedfs import SeaweedS3

pytestmark = pytest.mark.slow


@pytest.fixture
def s3_env(s3_server: SeaweedS3, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "EDULAKE_S3__ENDPOINT_URL": s3_server.endpoint_url,
        "EDULAKE_S3__REGION": s3_server.region,
        "EDULAKE_S3__ACCESS_KEY_ID": s3_server.access_key,
        "EDULAKE_S3__SECRET_ACCESS_KEY": s3_server.secret_key,
    }.items():
        monkeypatch.setenv(name, value)


@pytest.mark.usefixtures("s3_env")
def test_an_s3_lake_without_np_root_warns_at_run_start(caplog):
    root = f"s3://{LAKE_BUCKET}/{uuid.uuid4().hex}"
    with caplog.at_level(logging.WARNING, logger="edulake"):
        lake = make_lake(root, None)
    assert lake.protected.uri == lake.main.uri  # the same bucket, by prefix
    assert any("NO NP ROOT" in r.getMessage() for r in caplog.records)


@pytest.mark.usefixtures("s3_env")
def test_an_s3_lake_with_an_np_root_does_not_warn(caplog):
    run = uuid.uuid4().hex
    with caplog.at_level(logging.WARNING, logger="edulake"):
        lake = make_lake(f"s3://{LAKE_BUCKET}/{run}", f"s3://{NP_BUCKET}/{run}")
    assert lake.protected.uri != lake.main.uri
    assert not any("NO NP ROOT" in r.getMessage() for r in caplog.records)
