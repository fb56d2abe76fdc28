"""Small helpers of the dashboards: query rows as JSON values, numbers as words, bars."""

from __future__ import annotations

import datetime as dt
import decimal
import math
from collections.abc import Sequence
from typing import Any


def json_value(v: Any) -> Any:
    """A DuckDB value as JSON (dates as ISO text, decimals as floats, NaN as null)."""
    if isinstance(v, dt.datetime | dt.date):
        return v.isoformat()
    if isinstance(v, decimal.Decimal):
        return float(v)
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def rows_of(relation: Any) -> list[dict[str, Any]]:
    """A DuckDB relation's rows as dicts of JSON values."""
    names = [d[0] for d in relation.description]
    return [
        {n: json_value(v) for n, v in zip(names, row, strict=True)} for row in relation.fetchall()
    ]


def fmt_int(v: Any) -> str:
    if v is None:
        return "suppressed"
    return f"{int(v):,}"


def fmt_share(part: float, whole: float) -> str:
    return f"{part / whole:.2%}" if whole else "0.00%"


_EIGHTHS = " ▏▎▍▌▋▊▉"


def bar(value: float, largest: float, width: int = 24) -> str:
    """A Unicode bar of ``value`` against ``largest`` (eighths of a block)."""
    if largest <= 0 or value <= 0:
        return ""
    units = round(value / largest * width * 8)
    return "█" * (units // 8) + (_EIGHTHS[units % 8] if units % 8 else "")


def bar_lines(items: Sequence[tuple[str, Any]], width: int = 24) -> list[str]:
    """``label  ████▌ 1,234`` per item (labels padded to one column)."""
    values = [float(v or 0) for _, v in items]
    largest = max(values, default=0.0)
    pad = min(max((len(label) for label, _ in items), default=0), 40)
    return [
        f"{label[:40]:<{pad}}  {bar(v, largest, width):<{width}} {fmt_int(raw)}"
        for (label, raw), v in zip(items, values, strict=True)
    ]
