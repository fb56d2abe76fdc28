"""Freshness of Clever reports: the warning, the event and the failure before data is lost.

Clever's reports server keeps about two weeks of daily files. If exports stop, or runs
keep failing, data is lost silently once files age out. :func:`check_freshness` turns
what the server offers and what the lake holds for one report into a
:class:`FreshnessReport`:

- the newest report date on the server, its age, and *stale* when older than
  ``max_age_days`` (default 2); *failing* when older than ``fail_age_days`` (default 7)
  or when the server offers none: the run must fail, saying what to do;
- every day after the last landed one (and every hole within the last two weeks) up to
  the expected latest day that is not in the lake, as RANGES of consecutive days: either
  still on the server (land it before Clever deletes it: the *deadline* is when the
  oldest such day falls off) or not there at all (not delivered, or already deleted).

:func:`check_reports` does it per report (daily-participation, resource-usage): one
report can stop while the other still arrives. ``needs_event`` says when the run emits
``edulake.source.stale`` (stale, or days about to fall off the server).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

RETENTION_DAYS = 14  # how long Clever keeps files on its server (approximately)

WHAT_TO_DO = (
    "What to do: check in Clever that the district's report export (SFTP) is still on and "
    "that the source points at the folder holding daily-participation/ and "
    "resource-usage/; ask Clever support to re-deliver missing days still within its "
    f"~{RETENTION_DAYS}-day retention. If a gap is expected (a holiday with exports "
    "paused), run once with a higher fail_report_age_days."
)


@dataclass(frozen=True)
class MissingDay:
    """A report day absent from the lake."""

    day: dt.date
    on_server: bool
    deleted_around: dt.date  # when Clever is expected to remove (or removed) the day's files


@dataclass(frozen=True)
class DayRange:
    """Consecutive missing days with the same status (on the server or not)."""

    first: dt.date
    last: dt.date
    on_server: bool

    @property
    def days(self) -> int:
        return (self.last - self.first).days + 1

    def __str__(self) -> str:
        if self.first == self.last:
            return f"{self.first} (1 day)"
        return f"{self.first}..{self.last} ({self.days} days)"


def day_ranges(days: Iterable[MissingDay]) -> list[DayRange]:
    """Group missing days into ranges of consecutive days with the same status."""
    out: list[DayRange] = []
    for m in sorted(days, key=lambda m: m.day):
        last = out[-1] if out else None
        if last and last.on_server == m.on_server and m.day == last.last + dt.timedelta(days=1):
            out[-1] = DayRange(last.first, m.day, m.on_server)
        else:
            out.append(DayRange(m.day, m.day, m.on_server))
    return out


def ranges_text(ranges: Sequence[DayRange | str], limit: int = 10) -> str:
    """``2022-01-03..2022-01-09 (7 days), 2022-01-12 (1 day)``, never one entry per day.

    ``ranges``: DayRanges, or their text as a run summary holds them (the CLI)."""
    text = ", ".join(str(r) for r in ranges[:limit])
    more = len(ranges) - limit
    return text + (f" and {more} more ranges" if more > 0 else "")


@dataclass(frozen=True)
class FreshnessReport:
    """How fresh one Clever report is, with warnings for the run report."""

    today: dt.date
    max_age_days: int
    newest_available: dt.date | None
    age_days: int | None
    last_landed: dt.date | None
    stale: bool
    missing_days: list[MissingDay] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    report: str | None = None  # daily-participation | resource-usage (None: all reports)
    fail_age_days: int = 7

    @property
    def ok(self) -> bool:
        return not self.warnings

    @property
    def failing(self) -> bool:
        """The run must fail: nothing on the server, or the newest report is too old."""
        return self.age_days is None or self.age_days > self.fail_age_days

    @property
    def missing_ranges(self) -> list[DayRange]:
        return day_ranges(self.missing_days)

    @property
    def at_risk(self) -> list[MissingDay]:
        """Missing days still on the server: lost once Clever deletes them."""
        return [m for m in self.missing_days if m.on_server]

    @property
    def deadline(self) -> dt.date | None:
        """The date the oldest missing day still on the server falls off it."""
        return min((m.deleted_around for m in self.at_risk), default=None)

    @property
    def needs_event(self) -> bool:
        """Emit ``edulake.source.stale``: stale or failing, or days about to fall off."""
        return self.stale or self.failing or bool(self.at_risk)

    @property
    def name(self) -> str:
        return self.report or "Clever reports"

    def event_payload(self) -> dict[str, Any]:
        """The ``edulake.source.stale`` payload: dates and counts only, never row data."""
        return {
            "source": "clever",
            "report": self.report,
            "newest_date": str(self.newest_available) if self.newest_available else None,
            "age_days": self.age_days,
            "max_age_days": self.max_age_days,
            "fail_age_days": self.fail_age_days,
            "stale": self.stale,
            "failing": self.failing,
            "missing_days": len(self.missing_days),
            "missing_ranges": [str(r) for r in self.missing_ranges],
            "on_server_days": len(self.at_risk),
            "deadline": str(self.deadline) if self.deadline else None,
        }

    def as_dict(self) -> dict[str, Any]:
        """A JSON-friendly summary (for flow results and artifacts)."""
        return {
            "report": self.report,
            "newest_on_server": str(self.newest_available) if self.newest_available else None,
            "age_days": self.age_days,
            "max_age_days": self.max_age_days,
            "fail_age_days": self.fail_age_days,
            "stale": self.stale,
            "failing": self.failing,
            "last_landed": str(self.last_landed) if self.last_landed else None,
            "missing_days": len(self.missing_days),
            "missing_ranges": [str(r) for r in self.missing_ranges],
            "deadline": str(self.deadline) if self.deadline else None,
            "warnings": list(self.warnings),
        }

    def headline(self) -> str:
        """A short status for the summary's first line."""
        if self.newest_available is None:
            return f"{self.name}: no report on the server"
        return f"{self.name} stale: newest report {self.newest_available}, {self.age_days} days old"

    def failure_reason(self) -> str:
        """Why this report fails the run: dates and counts only."""
        what = (
            "no report is on the server"
            if self.newest_available is None
            else f"the newest report on the server is for {self.newest_available}, "
            f"{self.age_days} days old (more than fail_report_age_days={self.fail_age_days})"
        )
        missing = (
            f"; missing from the lake: {ranges_text(self.missing_ranges)}"
            if self.missing_days
            else ""
        )
        return f"Clever {self.name}: {what}{missing}."

    def failure_message(self) -> str:
        """Why the run fails and what to do (no row data, no identifiers)."""
        return f"{self.failure_reason()} {WHAT_TO_DO}"

    def status_line(self) -> str:
        """One line for the run report's counts: newest on the server, last landed."""
        newest = (
            f"{self.newest_available} ({self.age_days} days old)"
            if self.newest_available
            else "none"
        )
        prefix = f"{self.report}: " if self.report else ""
        return (
            f"{prefix}newest report on the server {newest}; "
            f"last landed report date {self.last_landed or 'none'}"
        )

    def warning_lines(self) -> list[str]:
        """The warnings, each naming its report (missing days as ranges, never day by day)."""
        prefix = f"{self.report}: " if self.report else ""
        return [f"{prefix}{w}" for w in self.warnings]

    def markdown(self) -> str:
        """Lines for the run's markdown artifact."""
        lines = [f"- {self.status_line()}"]
        lines += [f"- **WARNING** {w}" for w in self.warning_lines()]
        return "\n".join(lines)


