"""Freshness of Clever reports: stale server, missing days, files about to be deleted."""

from __future__ import annotations

import datetime as dt

import pytest

from edulake.sources.clever.freshness import check_freshness

TODAY = dt.date(2024, 3, 20)


def days(*offsets: int) -> list[dt.date]:
    """Dates ``offset`` days before TODAY."""
    return [TODAY - dt.timedelta(days=o) for o in offsets]


def test_fresh_and_complete() -> None:
    everything = days(*range(1, 15))
    r = check_freshness(everything, everything, TODAY, max_age_days=2)
    assert r.newest_available == TODAY - dt.timedelta(days=1)
    assert r.age_days == 1
    assert not r.stale
    assert r.missing_days == []
    assert r.ok
    assert r.as_dict()["warnings"] == []


def test_stale_server_warns_with_date_and_age() -> None:
    old = days(*range(5, 15))
    r = check_freshness(old, old, TODAY, max_age_days=2)
    assert r.stale
    assert r.age_days == 5
    assert any("2024-03-15, 5 days old (more than 2)" in w for w in r.warnings)
    # days after the last landed one, up to yesterday, are missing and not on the server
    assert [m.day for m in r.missing_days] == days(4, 3, 2, 1)
    assert not any(m.on_server for m in r.missing_days)
    assert any("neither landed nor on the server" in w for w in r.warnings)


def test_age_at_limit_is_not_stale() -> None:
    r = check_freshness(days(2), days(2), TODAY, max_age_days=2, expected_lag_days=2)
    assert not r.stale
    assert r.ok


def test_on_server_but_not_landed_warns_before_deletion() -> None:
    available = days(*range(1, 15))
    landed = days(*range(4, 15))  # the last three days failed to land
    r = check_freshness(available, landed, TODAY)
    assert [m.day for m in r.missing_days] == days(3, 2, 1)
    assert all(m.on_server for m in r.missing_days)
    assert r.missing_days[0].deleted_around == TODAY - dt.timedelta(days=3) + dt.timedelta(days=14)
    assert any("on the server but not landed" in w and "2024-03-31" in w for w in r.warnings)
    assert not r.stale


def test_hole_in_the_middle_is_reported() -> None:
    available = days(*range(1, 15))
    landed = [d for d in available if d != TODAY - dt.timedelta(days=6)]
    r = check_freshness(available, landed, TODAY)
    assert [m.day for m in r.missing_days] == days(6)
    assert r.missing_days[0].on_server


def test_holes_older_than_retention_are_not_repeated_forever() -> None:
    landed = days(*range(1, 15), *range(31, 40))  # a hole 15..30 days ago: long gone
    r = check_freshness(days(*range(1, 15)), landed, TODAY)
    assert r.missing_days == []


def test_today_and_lag_days_never_missing() -> None:
    r = check_freshness(days(2, 3), days(2, 3), TODAY, expected_lag_days=1)
    assert [m.day for m in r.missing_days] == days(1)
    r = check_freshness(days(2, 3), days(2, 3), TODAY, expected_lag_days=2)
    assert r.missing_days == []


def test_nothing_on_server() -> None:
    r = check_freshness([], [], TODAY)
    assert r.stale
    assert r.newest_available is None
    assert r.age_days is None
    assert any("no Clever report is on the server" in w for w in r.warnings)
    assert "none" in r.markdown()


def test_nothing_landed_yet_counts_server_days() -> None:
    r = check_freshness(days(3, 2, 1), [], TODAY)
    assert [m.day for m in r.missing_days] == days(3, 2, 1)
    assert all(m.on_server for m in r.missing_days)


def test_long_outage_lists_every_day_since_last_landed() -> None:
    landed = days(*range(30, 40))
    r = check_freshness(days(*range(1, 15)), landed, TODAY)
    assert [m.day for m in r.missing_days] == days(*range(29, 0, -1))
    assert sum(m.on_server for m in r.missing_days) == 14
    assert "**WARNING**" in r.markdown()


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        check_freshness([], [], TODAY, max_age_days=-1)


# -- ranges, deadline, failing, per report (issue 13) -----------------------------------
STALE_TODAY = dt.date(2026, 12, 1)
OLD = dt.date(2022, 1, 5)  # 1,791 days before STALE_TODAY


