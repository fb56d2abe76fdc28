"""The one clock for "what day is it": every run's *today* comes from :func:`today`.

A run's today is the UTC date (Clever names its report files by UTC day, and a worker in
another time zone must not see a different set of "missing" days). ``EDULAKE_TODAY``
(``YYYY-MM-DD``) pins it: to replay a past morning's run exactly as it ran then, and in
the test suite, which pins it once per session so that a run that crosses midnight UTC
sees the same day as the test that checks it.
"""

from __future__ import annotations

import datetime as dt
import os

from edulake.core.errors import DeterministicError

ENV = "EDULAKE_TODAY"


class ClockError(DeterministicError, ValueError):
    """``EDULAKE_TODAY`` is set but is not a ``YYYY-MM-DD`` date."""


def today() -> dt.date:
    """The run's today: ``EDULAKE_TODAY`` when set, else the current UTC date."""
    pinned = os.environ.get(ENV, "").strip()
    if not pinned:
        return dt.datetime.now(dt.UTC).date()
    try:
        return dt.date.fromisoformat(pinned)
    except ValueError:
        raise ClockError(
            f"{ENV} must be a date as YYYY-MM-DD (it pins the run's today); "
            "unset it to use the current UTC date"
        ) from None


def yesterday() -> dt.date:
    """The last complete day: :func:`today` minus one."""
    return today() - dt.timedelta(days=1)
