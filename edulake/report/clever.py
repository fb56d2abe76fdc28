"""The Clever dashboard: the reference dashboard's questions, from the published views.

Usage panels read only the suppressed views of the catalog (``clever.*`` views, rendered
by :mod:`edulake.privacy.suppression`): a suppressed cell arrives as NULL and is not
drawn. The freshness calendar comes from the landing ledger (report dates only) and,
when a run checked Clever's server, from that check (:mod:`...clever.freshness`); the
quarantine panel from the processed records (file names and row counts only).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from edulake.core import clock
from edulake.core.lake import Lake, Zone
from edulake.core.landing import Ledger
from edulake.report import charts
from edulake.report.page import Chart, Page, Section, Table
from edulake.report.text import bar_lines, fmt_int, fmt_share, rows_of
from edulake.sources.clever.freshness import CleverFreshness, check_reports
from edulake.sources.clever.names import FOLDERS, parse_report_name

SOURCE = "clever"
TOP_APPS = 15
TOP_QUARANTINE_FILES = 25
CALENDAR_DAYS = 182  # at most 26 weeks in the calendar
CALENDAR_TAIL = 14  # days shown after the newest report (the server keeps about 14)

# The published views each panel reads (the test compares the page with these queries).
QUERIES: dict[str, str] = {
    "active_students": (
        'SELECT CAST("date" AS VARCHAR) AS "date", school_name, active_students, suppressed '
        'FROM clever.active_students_per_school_day ORDER BY "date", school_name'
    ),
    "usage_by_school": (
        "SELECT school_name, students, avg_logins_per_student_day, "
        "avg_resources_per_student_day, suppressed "
        "FROM clever.avg_usage_per_student_by_school ORDER BY school_name"
    ),
    "top_resources": (
        "SELECT school_name, resource_name, resource_type, students, resource_rank, suppressed "
        "FROM clever.top_resources_by_school ORDER BY school_name, resource_rank"
    ),
    "top_apps": (
        "SELECT resource_name, users, accesses, suppressed FROM clever.top_apps_by_users "
        f"WHERE NOT suppressed ORDER BY users DESC, resource_name LIMIT {TOP_APPS}"
    ),
    "usage_over_time": (
        'SELECT CAST("date" AS VARCHAR) AS "date", role, active_users, logins, '
        'resources_accessed, suppressed FROM clever.usage_over_time ORDER BY "date", role'
    ),
}


def landed_dates(lake: Lake) -> dict[str, set[dt.date]]:
    """Report dates the ledger holds, per report (names only: no file is read)."""
    landed: dict[str, set[dt.date]] = {}
    for name in Ledger(lake, SOURCE).latest():
        try:
            parsed = parse_report_name(name)
        except ValueError:
            continue
        landed.setdefault(parsed.report, set()).add(parsed.report_date)
    return landed


def freshness_rows(
    fresh: CleverFreshness, landed: dict[str, set[dt.date]], today: dt.date
) -> tuple[list[dict[str, Any]], list[str]]:
    """The calendar's days (report, date, status, detail) and notes on what is not shown."""
    rows: list[dict[str, Any]] = []
    notes: list[str] = []
    end_expected = today - dt.timedelta(days=1)
    for report, fr in fresh.reports.items():
        days = landed.get(report, set())
        missing = {m.day: m for m in fr.missing_days}
        seen = days | {m.day for m in fr.missing_days if m.on_server}
        newest = max(seen | ({fr.newest_available} if fr.newest_available else set()), default=None)
        if newest is None:
            notes.append(f"{report}: no report landed or on the server")
            continue
        end = min(end_expected, newest + dt.timedelta(days=CALENDAR_TAIL))
        start = max(min(seen), end - dt.timedelta(days=CALENDAR_DAYS - 1))
        if end < end_expected:
            notes.append(
                f"{report}: {(end_expected - end).days} more day(s) up to {end_expected} "
                "without a report are not shown"
            )
        day = start
        while day <= end:
            status, detail = _status(day, days, missing.get(day), fr.newest_available, fr.stale)
            rows.append(
                {"report": report, "date": day.isoformat(), "status": status, "detail": detail}
            )
            day += dt.timedelta(days=1)
    return rows, notes