def check_freshness(
    available_dates: Iterable[dt.date],
    landed_dates: Iterable[dt.date],
    today: dt.date,
    max_age_days: int = 2,
    *,
    fail_age_days: int = 7,
    report: str | None = None,
    expected_lag_days: int = 1,
    retention_days: int = RETENTION_DAYS,
) -> FreshnessReport:
    """Compare report dates on the server with those in the lake, as of ``today``.

    ``available_dates``: report dates of the files the server offers now.
    ``landed_dates``: report dates the lake holds (the ledger, this run included).
    ``max_age_days``: the newest server report may be this many days old before it is
    stale (a warning and an event); ``fail_age_days``: before the run fails.
    ``expected_lag_days``: day D's report is expected on the server by D + lag (1: a
    morning run expects yesterday's files). Days after ``today - lag`` are never missing.
    """
    if max_age_days < 0 or expected_lag_days < 0 or fail_age_days < 0:
        raise ValueError("max_age_days, fail_age_days and expected_lag_days must be >= 0")
    available = set(available_dates)
    landed = set(landed_dates)
    newest = max(available) if available else None
    age = (today - newest).days if newest else None
    stale = newest is None or (age is not None and age > max_age_days)
    what = f"Clever {report} report" if report else "Clever report"
    warnings: list[str] = []
    if newest is None:
        warnings.append(
            f"no {what} is on the server: check that the district's Clever SFTP export "
            "is enabled and the block points at the right folder"
        )
    elif stale:
        warnings.append(
            f"the newest {what} on the server is for {newest}, {age} days old (more than "
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
            f"({ranges_text(day_ranges(on_server))}): land them before Clever deletes them "
            f"(from about {first})"
        )
    if gone:
        warnings.append(
            f"{len(gone)} report day(s) are neither landed nor on the server "
            f"({ranges_text(day_ranges(gone))}): not delivered by Clever yet, or already deleted"
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
        report=report,
        fail_age_days=fail_age_days,
    )


@dataclass(frozen=True)
class CleverFreshness:
    """Freshness per report, for the run's summary, events and outcome."""

    reports: dict[str, FreshnessReport]

    @property
    def stale(self) -> list[FreshnessReport]:
        return [r for r in self.reports.values() if r.stale]

    @property
    def failing(self) -> list[FreshnessReport]:
        return [r for r in self.reports.values() if r.failing]

    @property
    def warnings(self) -> list[str]:
        return [f"{r.name}: {w}" for r in self.reports.values() for w in r.warnings]

    def headline(self) -> str | None:
        """The summary's first-line status: failing first, then stale; None when fresh."""
        worst = self.failing or self.stale
        return "; ".join(r.headline() for r in worst) if worst else None

    def failure_message(self) -> str | None:
        """Every failing report's reason, then what to do (once)."""
        reasons = [r.failure_reason() for r in self.failing]
        return f"{' '.join(reasons)} {WHAT_TO_DO}" if reasons else None

    def as_dict(self) -> dict[str, Any]:
        return {name: r.as_dict() for name, r in self.reports.items()}

    def markdown(self) -> str:
        return "\n".join(r.markdown() for r in self.reports.values())


def check_reports(
    available: dict[str, set[dt.date]],
    landed: dict[str, set[dt.date]],
    today: dt.date,
    reports: list[str],
    max_age_days: int = 2,
    fail_age_days: int = 7,
) -> CleverFreshness:
    """:func:`check_freshness` for each report seen on the server or in the lake.

    A report never seen anywhere (a district without resource-usage exports) is not
    checked, unless no report was ever seen at all: then every report is, and fails.
    """
    seen = [r for r in reports if available.get(r) or landed.get(r)] or list(reports)
    return CleverFreshness(
        {
            r: check_freshness(
                available.get(r, set()),
                landed.get(r, set()),
                today,
                max_age_days,
                fail_age_days=fail_age_days,
                report=r,
            )
            for r in seen
        }
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
