"""Per-run cost flat in history on S3 (SeaweedFS): a no-op run's state reads do not grow.

The same measurement as tests/core/test_history.py, on the suite's S3 server: landing
(every file unchanged), the pending check and the end-of-run compaction make the same
requests after 10 days of history as after 100.
"""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from edulake.connectors.files import FolderSource
from edulake.core.counting import count_requests
from edulake.core.lake import Lake, S3Options
from edulake.core.landing import Ledger
from edulake.demo.clever_testdata import TestDataSource
from edulake.demo.history import synthesize_history
from edulake.privacy.pseudonym import Pseudonymizer
from edulake.sources.clever import pipeline
from tests.aws.conftest import LAKE_BUCKET, NP_BUCKET
from tests.keys import KEY

pytestmark = pytest.mark.slow

PARAMS = {"days": 1, "students": 20, "teachers": 2, "staff": 1, "schools": 1}


def state_run(lake: Lake, src: FolderSource) -> tuple[int, int]:
    """Land and process as the flow does (no catalog): (landed, processed)."""
    landed = pipeline.land_reports(lake, src, pipeline.discover(src).reports, concurrency=2)
    done = pipeline.process_pending(lake, pipeline.pending(lake), Pseudonymizer(KEY))
    return sum(1 for r in landed if r.landed), len(done.files)


def test_noop_run_requests_flat_in_history_on_s3(s3_options: S3Options, tmp_path):
    src = FolderSource(TestDataSource(**PARAMS, cache_dir=str(tmp_path / "src")).ensure_generated())
    counts = []
    for days in (10, 100):
        run = uuid.uuid4().hex[:8]
        lake = Lake(f"s3://{LAKE_BUCKET}/{run}", f"s3://{NP_BUCKET}/{run}", s3=s3_options)
        synthesize_history(lake, days, dt.date(2022, 1, 2))
        assert state_run(lake, src) == (6, 6)  # lists and reads the history once, compacts
        assert len(Ledger(lake, "clever").entries()) == days * 6 + 6
        with count_requests(lake) as counter:
            assert state_run(lake, src) == (0, 0)
        counts.append(counter.snapshot())
    assert counts[0] == counts[1]
    assert sum(counts[0].values()) < 60, counts[0]
