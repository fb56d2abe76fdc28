"""Fan-out arithmetic: backfill windows, and what a finished child run reports back.

Plain functions under the fan-out flows (flows/clever_consortium.py,
flows/clever_backfill.py): the flows launch one ``clever-participation`` child run per
district or per window with Prefect's ``run_deployment``; this module cuts a date range
into windows and turns a child's final state and artifacts into one row of the parent's
table. Nothing here talks to Prefect.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from edulake.core.settings import ConfigError


@dataclass(frozen=True)
class Window:
    """An inclusive range of report dates, one child run's share of a backfill."""

    label: str  # "2024-08" or "2024-08..2024-10"
    start: dt.date
    end: dt.date


def _month_start(day: dt.date, months: int = 0) -> dt.date:
    index = day.year * 12 + day.month - 1 + months
    return dt.date(index // 12, index % 12 + 1, 1)


def month_windows(start: dt.date, end: dt.date, months_per_child: int = 1) -> list[Window]:
    """Calendar months (``months_per_child`` at a time) covering ``start..end``, clipped."""
    if end < start:
        raise ConfigError("report_to is before report_from")
    if months_per_child < 1:
        raise ConfigError("months_per_child must be at least 1")
    out = []
    first = _month_start(start)
    while first <= end:
        nxt = _month_start(first, months_per_child)
        last_month = _month_start(first, months_per_child - 1)
        label = f"{first:%Y-%m}" if months_per_child == 1 else f"{first:%Y-%m}..{last_month:%Y-%m}"
        out.append(Window(label, max(first, start), min(nxt - dt.timedelta(days=1), end)))
        first = nxt
    return out


def windows_of(days: list[dt.date], months_per_child: int = 1) -> list[Window]:
    """The month windows (``months_per_child`` at a time) that hold at least one of
    ``days`` (e.g. landed report dates): a rotation's children, none for an empty month."""
    if not days:
        return []
    windows = month_windows(min(days), max(days), months_per_child)
    return [w for w in windows if any(w.start <= d <= w.end for d in days)]


def pick_windows(windows: list[Window], only: list[str] | None) -> list[Window]:
    """The windows named in ``only`` (all when None): a crashed child re-run alone."""
    if not only:
        return windows
    known = {w.label for w in windows}
    unknown = [o for o in only if o not in known]
    if unknown:
        raise ConfigError(f"no such window in the range: {', '.join(unknown)}")
    return [w for w in windows if w.label in only]


class ChildrenFailed(RuntimeError):
    """Some child runs of a fan-out failed; the others completed and committed."""


@dataclass(frozen=True)
class ChildOutcome:
    """One row of a parent's table: how one child run ended."""

    child: str  # district id or window label
    state: str  # Prefect state name of the child run (Completed, Failed, Crashed, ...)
    landed: int  # files landed (new or new version)
    rows: int  # rows written to stage2p
    stale: bool  # the child's source was stale (warning or failure)
    failed: bool
    reason: str  # the failure, from the child's state type and exception class only
    flow_run: str  # the child's flow run id ("" when it was never created)

    def row(self) -> dict[str, Any]:
        """The artifact row (plain values)."""
        return asdict(self)


def _table(data: Any) -> list[Mapping[str, Any]]:
    rows = json.loads(data) if isinstance(data, str) else data
    return [r for r in rows if isinstance(r, Mapping)] if isinstance(rows, list) else []


def _versions(artifacts: Mapping[str, Any], key: str) -> list[Any]:
    """Every version of one artifact, oldest first (a list, or one value)."""
    value = artifacts.get(key)
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def child_outcome(
    child: str,
    state_type: str,
    state_name: str,
    artifacts: Mapping[str, Any],
    flow_run: str = "",
    failure_kind: str = "",
) -> ChildOutcome:
    """A child's row from its final state and its artifacts (keyed by artifact key).

    Counts come from the child's ``clever-landing`` and ``clever-processing`` tables
    (summed over versions: a flow run executed twice landed what both landed),
    staleness from the headline of its latest ``clever-summary``; a child that crashed
    before writing them counts zero. ``failure_kind`` is the exception class, never its text:
    the parent's table carries no message a child may have built from its data.
    """
    landing = [r for v in _versions(artifacts, "clever-landing") for r in _table(v)]
    processing = [r for v in _versions(artifacts, "clever-processing") for r in _table(v)]
    landed = sum(1 for r in landing if r.get("outcome") in ("landed", "new-version"))
    rows = sum(int(r.get("rows written") or r.get("rows_written") or 0) for r in processing)
    summaries = _versions(artifacts, "clever-summary")
    summary = summaries[-1] if summaries else None
    headline = summary.splitlines()[0] if isinstance(summary, str) and summary else ""
    stale = " stale" in headline or failure_kind == "SourceStale"
    failed = state_type != "COMPLETED"
    reason = ""
    if failed:
        reason = state_name + (f" ({failure_kind})" if failure_kind else "")
    return ChildOutcome(child, state_name, landed, rows, stale, failed, reason, flow_run)


def failure_message(kind: str, outcomes: list[ChildOutcome], rerun_hint: str) -> str:
    """The parent's failure: which children failed and how to re-run them alone."""
    bad = [o for o in outcomes if o.failed]
    names = ", ".join(f"{o.child} ({o.reason})" for o in bad)
    return (
        f"{len(bad)} of {len(outcomes)} {kind} failed: {names}; the others committed. "
        f"Re-run them alone: {rerun_hint} {json.dumps([o.child for o in bad])}"
    )
