"""The freshness calendar's days: landed, missing, stale, about to be deleted (pure logic)."""

from __future__ import annotations

import datetime as dt

from edulake.report.clever import CALENDAR_DAYS, freshness_rows
from edulake.report.text import bar, bar_lines
from edulake.sources.clever.freshness import check_reports

D = dt.date
REPORT = "daily-participation"


def _calendar(available: set[dt.date], landed: set[dt.date], today: dt.date):
    fresh = check_reports({REPORT: available}, {REPORT: landed}, today, [REPORT])
    rows, notes = freshness_rows(fresh, {REPORT: landed}, today)
    return {dt.date.fromisoformat(r["date"]): r["status"] for r in rows}, notes


def test_each_day_has_its_status():
    today = D(2026, 3, 20)
    landed = {D(2026, 3, d) for d in (1, 2, 3, 5, 6)}  # 4 missing, never delivered
    on_server = landed | {D(2026, 3, d) for d in (7, 8)}  # 7, 8 delivered, not landed
    days, notes = _calendar(on_server, landed, today)
    assert days[D(2026, 3, 1)] == "landed"
    assert days[D(2026, 3, 4)] == "missing"
    assert days[D(2026, 3, 7)] == days[D(2026, 3, 8)] == "about to be deleted"
    # after the newest report on the server, the source is stale (8 > 2 days old)
    assert {days[D(2026, 3, d)] for d in range(9, 20)} == {"stale"}
    assert max(days) == D(2026, 3, 19)  # yesterday: today's report is not expected yet
    assert min(days) == D(2026, 3, 1)
    assert notes == []


def test_old_data_shows_its_own_weeks_and_says_what_is_cut():
    """Test data from 2022 seen in 2026: the calendar shows the data and two weeks after
    it, and one note for the rest (never one line per day)."""
    landed = {D(2022, 1, 3) + dt.timedelta(days=i) for i in range(30)}
    days, notes = _calendar(set(), landed, D(2026, 12, 1))
    assert min(days) == D(2022, 1, 3)
    assert max(days) == D(2022, 2, 1) + dt.timedelta(days=14)
    assert len(days) <= CALENDAR_DAYS
    assert len(notes) == 1 and "more day(s) up to 2026-11-30 without a report" in notes[0]


def test_bars_are_proportional():
    assert bar(10, 10, width=8) == "█" * 8
    assert bar(5, 10, width=8) == "█" * 4
    assert bar(1, 16, width=2) == "▏"
    assert bar(0, 10) == ""
    lines = bar_lines([("a", 4), ("bb", 2), ("c", None)], width=4)
    assert lines == ["a   ████ 4", "bb  ██   2", "c        suppressed"]
