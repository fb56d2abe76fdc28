"""Storage faults: S3 throttling and 5xx are retried; exhausted retries fail clearly."""

from __future__ import annotations

import pytest

from edulake.connectors.files import FolderSource
from edulake.core.lake import Lake, S3Options, StorageUnavailableError, Zone
from edulake.sources.clever import pipeline
from tasks.clever import land_files, pseudonymize_reports

from ..clever.helpers import DP_HEADER, write
from ..servers.faulty_s3 import faulty_s3
from .helpers import DP, KEY


def _lake(url: str, **kw) -> Lake:
    opts = S3Options(endpoint_url=url, access_key_id="k", secret_access_key="s", **kw)
    return Lake("s3://bucket/lake", s3=opts)


@pytest.mark.parametrize("status", [503, 500])
def test_throttling_and_5xx_are_retried_by_default(status):
    with faulty_s3(failures=3, status=status) as s3:
        lake = _lake(s3.url)  # the default configuration, as the flow builds it
        assert lake.exists(Zone.STAGE2P, "clever/x.parquet") is False
        assert lake.list(Zone.SYSTEM, "ledger/clever") == []
        assert s3.requests > 3  # the three failures were retried, then it answered


def test_exhausted_retries_fail_the_task_saying_what_to_do():
    with faulty_s3(failures=10_000) as s3:
        lake = _lake(s3.url, max_attempts=3)
        with pytest.raises(StorageUnavailableError) as err:
            pseudonymize_reports.fn(lake, KEY, None, None, 0.01)
        assert s3.requests == 3  # exactly the configured attempts
    msg = str(err.value)
    assert "s3://bucket/lake" in msg and "kept failing after retries" in msg
    assert "What to do" in msg and "re-running the flow is safe" in msg
    assert "503" in msg


def test_exhausted_retries_while_landing_say_what_to_do(tmp_path):
    src = str(tmp_path / "src")
    write(src, DP, DP_HEADER + "\n")
    source = FolderSource(src)
    reports = pipeline.discover(source).reports
    with faulty_s3(failures=10_000) as s3:
        lake = _lake(s3.url, max_attempts=2)
        with pytest.raises(StorageUnavailableError, match="What to do"):
            land_files.fn(lake, source, reports, 1)


def test_non_storage_errors_are_not_disguised(tmp_path):
    lake = Lake(str(tmp_path / "lake"))
    with pytest.raises(Exception) as err:  # a bug stays a bug, not a storage message
        land_files.fn(lake, None, [("not", "a report")], 1)
    assert not isinstance(err.value, StorageUnavailableError)
