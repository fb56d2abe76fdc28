"""Small-cell suppression of the published views (the dashboard layer).

Every view file under ``edulake/sql/views/<source>/`` is raw Athena SQL plus one
declaration line saying which of its columns count distinct people::

    -- publish: counts=active_students; group=date; measures=logins, resources_accessed

- ``counts``: columns that count distinct people. A row where any of them is
  ``0 < n < min_cell`` is suppressed (primary suppression).
- ``group``: the columns of a group with a published total (empty: the whole view is
  one group). Where the suppressed rows of a group add up to fewer than min_cell
  people (always so when exactly one row is suppressed), the row with the next smallest
  non-zero first count is suppressed too (complementary suppression), so a total minus
  the other rows can reveal neither one suppressed cell nor a sum of small ones (two
  cells of 1 would add up to 2, which says both are 1).
- ``measures``: columns computed over the row's people (averages, sums): NULL on every
  suppressed row (so an average over fewer than min_cell people is never shown).

A suppressed row keeps its labels (date, school, resource), shows NULL for its counts
and measures, and ``suppressed = true``; every published view gets that boolean column.

``-- publish: none`` states that a view has no cells about people (rendered as is).
A view without a declaration is refused: a new view cannot publish small cells by
forgetting one. The minimum n is substituted when views are created (DuckDB and Athena
get the same rendered SQL): :func:`published_views`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import sqlglot

from edulake.core.errors import DeterministicError

_DECL = re.compile(r"^--\s*publish:\s*(.*?)\s*$", re.M)
_IDENT = re.compile(r"^[a-z_][a-z0-9_]*$")
SUPPRESSED = "suppressed"
# Integer columns with these words in their name are treated as people counts by the
# audit when a view does not declare its counts (a view created by hand).
PEOPLE_WORDS = ("student", "user", "people", "person", "teacher", "staff", "learner", "patron")


class ViewDeclarationError(DeterministicError, ValueError):
    """A view file whose publish declaration is missing or wrong (fixed in the file)."""


@dataclass(frozen=True)
class Publish:
    """What a view file declares about its cells."""

    counts: tuple[str, ...] = ()
    group: tuple[str, ...] = ()
    measures: tuple[str, ...] = ()

    @property
    def protected(self) -> bool:
        return bool(self.counts)


def _names(text: str, what: str, view: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    for n in names:
        if not _IDENT.match(n):
            raise ViewDeclarationError(f"view {view}: {what} names {n[:40]!r}, not a column name")
    return names


def parse_declaration(view: str, sql: str) -> Publish:
    """The ``-- publish:`` line of a view file (:class:`ViewDeclarationError` if missing)."""
    found = _DECL.findall(sql)
    if len(found) != 1:
        raise ViewDeclarationError(
            f"view {view}: needs exactly one '-- publish: counts=...' line "
            "(or '-- publish: none' for a view with no cells about people)"
        )
    text = found[0]
    if text == "none":
        return Publish()
    fields: dict[str, tuple[str, ...]] = {}
    for part in text.split(";"):
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep or key not in ("counts", "group", "measures") or key in fields:
            raise ViewDeclarationError(
                f"view {view}: publish declaration parts are counts=, group=, measures= "
                "(each once, separated by ;)"
            )
        fields[key] = _names(value, key, view)
    decl = Publish(fields.get("counts", ()), fields.get("group", ()), fields.get("measures", ()))
    if not decl.counts:
        raise ViewDeclarationError(f"view {view}: counts= names no column (or say 'none')")
    return decl


def _q(name: str) -> str:
    return f'"{name}"'


def output_columns(view: str, sql: str) -> list[str]:
    """The names of a view's columns, from its SQL."""
    tree = sqlglot.parse_one(sql, read="athena")
    if not isinstance(tree, sqlglot.exp.Query):
        raise ViewDeclarationError(f"view {view}: not a SELECT")
    return list(tree.named_selects)


