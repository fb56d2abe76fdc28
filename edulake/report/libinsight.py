"""The LibInsight dashboard: questions per month and type, hour x weekday, drift, quarantine.

LibInsight has no published views yet, so each panel is a view-like query with a
``-- publish:`` declaration, rendered by :func:`edulake.privacy.suppression.render_view`
with the configured minimum n (the rule and the code the Clever views go through): a
cell of fewer than min_cell questions is blanked, with complementary suppression per
month. One section per LibInsight table in the catalog (one per dataset).

The quarantine panel counts the protected quarantine's records per file and reason (the
reason names a field, never a value); the drift panel lists the columns schema drift
added (``_system/libinsight/<t>/schema.json``) and, at the end of a run, what the run
found.
"""

from __future__ import annotations

import json
from typing import Any

from edulake.core.lake import Lake, Zone
from edulake.privacy.suppression import render_view
from edulake.report import charts
from edulake.report.page import Chart, Page, Section, Table
from edulake.report.text import bar_lines, fmt_int, rows_of

SOURCE = "libinsight"
DATE_COLUMN = "start_date"

# Athena SQL like a view file: the declaration line drives the suppression.
PANELS: dict[str, str] = {
    "per_month": """-- publish: counts=questions
SELECT month, COUNT(*) AS questions
FROM libinsight.{table}
GROUP BY month""",
    "per_month_type": """-- publish: counts=questions; group=month
SELECT month, kind, COUNT(*) AS questions
FROM (SELECT month, COALESCE(CAST({kind} AS VARCHAR), '(none)') AS kind FROM libinsight.{table})
GROUP BY month, kind""",
    "heatmap": """-- publish: counts=questions
SELECT day_of_week({date}) AS weekday, hour({date}) AS hour, COUNT(*) AS questions
FROM libinsight.{table}
WHERE {date} IS NOT NULL
GROUP BY day_of_week({date}), hour({date})""",
}
ORDER = {
    "per_month": "month",
    "per_month_type": "month, kind",
    "heatmap": "weekday, hour",
}


def tables(con: Any) -> dict[str, list[str]]:
    """The LibInsight tables of the catalog and their columns."""
    rows = con.execute(
        "SELECT table_name, column_name FROM information_schema.columns "
        "WHERE table_schema = 'libinsight' ORDER BY table_name, ordinal_position"
    ).fetchall()
    out: dict[str, list[str]] = {}
    for table, column in rows:
        out.setdefault(str(table), []).append(str(column))
    return out


def type_column(columns: list[str]) -> str | None:
    """The column a table's questions are typed by: the first ``*_type`` column."""
    return next((c for c in columns if c.endswith("_type")), None)


def panel_sql(panel: str, table: str, kind: str | None, min_cell: int) -> str:
    """A panel's query as DuckDB SQL, suppressed like a published view."""
    from edulake.catalog.duckdb import to_duckdb

    sql = PANELS[panel].format(table=table, kind=kind or "NULL", date=DATE_COLUMN)
    body = to_duckdb(render_view(f"{table}.{panel}", sql, min_cell))
    return f"SELECT * FROM ({body}) AS panel ORDER BY {ORDER[panel]}"


def quarantine_counts(lake: Lake, table: str) -> tuple[list[dict[str, Any]], str | None]:
    """Quarantined records per file and reason (counts only); a note if unreadable."""
    try:
        files = lake.list(Zone.QUARANTINE, f"{SOURCE}/{table}/")
        out = []
        for info in files:
            counts: dict[str, int] = {}
            with lake.open_input(Zone.QUARANTINE, info.key) as f:
                for line in bytes(f.read()).splitlines():
                    if line.strip():
                        reason = str(json.loads(line).get("reason", "unknown"))
                        counts[reason] = counts.get(reason, 0) + 1
            name = info.key.rsplit("/", 1)[-1]
            out += [{"file": name, "reason": r, "records": n} for r, n in sorted(counts.items())]
        return out, None
    except (OSError, ValueError):
        return [], "the protected quarantine zone could not be read from here"


def drift_columns(lake: Lake, table: str) -> list[list[str]]:
    """Columns schema drift added to the table (label, column, type, since)."""
    key = f"{SOURCE}/{table}/schema.json"
    if not lake.exists(Zone.SYSTEM, key):
        return []
    cols = lake.read_json(Zone.SYSTEM, key).get("columns", [])
    return [
        [
            str(c.get("label") or c.get("of") or ""),
            str(c.get("name", "")),
            str(c.get("type", "")),
            str(c.get("first_seen", "")),
        ]
        for c in cols
    ]


