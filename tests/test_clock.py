"""The one clock: a pinned today, the UTC default, and a clear error for a bad pin."""

from __future__ import annotations

import datetime as dt

import pytest

from edulake.core import clock


def test_a_pinned_today_is_every_runs_today(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(clock.ENV, "2024-02-29")
    assert clock.today() == dt.date(2024, 2, 29)
    assert clock.yesterday() == dt.date(2024, 2, 28)


def test_unpinned_today_is_the_utc_date(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(clock.ENV, raising=False)
    before = dt.datetime.now(dt.UTC).date()
    got = clock.today()
    assert got in {before, dt.datetime.now(dt.UTC).date()}


def test_a_bad_pin_says_what_to_write(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(clock.ENV, "12/01/2026")
    with pytest.raises(clock.ClockError, match="YYYY-MM-DD") as err:
        clock.today()
    assert "12/01/2026" not in str(err.value)


def test_the_suite_pins_one_today_for_the_session() -> None:
    """tests/conftest.py pins it, so runs that cross midnight agree with their tests."""
    import os

    assert os.environ.get(clock.ENV) == clock.today().isoformat()