def suppressed_sql(view: str, sql: str, decl: Publish, min_cell: int) -> str:
    """The view's SQL with primary and complementary suppression around it (Athena SQL)."""
    columns = output_columns(view, sql)
    if SUPPRESSED in columns:
        raise ViewDeclarationError(f"view {view}: a column may not be named {SUPPRESSED}")
    for name in (*decl.counts, *decl.group, *decl.measures):
        if name not in columns:
            raise ViewDeclarationError(f"view {view}: declares {name}, not one of its columns")
    n = int(min_cell)
    if n < 1:
        raise ViewDeclarationError(f"minimum cell size must be at least 1, not {n}")
    first = _q(decl.counts[0])
    keys = [c for c in columns if c not in decl.counts and c not in decl.measures]
    small = " OR ".join(f"({_q(c)} > 0 AND {_q(c)} < {n})" for c in decl.counts)
    group = ", ".join(_q(c) for c in decl.group)
    by_group = f"PARTITION BY {group}" if group else ""
    by_group_flag = f"PARTITION BY {group + ', ' if group else ''}edulake_primary"
    # Next-smallest first: non-zero counts before zeros (suppressing a zero hides nothing),
    # then the count, then every label column, so the choice is the same on both engines.
    order = ", ".join(
        [f"CASE WHEN {first} = 0 THEN 1 ELSE 0 END", first] + [f"{_q(k)} NULLS FIRST" for k in keys]
    )
    hidden = set(decl.counts) | set(decl.measures)
    out = ",\n    ".join(
        f"CASE WHEN edulake_suppressed THEN NULL ELSE {_q(c)} END AS {_q(c)}"
        if c in hidden
        else _q(c)
        for c in columns
    )
    body = sql.strip().rstrip(";")
    return f"""WITH edulake_raw AS (
{body}
),
edulake_flagged AS (
    SELECT edulake_raw.*, CASE WHEN {small} THEN 1 ELSE 0 END AS edulake_primary
    FROM edulake_raw
),
edulake_ranked AS (
    SELECT edulake_flagged.*,
        SUM(edulake_primary) OVER ({by_group}) AS edulake_primaries,
        SUM(CASE WHEN edulake_primary = 1 THEN {first} ELSE 0 END) OVER ({by_group})
            AS edulake_hidden,
        ROW_NUMBER() OVER ({by_group_flag} ORDER BY {order}) AS edulake_order
    FROM edulake_flagged
),
edulake_decided AS (
    SELECT edulake_ranked.*,
        (edulake_primary = 1 OR (edulake_primaries >= 1 AND edulake_hidden < {n}
            AND edulake_primary = 0 AND edulake_order = 1 AND {first} > 0)) AS edulake_suppressed
    FROM edulake_ranked
)
SELECT
    {out},
    edulake_suppressed AS {SUPPRESSED}
FROM edulake_decided
"""


def render_view(view: str, sql: str, min_cell: int) -> str:
    """A view file as published: suppressed when it declares people counts."""
    decl = parse_declaration(view, sql)
    if not decl.protected:
        return sql
    return suppressed_sql(view, sql, decl, min_cell)


def min_cell_setting() -> int:
    """The configured minimum cell size (``EDULAKE_PUBLISH__MIN_CELL``, default 10)."""
    from edulake.core.settings import get_settings

    return get_settings().publish.min_cell


def published_views(
    source: str, views_dir: str | None = None, min_cell: int | None = None
) -> dict[str, str]:
    """A source's views as published: ``{view: Athena SQL}``, min n substituted.

    The one rendering step both catalogs use (DuckDB transpiles the result; Athena runs it).
    """
    from edulake.catalog.athena import load_views

    n = min_cell_setting() if min_cell is None else min_cell
    return {v: render_view(v, sql, n) for v, sql in load_views(source, views_dir).items()}


def declarations(source: str, views_dir: str | None = None) -> dict[str, Publish]:
    """The publish declarations of a source's bundled views (for the audit)."""
    from edulake.catalog.athena import load_views

    return {v: parse_declaration(v, sql) for v, sql in load_views(source, views_dir).items()}
