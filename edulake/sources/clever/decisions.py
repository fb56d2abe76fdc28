"""Decisions about bad Clever files: a version acknowledged as bad is skipped, visibly.

A file whose header changed fails every run while it stays on Clever's server. Someone
who has looked at it can record a *skip decision* for that exact version (its sha256):
one immutable JSON record per version at
``_system/decisions/clever/<folder>/<file>/<sha256>.json`` with who, when and why. The
skipped version stays in stage1np untouched, is never processed, no longer fails runs,
and every run's summary lists it as "skipped by decision". A new version of the same
file (other bytes, another sha256) is not covered and is processed normally.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass
from typing import Any

from edulake.core.lake import Lake, Zone, safe_key
from edulake.core.landing import Ledger, LedgerEntry
from edulake.sources.clever.names import NotAReport, parse_report_name
from edulake.sources.clever.process import SOURCE, processed_key

PREFIX = f"decisions/{SOURCE}"


class SkipError(ValueError):
    """A skip that cannot be recorded (unknown file, no reason, nothing to skip)."""


@dataclass(frozen=True)
class SkipDecision:
    """One acknowledged file version: skipped by decision, not processed."""

    name: str  # <folder>/<file>, as in the ledger
    sha256: str
    reason: str
    by: str
    at: str  # ISO 8601, UTC
    flow_run_id: str | None = None

    def line(self) -> str:
        """For summaries: the file, the version, who, when, why."""
        return (
            f"`{self.name}` (sha256 {self.sha256[:12]}, by {self.by} at {self.at[:19]}Z): "
            f"{self.reason}"
        )


def decision_key(name: str, sha256: str) -> str:
    return safe_key(PREFIX, name, f"{sha256}.json")


def resolve_file(file: str) -> tuple[str, str | None]:
    """``FILE`` or ``FILE@<sha256 prefix>`` -> (ledger name, sha prefix).

    ``FILE`` is the report file name (``2022-01-03-resource-usage-students.csv``) or its
    ``<folder>/<file>`` form; the folder follows from the name.
    """
    name, _, sha = file.strip().partition("@")
    base = name.rsplit("/", 1)[-1]
    for folder in ("daily-participation", "resource-usage"):
        if f"-{folder}-" in base:
            try:
                parse_report_name(f"{folder}/{base}")
            except NotAReport:
                break
            if "/" in name and name != f"{folder}/{base}":
                break
            return f"{folder}/{base}", (sha.lower() or None)
    raise SkipError(f"{name!r} is not a Clever report file name (YYYY-MM-DD-<report>-<role>.csv)")


def skip_file(
    lake: Lake,
    file: str,
    reason: str,
    by: str,
    *,
    flow_run_id: str | None = None,
    now: dt.datetime | None = None,
) -> tuple[SkipDecision, bool]:
    """Record a skip decision for the newest landed version of ``file`` (or ``file@sha``).

    Returns the decision and whether it is new: an existing decision for that version
    is never rewritten (the first who/when/why stands). Refuses a blank reason, a file
    never landed, and a version that was processed (nothing to skip).
    """
    if not reason or not reason.strip():
        raise SkipError("a skip needs a reason (--reason / skip_reason): say why it is safe")
    name, sha = resolve_file(file)
    versions = Ledger(lake, SOURCE).versions(name)
    if sha:
        versions = [v for v in versions if v.sha256.startswith(sha)]
    if not versions:
        which = f" with sha256 {sha}..." if sha else ""
        raise SkipError(f"{name}{which} was never landed: nothing to skip")
    entry = versions[-1]
    key = decision_key(name, entry.sha256)
    if lake.exists(Zone.SYSTEM, key):
        return _read(lake, key), False
    if lake.exists(Zone.SYSTEM, processed_key(name, entry.sha256)):
        raise SkipError(f"{name} (sha256 {entry.sha256[:12]}) was processed: nothing to skip")
    decision = SkipDecision(
        name=name,
        sha256=entry.sha256,
        reason=reason.strip(),
        by=by,
        at=(now or dt.datetime.now(dt.UTC)).isoformat(),
        flow_run_id=flow_run_id,
    )
    lake.write_json(Zone.SYSTEM, key, asdict(decision))
    return decision, True


def _read(lake: Lake, key: str) -> SkipDecision:
    obj: dict[str, Any] = lake.read_json(Zone.SYSTEM, key)
    return SkipDecision(**obj)


def decided(lake: Lake) -> set[tuple[str, str]]:
    """(name, sha256) of every version with a skip decision."""
    out = set()
    for o in lake.list(Zone.SYSTEM, PREFIX):
        if o.key.endswith(".json"):
            name, _, sha = o.key[len(PREFIX) + 1 : -len(".json")].rpartition("/")
            out.add((name, sha))
    return out


def skipped(lake: Lake, latest: dict[str, LedgerEntry] | None = None) -> list[SkipDecision]:
    """Decisions covering the newest landed version of a file (what runs now skip)."""
    made = decided(lake)
    if not made:
        return []  # the common case: no need to read the ledger
    latest = latest if latest is not None else Ledger(lake, SOURCE).latest()
    keys = sorted(
        decision_key(name, sha)
        for name, sha in made
        if name in latest and latest[name].sha256 == sha
    )
    return [_read(lake, k) for k in keys]