def _status(
    day: dt.date, landed: set[dt.date], missing: Any, newest: dt.date | None, stale: bool
) -> tuple[str, str]:
    if day in landed:
        return "landed", "in the lake"
    if missing is not None and missing.on_server:
        return (
            "about to be deleted",
            f"on Clever's server, not landed: gone around {missing.deleted_around}",
        )
    if stale and (newest is None or day > newest):
        return "stale", "no report delivered since" + (f" {newest}" if newest else " ever")
    return "missing", "neither landed nor on the server"


def quarantine_rows(lake: Lake) -> list[dict[str, Any]]:
    """The newest processed record per file: rows read, quarantined, share (no row data)."""
    latest: dict[str, dict[str, Any]] = {}
    for info in lake.list(Zone.SYSTEM, f"processed/{SOURCE}/"):
        if not info.key.endswith(".json"):
            continue
        rec = lake.read_json(Zone.SYSTEM, info.key)
        name = str(rec.get("name", ""))
        if name and str(rec.get("processed_at", "")) >= str(
            latest.get(name, {}).get("processed_at", "")
        ):
            latest[name] = rec
    out = []
    for name, rec in latest.items():
        read = int(rec.get("rows_read") or 0)
        bad = int(rec.get("rows_quarantined") or 0)
        out.append(
            {
                "file": name.rsplit("/", 1)[-1],
                "table": str(rec.get("table", "")),
                "rows_read": read,
                "rows_quarantined": bad,
                "share": round(bad / read, 6) if read else 0.0,
            }
        )
    return sorted(out, key=lambda r: (-r["share"], -r["rows_quarantined"], r["file"]))


def build(
    lake: Lake,
    con: Any,
    min_cell: int,
    *,
    freshness: CleverFreshness | None = None,
    today: dt.date | None = None,
    fail_age_days: int = 7,
) -> Page:
    """The Clever page. ``con``: a read-only connection to the catalog file."""
    today = today or clock.today()
    data = {name: rows_of(con.sql(sql)) for name, sql in QUERIES.items()}
    landed = landed_dates(lake)
    server_checked = freshness is not None
    if freshness is None:  # no server listing: what the lake holds is all that is known
        freshness = check_reports(landed, landed, today, FOLDERS, 2, fail_age_days)
    data["freshness"], fresh_notes = freshness_rows(freshness, landed, today)
    files = quarantine_rows(lake)
    data["quarantine"] = files[:TOP_QUARANTINE_FILES]

    page = Page(source=SOURCE, title="Clever participation", min_cell=min_cell, datasets=data)
    page.headline = _headline(data, files, freshness, landed)
    page.sections = [
        Section(
            "Freshness",
            note=(
                "Per report day: landed, missing, stale (no delivery since the newest report), "
                "or about to be deleted (on Clever's server, not landed; it keeps ~14 days)."
                + (
                    ""
                    if server_checked
                    else " Built from the lake alone: a run of the flow also checks what is "
                    "on Clever's server."
                )
            ),
            charts=[
                Chart(
                    "freshness",
                    "Report days",
                    charts.freshness_calendar("freshness"),
                    ["freshness"],
                    note="; ".join(fresh_notes),
                )
            ],
            tables=[_freshness_table(freshness)],
        ),
        Section(
            "Usage",
            charts=[
                Chart(
                    "active-students",
                    "Active students per school per day",
                    charts.line_over_time(
                        "active_students",
                        "date",
                        "active_students",
                        "school_name",
                        "active students",
                    ),
                    ["active_students"],
                    note="Distinct students with activity; a gap is a suppressed cell.",
                ),
                Chart(
                    "usage-by-school",
                    "Logins and resources per student-day, by school",
                    charts.grouped_bars(
                        "usage_by_school",
                        "school_name",
                        [
                            ("avg_logins_per_student_day", "logins"),
                            ("avg_resources_per_student_day", "resources accessed"),
                        ],
                    ),
                    ["usage_by_school"],
                ),
                Chart(
                    "top-apps",
                    f"Top {TOP_APPS} apps by users",
                    charts.bars("top_apps", "resource_name", "users", "distinct users"),
                    ["top_apps"],
                ),
                Chart(
                    "top-resources",
                    "Top 5 resources per school (distinct students)",
                    charts.faceted_bars(
                        "top_resources", "school_name", "resource_name", "students", "resource_rank"
                    ),
                    ["top_resources"],
                ),
            ],
        ),
        Section(
            "Quarantine",
            note="Rows set aside (protected quarantine zone) per file, worst first.",
            charts=[
                Chart(
                    "quarantine",
                    f"Quarantined share of rows, top {TOP_QUARANTINE_FILES} files",
                    charts.bars("quarantine", "file", "share", "share of rows", fmt=".2%"),
                    ["quarantine"],
                )
            ],
        ),
    ]
    page.markdown = _markdown(page, data, files, freshness)
    return page


