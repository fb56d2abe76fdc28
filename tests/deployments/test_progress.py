"""Progress artifacts (issue 14): updated as work advances, throttled, read back from the API."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterId

from tasks.common import Progress

pytestmark = pytest.mark.usefixtures("prefect_harness")


def read(artifact_id: UUID) -> Any:
    """The artifact as the API has it now."""
    with get_client(sync_client=True) as client:
        (art,) = client.read_artifacts(
            artifact_filter=ArtifactFilter(id=ArtifactFilterId(any_=[artifact_id]))
        )
    return art


class Clock:
    """A clock the test moves by hand (the throttle's time)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_progress_is_sent_as_work_advances_and_throttled() -> None:
    seen: list[tuple[float, str]] = []

    @flow
    def work() -> Progress:
        clock = Clock()
        bar = Progress("test-progress", 10, "files done", min_interval=1.0, clock=clock)
        assert bar.artifact_id is not None
        for i in range(10):
            clock.now += 0.4  # an update at most every second: every 2-3 items
            bar.advance()
            art = read(bar.artifact_id)
            seen.append((float(art.data), art.description))
            assert art.flow_run_id is not None  # shown on the run's page
            if i < 9:
                assert float(art.data) < 100.0
        bar.finish()
        return bar

    bar = work()
    values = [v for v, _ in seen]
    assert values == sorted(values) and values[-1] == 100.0
    assert 0.0 < values[2] < 100.0  # sent while the work went on, not only at its end
    assert 3 <= bar.updates <= 5  # throttled: far fewer updates than items
    assert seen[-1][1] == "files done: 10 of 10"


def test_a_total_learnt_late_starts_at_zero_and_finish_is_100() -> None:
    @flow
    def work() -> tuple[float, float, float]:
        bar = Progress("test-progress-late", 0, "pages fetched", min_interval=0.0)
        assert bar.artifact_id is not None
        first = float(read(bar.artifact_id).data)
        bar.set_total(4)
        bar.advance(2)
        middle = float(read(bar.artifact_id).data)
        bar.finish()
        return first, middle, float(read(bar.artifact_id).data)

    first, middle, last = work()
    assert (first, middle, last) == (0.0, 50.0, 100.0)


def test_outside_a_run_nothing_is_sent() -> None:
    bar = Progress("test-progress-plain", 2, "files done", min_interval=0.0)
    bar.advance(2)
    bar.finish()
    assert bar.artifact_id is None and bar.updates == 0 and bar.percent == 100.0
