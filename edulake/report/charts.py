"""Vega-Lite specs of the dashboards, built with Altair over named datasets.

Every chart names its data (``alt.Data(name=...)``): the rows live once in the page and
reach every chart as Vega-Lite ``datasets`` (see :mod:`edulake.report.page`). Rows the
suppression blanked (a NULL count) are filtered out in the chart, never drawn as zero.
Dates are ISO strings, read and bucketed in UTC so a browser's time zone cannot shift a
day.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any

import altair as alt

WIDTH = 560
FRESHNESS_STATUSES = ["landed", "missing", "stale", "about to be deleted"]
FRESHNESS_COLORS = ["#2a9d8f", "#e9c46a", "#f4a261", "#d62828"]


def _data(name: str) -> alt.Data:
    """A reference to one of the page's datasets (its rows are not in the spec)."""
    return alt.Data(name=name)  # type: ignore[no-untyped-call]


def _spec(chart: alt.TopLevelMixin) -> dict[str, Any]:
    spec: dict[str, Any] = chart.to_dict(validate=True)
    return spec


def _cached(fn: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    """Specs depend on their arguments only (the data is named, not included): built and
    validated once per process, a fresh copy per call."""
    memo: dict[str, str] = {}

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> dict[str, Any]:
        key = json.dumps([args, kwargs], sort_keys=True)
        if key not in memo:
            memo[key] = json.dumps(fn(*args, **kwargs))
        out: dict[str, Any] = json.loads(memo[key])
        return out

    return wrapper


def _not_null(field: str) -> str:
    return f"isValid(datum['{field}'])"


@_cached
def line_over_time(data: str, x: str, y: str, color: str, title_y: str) -> dict[str, Any]:
    """A line per ``color`` value over days (gaps where a cell was suppressed)."""
    c = (
        alt.Chart(_data(data))
        .mark_line(point=True)
        .encode(
            x=alt.X(f"utcyearmonthdate({x}):T", title="day"),
            y=alt.Y(f"{y}:Q", title=title_y),
            color=alt.Color(f"{color}:N", title=None),
            tooltip=[alt.Tooltip(f"{x}:N"), alt.Tooltip(f"{color}:N"), alt.Tooltip(f"{y}:Q")],
        )
        .transform_filter(_not_null(y))
        .properties(width=WIDTH, height=260)
    )
    return _spec(c)


@_cached
def grouped_bars(data: str, category: str, fields: list[tuple[str, str]]) -> dict[str, Any]:
    """Bars per category, one per measure (``fields``: column, label)."""
    c = (
        alt.Chart(_data(data))
        .transform_fold([f for f, _ in fields], as_=["measure_column", "value"])
        .transform_filter("isValid(datum.value)")
        .transform_calculate(
            measure=" : ".join(f"datum.measure_column === '{f}' ? '{label}'" for f, label in fields)
            + " : datum.measure_column"
        )
        .mark_bar()
        .encode(
            y=alt.Y(f"{category}:N", title=None),
            x=alt.X("value:Q", title="per student-day"),
            yOffset=alt.YOffset("measure:N"),
            color=alt.Color("measure:N", title=None),
            tooltip=[
                alt.Tooltip(f"{category}:N"),
                alt.Tooltip("measure:N"),
                alt.Tooltip("value:Q", format=".2f"),
            ],
        )
        .properties(width=WIDTH - 120, height=alt.Step(24))
    )
    return _spec(c)


@_cached
def bars(
    data: str,
    category: str,
    value: str,
    title_x: str,
    *,
    sort_by_value: bool = True,
    fmt: str = ",.0f",
    color: str | None = None,
) -> dict[str, Any]:
    """Horizontal bars of ``value`` per ``category`` (largest first)."""
    enc: dict[str, Any] = {
        "y": alt.Y(
            f"{category}:N",
            title=None,
            sort="-x" if sort_by_value else None,
            axis=alt.Axis(labelLimit=320),
        ),
        "x": alt.X(f"{value}:Q", title=title_x, axis=alt.Axis(format=fmt)),
        "tooltip": [alt.Tooltip(f"{category}:N"), alt.Tooltip(f"{value}:Q", format=fmt)],
    }
    if color:
        enc["color"] = alt.Color(f"{color}:N", title=None)
    c = (
        alt.Chart(_data(data))
        .mark_bar()
        .encode(**enc)
        .transform_filter(_not_null(value))
        .properties(width=WIDTH - 160)
    )
    return _spec(c)


@_cached
def faceted_bars(data: str, facet: str, category: str, value: str, order: str) -> dict[str, Any]:
    """One small bar chart per ``facet`` value (top resources per school)."""
    c = (
        alt.Chart(_data(data))
        .mark_bar(color="#457b9d")
        .encode(
            y=alt.Y(f"{category}:N", title=None, sort=alt.SortField(order)),
            x=alt.X(f"{value}:Q", title="students"),
            tooltip=[alt.Tooltip(f"{category}:N"), alt.Tooltip(f"{value}:Q")],
        )
        .transform_filter(_not_null(value))
        .properties(width=220, height=alt.Step(16))
        .facet(facet=alt.Facet(f"{facet}:N", title=None), columns=2)
        .resolve_scale(y="independent")
    )
    return _spec(c)


@_cached
def freshness_calendar(data: str) -> dict[str, Any]:
    """One row of weeks per report: each day landed, missing, stale or about to be deleted."""
    c = (
        alt.Chart(_data(data))
        .mark_rect(stroke="#ffffff", strokeWidth=1)
        .encode(
            x=alt.X(
                "utcyearweek(date):O", title="week", axis=alt.Axis(format="%b %d", labelAngle=-45)
            ),
            y=alt.Y("utcday(date):O", title=None),
            color=alt.Color(
                "status:N",
                scale=alt.Scale(domain=FRESHNESS_STATUSES, range=FRESHNESS_COLORS),
                title="day",
            ),
            tooltip=[
                alt.Tooltip("report:N"),
                alt.Tooltip("date:N"),
                alt.Tooltip("status:N"),
                alt.Tooltip("detail:N"),
            ],
        )
        .properties(width=alt.Step(14), height=alt.Step(14))
        .facet(row=alt.Row("report:N", title=None))
    )
    return _spec(c)


@_cached
def month_type_bars(data: str, month: str, kind: str, value: str) -> dict[str, Any]:
    """Stacked bars per month, one colour per type."""
    c = (
        alt.Chart(_data(data))
        .mark_bar()
        .encode(
            x=alt.X(f"{month}:O", title="month"),
            y=alt.Y(f"sum({value}):Q", title="questions"),
            color=alt.Color(f"{kind}:N", title=None),
            tooltip=[
                alt.Tooltip(f"{month}:N"),
                alt.Tooltip(f"{kind}:N"),
                alt.Tooltip(f"{value}:Q"),
            ],
        )
        .transform_filter(_not_null(value))
        .properties(width=WIDTH, height=260)
    )
    return _spec(c)


@_cached
def month_bars(data: str, month: str, value: str) -> dict[str, Any]:
    """Bars of one total per month."""
    c = (
        alt.Chart(_data(data))
        .mark_bar(color="#457b9d")
        .encode(
            x=alt.X(f"{month}:O", title="month"),
            y=alt.Y(f"{value}:Q", title="questions"),
            tooltip=[alt.Tooltip(f"{month}:N"), alt.Tooltip(f"{value}:Q")],
        )
        .transform_filter(_not_null(value))
        .properties(width=WIDTH, height=220)
    )
    return _spec(c)


WEEKDAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]


@_cached
def heatmap(data: str, value: str) -> dict[str, Any]:
    """Hour of day x weekday (ISO 1 = Monday), colour = count."""
    c = (
        alt.Chart(_data(data))
        .transform_filter(_not_null(value))
        .transform_calculate(day=f"{WEEKDAYS!r}[datum.weekday - 1]")
        .mark_rect()
        .encode(
            x=alt.X("hour:O", title="hour of day"),
            y=alt.Y("day:O", sort=WEEKDAYS, title=None),
            color=alt.Color(f"{value}:Q", title="questions", scale=alt.Scale(scheme="blues")),
            tooltip=[alt.Tooltip("day:N"), alt.Tooltip("hour:O"), alt.Tooltip(f"{value}:Q")],
        )
        .properties(width=alt.Step(22), height=alt.Step(22))
    )
    return _spec(c)