def _freshness_table(fresh: CleverFreshness) -> Table:
    rows = []
    for report, fr in fresh.reports.items():
        state = "failing" if fr.failing else "stale" if fr.stale else "fresh"
        rows.append(
            [
                report,
                str(fr.last_landed or "none"),
                state,
                str(len(fr.missing_days)),
                str(len(fr.at_risk)),
                str(fr.deadline or "-"),
            ]
        )
    return Table(
        "Per report",
        [
            "report",
            "last landed",
            "state",
            "days missing",
            "on server, not landed",
            "first deletion",
        ],
        rows,
    )


def _headline(
    data: dict[str, list[dict[str, Any]]],
    files: list[dict[str, Any]],
    fresh: CleverFreshness,
    landed: dict[str, set[dt.date]],
) -> list[tuple[str, str]]:
    students = [r for r in data["usage_over_time"] if r["role"] == "students"]
    last = students[-1] if students else None
    read = sum(f["rows_read"] for f in files)
    bad = sum(f["rows_quarantined"] for f in files)
    apps = data["top_apps"]
    days = sorted({d for ds in landed.values() for d in ds})
    return [
        ("report days landed", fmt_int(len(days))),
        ("newest report day", str(days[-1]) if days else "none"),
        (
            f"active students on {last['date']}" if last else "active students",
            fmt_int(last["active_users"]) if last else "-",
        ),
        ("schools", fmt_int(len(data["usage_by_school"]))),
        (
            "top app",
            f"{apps[0]['resource_name']} ({fmt_int(apps[0]['users'])} users)" if apps else "-",
        ),
        ("rows quarantined", f"{fmt_int(bad)} ({fmt_share(bad, read)})"),
        ("freshness", _fresh_word(fresh)),
    ]


def _fresh_word(fresh: CleverFreshness) -> str:
    """One or two words for the headline card (the per-report table has the detail)."""
    if fresh.failing:
        return "failing: " + ", ".join(r.name for r in fresh.failing)
    if fresh.stale:
        return "stale: " + ", ".join(r.name for r in fresh.stale)
    at_risk = sum(len(r.at_risk) for r in fresh.reports.values())
    return f"{at_risk} day(s) to land before deletion" if at_risk else "fresh"


def _markdown(
    page: Page,
    data: dict[str, list[dict[str, Any]]],
    files: list[dict[str, Any]],
    fresh: CleverFreshness,
) -> str:
    lines = ["# Clever dashboard", ""]
    lines += [f"- **{label}**: {value}" for label, value in page.headline]
    schools = [
        (str(r["school_name"]), r["students"])
        for r in data["usage_by_school"]
        if r["students"] is not None
    ]
    if schools:
        lines += ["", "Students with activity, by school:", "", "```"]
        lines += bar_lines(sorted(schools, key=lambda s: -float(s[1] or 0))[:10])
        lines += ["```"]
    apps = [(str(r["resource_name"]), r["users"]) for r in data["top_apps"][:5]]
    if apps:
        lines += ["", "Top apps by users:", "", "```", *bar_lines(apps), "```"]
    worst = [f for f in files if f["rows_quarantined"]][:5]
    if worst:
        lines += ["", "Files with the most quarantined rows:", ""]
        lines += [
            f"- {f['file']}: {fmt_int(f['rows_quarantined'])} of {fmt_int(f['rows_read'])} "
            f"({fmt_share(f['rows_quarantined'], f['rows_read'])})"
            for f in worst
        ]
    if fresh.headline():
        lines += ["", f"**Freshness**: {fresh.headline()}"]
    lines += ["", f"Counts of fewer than {page.min_cell} people are suppressed."]
    return "\n".join(lines)