def build(
    lake: Lake,
    con: Any,
    min_cell: int,
    *,
    run_drift: dict[str, list[dict[str, str]]] | None = None,
) -> Page:
    """The LibInsight page. ``run_drift``: per table, the drift rows a run just found."""
    page = Page(source=SOURCE, title="LibInsight", min_cell=min_cell, unit="questions")
    headline: list[tuple[str, str]] = []
    md: list[str] = ["# LibInsight dashboard", ""]
    found = tables(con)
    if not found:
        page.notes.append("No LibInsight table in the catalog yet: run the libinsight flow.")
    for table, columns in found.items():
        kind = type_column(columns)
        data = {
            f"{table}.{panel}": rows_of(con.sql(panel_sql(panel, table, kind, min_cell)))
            for panel in PANELS
            if panel != "per_month_type" or kind
        }
        q_rows, q_note = quarantine_counts(lake, table)
        data[f"{table}.quarantine"] = q_rows
        page.datasets.update(data)
        months = data[f"{table}.per_month"]
        shown = sum(int(r["questions"] or 0) for r in months)
        quarantined = sum(r["records"] for r in q_rows)
        hours = [r for r in data[f"{table}.heatmap"] if r["questions"] is not None]
        busiest = max(hours, key=lambda r: r["questions"], default=None)
        headline += [
            (f"{table}: questions shown", fmt_int(shown)),
            (f"{table}: months", fmt_int(len(months))),
            (f"{table}: quarantined records", fmt_int(quarantined) if not q_note else "n/a"),
        ]
        if busiest:
            day = charts.WEEKDAYS[int(busiest["weekday"]) - 1]
            headline.append((f"{table}: busiest hour", f"{day} {int(busiest['hour']):02d}:00"))
        section_charts = [
            Chart(
                f"{table}-per-month",
                "Questions per month",
                charts.month_bars(f"{table}.per_month", "month", "questions"),
                [f"{table}.per_month"],
            )
        ]
        if kind:
            section_charts.append(
                Chart(
                    f"{table}-per-type",
                    f"Questions per month and {kind.replace('_', ' ')}",
                    charts.month_type_bars(f"{table}.per_month_type", "month", "kind", "questions"),
                    [f"{table}.per_month_type"],
                    note="A missing block is a suppressed cell.",
                )
            )
        section_charts += [
            Chart(
                f"{table}-heatmap",
                "Hour of day x weekday (library local time)",
                charts.heatmap(f"{table}.heatmap", "questions"),
                [f"{table}.heatmap"],
            ),
            Chart(
                f"{table}-quarantine",
                "Quarantined records by reason",
                charts.bars(f"{table}.quarantine", "reason", "records", "records", color="file"),
                [f"{table}.quarantine"],
                note=q_note or "Records not kept (protected quarantine zone), per reason.",
            ),
        ]
        drift = drift_columns(lake, table)
        tables_ = [
            Table(
                "Columns added by schema drift",
                ["LibInsight field", "column", "type", "since"],
                drift or [["-", "-", "-", "no drift so far"]],
            )
        ]
        found_now = (run_drift or {}).get(table)
        if found_now is not None:
            tables_.append(
                Table(
                    "Drift found by this run",
                    ["kind", "field", "detail"],
                    [[r["kind"], r["field"], r["detail"]] for r in found_now]
                    or [["none", "-", "no schema drift"]],
                )
            )
        page.sections.append(Section(f"libinsight.{table}", charts=section_charts, tables=tables_))
        md += [f"## libinsight.{table}", ""]
        md += [f"- questions shown: {fmt_int(shown)} in {len(months)} month(s)"]
        md += [f"- quarantined records: {q_note or fmt_int(quarantined)}"]
        md += [f"- columns added by drift: {len(drift)}"]
        if months:
            md += [
                "",
                "```",
                *bar_lines([(r["month"], r["questions"]) for r in months[-12:]]),
                "```",
                "",
            ]
    page.headline = headline
    md += [f"Counts of fewer than {min_cell} questions are suppressed."]
    page.markdown = "\n".join(md)
    return page
