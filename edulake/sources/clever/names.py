"""Clever report file names: ``<folder>/YYYY-MM-DD-<report>-<role>.csv``.

Only files that match exactly are ever landed; anything else on the server (other
folders, other names, names with path tricks) is ignored and reported.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

# folder on the server -> spec name
REPORTS: dict[str, str] = {
    "daily-participation": "daily_participation",
    "resource-usage": "resource_usage",
}
ROLES = ("students", "teachers", "staff")
FOLDERS = list(REPORTS)

_NAME = re.compile(
    r"^(?P<date>\d{4}-\d{2}-\d{2})-(?P<report>daily-participation|resource-usage)"
    r"-(?P<role>students|teachers|staff)\.csv$"
)


# How Clever lays out its server: shown wherever files are found in the wrong places.
EXPECTED_LAYOUT = ", ".join(f"{f}/YYYY-MM-DD-{f}-<role>.csv" for f in FOLDERS)

# A name resembling a report: any letter case, '-' '_' or ' ' between words, .csv in any
# case (optionally compressed). Used only to spot misplaced files, never to land one.
_LOOKS_LIKE = re.compile(
    r"(daily[-_ ]?participation|resource[-_ ]?usage).*\.csv(\.gz|\.zip)?$", re.IGNORECASE
)


def is_report_path(relative: str) -> bool:
    """``<folder>/<name>`` exactly as Clever puts a report."""
    try:
        parse_report_name(relative)
    except NotAReport:
        return False
    return True


def looks_like_report(file_name: str) -> bool:
    """A file name that resembles a Clever report name (to report near misses)."""
    return bool(_LOOKS_LIKE.search(file_name))


@dataclass(frozen=True)
class ReportName:
    """A parsed Clever report file name."""

    folder: str
    file_name: str
    report_date: dt.date
    report: str  # folder form: daily-participation | resource-usage
    role: str

    @property
    def table(self) -> str:
        return REPORTS[self.report]

    @property
    def relative(self) -> str:
        return f"{self.folder}/{self.file_name}"

    @property
    def stem(self) -> str:
        return self.file_name[: -len(".csv")]


class NotAReport(ValueError):
    """A name that is not a Clever report (ignored, with this reason)."""


def parse_report_name(relative: str) -> ReportName:
    """Parse ``<folder>/<file>``; raise :class:`NotAReport` with the reason otherwise."""
    if "\\" in relative or relative.startswith("/") or "\x00" in relative:
        raise NotAReport("unsafe path")
    parts = relative.split("/")
    if len(parts) != 2 or ".." in parts:
        raise NotAReport("not <folder>/<file>")
    folder, name = parts
    if folder not in REPORTS:
        raise NotAReport(f"folder {folder!r} is not a report folder")
    m = _NAME.match(name)
    if not m:
        raise NotAReport("name is not YYYY-MM-DD-<report>-<role>.csv")
    if m["report"] != folder:
        raise NotAReport(f"a {m['report']} file in the {folder} folder")
    try:
        day = dt.date.fromisoformat(m["date"])
    except ValueError as exc:
        raise NotAReport(f"bad date in name: {exc}") from None
    return ReportName(folder, name, day, m["report"], m["role"])


def report_file_name(report_date: dt.date, report: str, role: str) -> str:
    """The name Clever gives a report file."""
    return f"{report_date.isoformat()}-{report}-{role}.csv"


def landing_key(name: ReportName, landed_on: dt.date) -> str:
    """Where a report lands in stage1np: report, role, landing date, original name."""
    return f"clever/{name.report}/{name.role}/{landed_on.isoformat()}/{name.file_name}"