def test_missing_days_are_ranges_never_one_line_per_day() -> None:
    r = check_freshness([OLD], [OLD], STALE_TODAY, fail_age_days=7, report="daily-participation")
    assert r.age_days == 1791
    assert len(r.missing_days) == 1790
    assert [str(x) for x in r.missing_ranges] == ["2022-01-06..2026-11-30 (1790 days)"]
    text = " ".join(r.warnings)
    assert "2022-01-06..2026-11-30 (1790 days)" in text
    assert "2022-01-07" not in text  # no day-by-day list
    assert r.failing and r.stale
    payload = r.event_payload()
    assert payload["missing_ranges"] == ["2022-01-06..2026-11-30 (1790 days)"]
    assert payload["newest_date"] == "2022-01-05" and payload["age_days"] == 1791
    assert payload["deadline"] is None  # nothing left on the server to save
    assert "fail_report_age_days=7" in r.failure_message()
    assert "What to do" in r.failure_message()


def test_ranges_split_by_holes_and_status() -> None:
    available = days(1, 2, 5)
    landed = days(9, 10)
    r = check_freshness(available, landed, TODAY)
    assert [str(x) for x in r.missing_ranges] == [
        f"{TODAY - dt.timedelta(days=8)}..{TODAY - dt.timedelta(days=6)} (3 days)",
        f"{TODAY - dt.timedelta(days=5)} (1 day)",
        f"{TODAY - dt.timedelta(days=4)}..{TODAY - dt.timedelta(days=3)} (2 days)",
        f"{TODAY - dt.timedelta(days=2)}..{TODAY - dt.timedelta(days=1)} (2 days)",
    ]
    assert [x.on_server for x in r.missing_ranges] == [False, True, False, True]


def test_deadline_is_when_the_oldest_day_on_the_server_falls_off() -> None:
    available = days(*range(1, 15))
    landed = days(*range(6, 15))
    r = check_freshness(available, landed, TODAY)
    assert r.deadline == TODAY - dt.timedelta(days=5) + dt.timedelta(days=14)
    assert r.needs_event and not r.stale and not r.failing
    assert r.event_payload()["deadline"] == str(r.deadline)


def test_fresh_report_needs_no_event() -> None:
    everything = days(*range(1, 15))
    r = check_freshness(everything, everything, TODAY)
    assert not r.needs_event and not r.failing


def test_stale_but_under_the_fail_threshold() -> None:
    r = check_freshness(days(4), days(4), TODAY, max_age_days=2, fail_age_days=7)
    assert r.stale and r.needs_event and not r.failing
    r = check_freshness(days(8), days(8), TODAY, max_age_days=2, fail_age_days=7)
    assert r.failing
    r = check_freshness(days(7), days(7), TODAY, max_age_days=2, fail_age_days=7)
    assert not r.failing  # at the limit


def test_check_reports_per_report() -> None:
    from edulake.sources.clever.freshness import check_reports
    from edulake.sources.clever.names import FOLDERS

    fresh = check_reports(
        {"daily-participation": set(days(1)), "resource-usage": set(days(9))},
        {},
        TODAY,
        FOLDERS,
    )
    assert [r.report for r in fresh.failing] == ["resource-usage"]
    assert fresh.headline() == (
        f"resource-usage stale: newest report {TODAY - dt.timedelta(days=9)}, 9 days old"
    )
    # a report never seen anywhere is not checked ...
    only_dp = check_reports({"daily-participation": set(days(1))}, {}, TODAY, FOLDERS)
    assert list(only_dp.reports) == ["daily-participation"] and not only_dp.failing
    # ... unless nothing was ever seen: then every report fails
    nothing = check_reports({}, {}, TODAY, FOLDERS)
    assert [r.report for r in nothing.failing] == FOLDERS
    assert "no report on the server" in (nothing.headline() or "")


def test_failing_below_the_warning_threshold_still_emits() -> None:
    r = check_freshness(days(4), days(4), TODAY, max_age_days=5, fail_age_days=3)
    assert r.failing and not r.stale and r.needs_event
