"""Freshness of Clever reports: the early warning before Clever deletes unlanded files.

Clever's reports server keeps about two weeks of daily files. If exports stop, or runs
keep failing, data is lost silently once files age out. :func:`check_freshness` turns
what the server offers and what the lake holds into a report with plain warnings:

- the newest report date on the server, its age, and *stale* when older than allowed;
- every day after the last landed one (and every hole within the last two weeks) up to
  the expected latest day that is not in the lake: either still on the server (land it before Clever deletes it, around the date
  given) or not there at all (Clever did not deliver it, or already deleted it).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

RETENTION_DAYS = 14  # how long Clever keeps files on its server (approximately)


@dataclass(frozen=True)
class MissingDay:
    """A report day absent from the lake."""

    day: dt.date
    on_server: bool
    deleted_around: dt.date  # when Clever is expected to remove (or removed) the day's files


@dataclass(frozen=True)
class FreshnessReport:
    """How fresh the Clever reports are, with warnings for the run report."""

    today: dt.date
    max_age_days: int
    newest_available: dt.date | None
    age_days: int | None
    last_landed: dt.date | None
    stale: bool
    missing_days: list[MissingDay] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.warnings

    def as_dict(self) -> dict[str, Any]:
        """A JSON-friendly summary (for flow results and artifacts)."""
        return {
            "newest_on_server": str(self.newest_available) if self.newest_available else None,
            "age_days": self.age_days,
            "max_age_days": self.max_age_days,
            "stale": self.stale,
            "last_landed": str(self.last_landed) if self.last_landed else None,
            "missing_days": [str(m.day) for m in self.missing_days],
            "warnings": list(self.warnings),
        }

    def markdown(self) -> str:
        """Lines for the run's markdown artifact."""
        newest = (
            f"{self.newest_available} ({self.age_days} days old)"
            if self.newest_available
            else "none"
        )
        lines = [
            f"- newest report on the server: {newest}; "
            f"last landed report date: {self.last_landed or 'none'}"
        ]
        lines += [f"- **WARNING** {w}" for w in self.warnings]
        return "\n".join(lines)


def check_freshness(
    available_dates: Iterable[dt.date],
    landed_dates: Iterable[dt.date],
    today: dt.date,
    max_age_days: int = 2,
    *,
    expected_lag_days: int = 1,
    retention_days: int = RETENTION_DAYS,
) -> FreshnessReport:
    """Compare report dates on the server with those in the lake, as of ``today``.

    ``available_dates``: report dates of the files the server offers now.
    ``landed_dates``: report dates the lake holds (the ledger, this run included).
    ``max_age_days``: the newest server report may be this many days old before it is stale.
    ``expected_lag_days``: day D's report is expected on the server by D + lag (1: a
    morning run expects yesterday's files). Days after ``today - lag`` are never missing.
    """
    if max_age_days < 0 or expected_lag_days < 0:
        raise ValueError("max_age_days and expected_lag_days must be >= 0")
    available = set(available_dates)
    landed = set(landed_dates)
    newest = max(available) if available else None
    age = (today - newest).days if newest else None
    stale = newest is None or (age is not None and age > max_age_days)
    warnings: list[str] = []
    if newest is None:
        warnings.append(
            "no Clever report is on the server: check that the district's Clever SFTP export "
            "is enabled and the block points at the right folder"
        )
    elif stale:
        warnings.append(
            f"the newest Clever report on the server is for {newest}, {age} days old (more than "
            f"{max_age_days}): Clever may have stopped exporting; its files are deleted after "
            f"about {retention_days} days"
        )
    missing = _missing_days(available, landed, today, expected_lag_days, retention_days)
    on_server = [m for m in missing if m.on_server]
    gone = [m for m in missing if not m.on_server]
    if on_server:
        first = min(m.deleted_around for m in on_server)
        warnings.append(
            f"{len(on_server)} report day(s) are on the server but not landed "
            f"({_days(on_server)}): land them before Clever deletes them (from about {first})"
        )
    if gone:
        warnings.append(
            f"{len(gone)} report day(s) are neither landed nor on the server ({_days(gone)}): "
            "not delivered by Clever yet, or already deleted"
        )
    return FreshnessReport(
        today=today,
        max_age_days=max_age_days,
        newest_available=newest,
        age_days=age,
        last_landed=max(landed) if landed else None,
        stale=stale,
        missing_days=missing,
        warnings=warnings,
    )


def _missing_days(
    available: set[dt.date],
    landed: set[dt.date],
    today: dt.date,
    lag: int,
    retention: int,
) -> list[MissingDay]:
    """Report days up to ``today - lag`` that are not landed.

    Scanned: every day after the last landed one, and holes before it within the
    retention window (older holes cannot be recovered from the server any more). With
    nothing landed yet, every day from the oldest on the server.
    """
    if landed:
        last = max(landed)
        window_start = today - dt.timedelta(days=retention)
        start = max(min(landed), min(last + dt.timedelta(days=1), window_start))
    elif available:
        start = min(available)
    else:
        return []
    end = today - dt.timedelta(days=lag)
    out = []
    day = start
    while day <= end:
        if day not in landed:
            out.append(MissingDay(day, day in available, day + dt.timedelta(days=retention)))
        day += dt.timedelta(days=1)
    return out


def _days(days: list[MissingDay], limit: int = 10) -> str:
    text = ", ".join(str(m.day) for m in days[:limit])
    return text + (f" and {len(days) - limit} more" if len(days) > limit else "")
