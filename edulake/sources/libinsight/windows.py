"""Date windows: the requested range split into windows the API accepts (at most one year)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass


@dataclass(frozen=True)
class Window:
    """An inclusive date range ``[start, end]``."""

    start: dt.date
    end: dt.date

    def __str__(self) -> str:
        return f"{self.start.isoformat()}..{self.end.isoformat()}"

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1


def add_years(day: dt.date, years: int) -> dt.date:
    """The same calendar day ``years`` later (28 Feb for 29 Feb in a non-leap year)."""
    try:
        return day.replace(year=day.year + years)
    except ValueError:
        return day.replace(year=day.year + years, day=28)


def split_windows(start: dt.date, end: dt.date, max_days: int | None = None) -> list[Window]:
    """Consecutive windows covering ``[start, end]``, each at most a year (or ``max_days``)."""
    if end < start:
        return []
    out = []
    cur = start
    while cur <= end:
        last = (
            cur + dt.timedelta(days=max_days - 1)
            if max_days
            else add_years(cur, 1) - dt.timedelta(days=1)
        )
        out.append(Window(cur, min(last, end)))
        cur = out[-1].end + dt.timedelta(days=1)
    return out


class NoStartError(ValueError):
    """A first run without a start date: say where to start (a backfill)."""


def plan_range(
    *,
    today: dt.date,
    watermark: dt.date | None,
    lookback_days: int,
    from_date: dt.date | None = None,
    to_date: dt.date | None = None,
    initial_from: dt.date | None = None,
) -> Window | None:
    """The range a run fetches: explicit dates (backfill) or watermark minus lookback to yesterday.

    Returns None when there is nothing to fetch (already up to date). A ``to_date`` after
    yesterday is capped at yesterday: a range into the future would move the watermark
    there, and every later run would find itself "up to date" while data arrives.
    """
    yesterday = today - dt.timedelta(days=1)  # today's entries are not final
    end = min(to_date, yesterday) if to_date else yesterday
    if from_date is not None:
        start = from_date
    elif watermark is not None:
        start = watermark + dt.timedelta(days=1) - dt.timedelta(days=max(0, lookback_days))
    elif initial_from is not None:
        start = initial_from
    else:
        raise NoStartError(
            "no watermark yet for this dataset and no from_date: run a backfill first "
            "(from_date=YYYY-MM-DD), or set backfill_from in the dataset config"
        )
    if end < start:
        return None
    return Window(start, end)
