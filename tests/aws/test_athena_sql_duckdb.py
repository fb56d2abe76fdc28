"""The repo's Athena SQL run for real: transpiled to DuckDB over a lake (moto runs no SQL)."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from edulake.catalog.athena import list_queries, load_query, load_views, to_duckdb
from edulake.core.lake import Lake, Zone
from edulake.privacy.suppression import published_views
from edulake.specs import load_spec

REFERENCE_DESK = pa.schema(
    [
        pa.field("id", pa.int64()),
        pa.field("start_date", pa.timestamp("ms")),
        pa.field("question_type", pa.string()),
        pa.field("research_topic", pa.string()),
        pa.field("entered_by_pseudonym", pa.string()),
    ]
)


def _ts(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


def write_reference_desk(lake: Lake) -> None:
    """Two month partitions as the LibInsight pipeline lays them out (month in the path)."""
    months = {
        "2024-01": [
            (12, "2024-01-07 15:30:00", "Reference", "history: WW2", "p1"),  # a Sunday
            (11, "2024-01-02 09:05:00", "Directional", None, "p2"),  # a Tuesday
        ],
        "2024-02": [(13, "2024-02-29 23:59:59", "Reference", "math: primes", "p1")],
    }
    for month, rows in months.items():
        table = pa.table(
            {
                "id": [r[0] for r in rows],
                "start_date": [_ts(r[1]) for r in rows],
                "question_type": [r[2] for r in rows],
                "research_topic": [r[3] for r in rows],
                "entered_by_pseudonym": [r[4] for r in rows],
            },
            schema=REFERENCE_DESK,
        )
        with lake.atomic_write(
            Zone.STAGE2P, f"libinsight/reference_desk/month={month}/a.parquet"
        ) as f:
            pq.write_table(table, f)


CLEVER: dict[str, list[dict[str, Any]]] = {
    "daily_participation": [
        {
            "date": "2024-01-02",
            "sis_id_pseudonym": "s1",
            "clever_user_id_pseudonym": "u1",
            "clever_school_id": "sch1",
            "school_name": "North",
            "active": True,
            "num_logins": 3,
            "num_resources_accessed": 2,
            "role": "students",
        },
        {
            "date": "2024-01-02",
            "sis_id_pseudonym": "s2",
            "clever_user_id_pseudonym": "u2",
            "clever_school_id": "sch1",
            "school_name": "North",
            "active": False,
            "num_logins": 0,
            "num_resources_accessed": 0,
            "role": "students",
        },
        {
            "date": "2024-01-03",
            "sis_id_pseudonym": "s1",
            "clever_user_id_pseudonym": "u1",
            "clever_school_id": "sch1",
            "school_name": "North",
            "active": True,
            "num_logins": 1,
            "num_resources_accessed": 1,
            "role": "students",
        },
    ],
    "resource_usage": [
        {
            "date": "2024-01-02",
            "sis_id_pseudonym": "s1",
            "clever_user_id_pseudonym": "u1",
            "clever_school_id": "sch1",
            "school_name": "North",
            "resource_type": "app",
            "resource_name": "Math App",
            "resource_id": "r1",
            "num_access": 2,
            "role": "students",
        },
        {
            "date": "2024-01-03",
            "sis_id_pseudonym": "s1",
            "clever_user_id_pseudonym": "u1",
            "clever_school_id": "sch1",
            "school_name": "North",
            "resource_type": "web-link",
            "resource_name": "https://x.example",
            "resource_id": "r2",
            "num_access": 1,
            "role": "students",
        },
    ],
}


def write_clever(lake: Lake) -> None:
    """A few days of both Clever tables, day-partitioned as the Clever pipeline writes them."""
    for name, rows in CLEVER.items():
        schema = load_spec("clever", name).arrow_schema()
        for day in sorted({r["date"] for r in rows}):
            part = [{k: v for k, v in r.items() if k != "date"} for r in rows if r["date"] == day]
            table = pa.Table.from_pylist(part, schema=schema)
            with lake.atomic_write(Zone.STAGE2P, f"clever/{name}/date={day}/f.parquet") as f:
                pq.write_table(table, f)


@pytest.fixture
def con(tmp_path) -> duckdb.DuckDBPyConnection:
    """DuckDB with one schema per source and a view per lake table (as the DuckDB catalog)."""
    lake = Lake(str(tmp_path / "lake"))
    write_reference_desk(lake)
    write_clever(lake)
    con = duckdb.connect()
    for source, table in [
        ("libinsight", "reference_desk"),
        ("clever", "daily_participation"),
        ("clever", "resource_usage"),
    ]:
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {source}")
        glob = lake.uri(Zone.STAGE2P, f"{source}/{table}") + "/*/*.parquet"
        con.execute(
            f"CREATE VIEW {source}.{table} AS SELECT * FROM read_parquet('{glob}', "
            "hive_partitioning = true, hive_types_autocast = true)"
        )
    return con


def test_libinsight_tableau_extract_answers(con):
    sql = to_duckdb(load_query("libinsight_tableau_extract"))
    rel = con.execute(sql)
    names = [d[0] for d in rel.description]
    rows = [dict(zip(names, r, strict=True)) for r in rel.fetchall()]
    assert names[:5] == [
        "id",
        "start_date",
        "question_type",
        "research_topic",
        "entered_by_pseudonym",
    ]
    assert [r["id"] for r in rows] == [11, 12, 13]  # ordered by start time
    assert [r["month"] for r in rows] == ["2024-01", "2024-01", "2024-02"]
    assert [r["start_day"] for r in rows] == [
        dt.date(2024, 1, 2),
        dt.date(2024, 1, 7),
        dt.date(2024, 2, 29),
    ]
    # Athena's day_of_week is ISO (Monday 1 .. Sunday 7): the transpiled query must agree.
    assert [r["start_weekday"] for r in rows] == [2, 7, 4]
    assert [r["start_hour"] for r in rows] == [9, 15, 23]
    assert {r["start_year"] for r in rows} == {2024}


def test_every_bundled_athena_query_runs_in_duckdb(con):
    for name in list_queries():
        con.execute(to_duckdb(load_query(name))).fetchall()


@pytest.mark.parametrize("view", sorted(load_views("clever")))
def test_clever_views_run_in_duckdb(con, view):
    """Each Clever dashboard view (Athena SQL, as published) runs over the lake."""
    rows = con.execute(to_duckdb(published_views("clever", min_cell=10)[view])).fetchall()
    assert rows


def raw_answers() -> dict[str, tuple[list[str], list[str], list[dict[str, Any]]]]:
    """Each view's unsuppressed answer computed in Python from CLEVER: (group, counts, rows)."""
    part, usage = CLEVER["daily_participation"], CLEVER["resource_usage"]
    out: dict[str, tuple[list[str], list[str], list[dict[str, Any]]]] = {}
    cells: dict[tuple[Any, ...], set[str]] = defaultdict(set)
    for r in part:
        if r["role"] == "students" and r["active"]:
            cells[(r["date"], r["clever_school_id"], r["school_name"])].add(
                r["clever_user_id_pseudonym"]
            )
    out["active_students_per_school_day"] = (
        ["date"],
        ["active_students"],
        [
            {"date": d, "clever_school_id": s, "school_name": n, "active_students": len(u)}
            for (d, s, n), u in cells.items()
        ],
    )
    schools: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
    for r in part:
        if r["role"] == "students":
            schools[(r["clever_school_id"], r["school_name"])].append(r)
    out["avg_usage_per_student_by_school"] = (
        [],
        ["students"],
        [
            {
                "clever_school_id": s,
                "school_name": n,
                "students": len({r["clever_user_id_pseudonym"] for r in rs}),
                "days": len({r["date"] for r in rs}),
                "avg_logins_per_student_day": sum(r["num_logins"] for r in rs) / len(rs),
                "avg_resources_per_student_day": sum(r["num_resources_accessed"] for r in rs)
                / len(rs),
            }
            for (s, n), rs in schools.items()
        ],
    )
    apps: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in usage:
        if r["resource_type"] == "app":
            apps[r["resource_id"]].append(r)
    out["top_apps_by_users"] = (
        [],
        ["users"],
        [
            {
                "resource_id": a,
                "resource_name": max(r["resource_name"] for r in rs),
                "users": len({r["clever_user_id_pseudonym"] for r in rs}),
                "accesses": sum(r["num_access"] for r in rs),
            }
            for a, rs in apps.items()
        ],
    )
    per_res: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
    for r in usage:
        if r["role"] == "students":
            per_res[(r["clever_school_id"], r["school_name"], r["resource_id"])].append(r)
    ranked: list[dict[str, Any]] = []
    for school in sorted({k[0] for k in per_res}):
        res = [
            {
                "clever_school_id": s,
                "school_name": n,
                "resource_name": max(r["resource_name"] for r in rs),
                "resource_type": max(r["resource_type"] for r in rs),
                "students": len({r["clever_user_id_pseudonym"] for r in rs}),
            }
            for (s, n, _), rs in per_res.items()
            if s == school
        ]
        res.sort(key=lambda r: (-r["students"], r["resource_name"]))
        ranked += [dict(r, resource_rank=i + 1) for i, r in enumerate(res[:5])]
    out["top_resources_by_school"] = (["clever_school_id"], ["students"], ranked)
    days: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
    for r in part:
        days[(r["date"], r["role"])].append(r)
    out["usage_over_time"] = (
        ["date"],
        ["active_users"],
        [
            {
                "date": d,
                "role": role,
                "active_users": len({r["clever_user_id_pseudonym"] for r in rs if r["active"]}),
                "logins": sum(r["num_logins"] for r in rs),
                "resources_accessed": sum(r["num_resources_accessed"] for r in rs),
            }
            for (d, role), rs in days.items()
        ],
    )
    return out


def suppress(
    group: list[str], counts: list[str], rows: list[dict[str, Any]], n: int
) -> list[dict[str, Any]]:
    """The published rule in Python: primary (0 < count < n), then a complement in each
    group whose hidden people add up to fewer than n."""
    by_group: dict[tuple[Any, ...], list[int]] = defaultdict(list)
    for i, r in enumerate(rows):
        by_group[tuple(r[g] for g in group)].append(i)
    hidden: set[int] = set()
    for members in by_group.values():
        primary = {i for i in members if any(0 < rows[i][c] < n for c in counts)}
        hidden |= primary
        rest = [i for i in members if i not in primary and rows[i][counts[0]] > 0]
        if primary and sum(rows[i][counts[0]] for i in primary) < n and rest:
            hidden.add(min(rest, key=lambda i: rows[i][counts[0]]))
    keep = ("date", "role", "clever_school_id", "school_name", "resource_id", "resource_name")
    keep += ("resource_type", "resource_rank", "days")
    return [
        {k: (v if k in keep or i not in hidden else None) for k, v in r.items()}
        | {"suppressed": i in hidden}
        for i, r in enumerate(rows)
    ]


def _key(r: dict[str, Any]) -> tuple[str, ...]:
    return tuple(str(r[k]) for k in sorted(r) if k != "suppressed")


@pytest.mark.parametrize("min_cell", [1, 2, 10])
@pytest.mark.parametrize("view", sorted(load_views("clever")))
def test_clever_views_answers_with_suppression(con, view, min_cell):
    """The published views' answers equal the Python computation and suppression rule."""
    group, counts, raw = raw_answers()[view]
    expected = suppress(group, counts, raw, min_cell)
    rel = con.execute(to_duckdb(published_views("clever", min_cell=min_cell)[view]))
    names = [d[0] for d in rel.description]
    got = [dict(zip(names, r, strict=True)) for r in rel.fetchall()]
    for r in got:
        if isinstance(r.get("date"), dt.date):
            r["date"] = r["date"].isoformat()
    assert names[-1] == "suppressed"

    def rounded(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return sorted(
            ({k: round(v, 9) if isinstance(v, float) else v for k, v in r.items()} for r in rows),
            key=_key,
        )

    assert rounded(got) == rounded(expected)
    if min_cell == 1:  # nothing is suppressed: the raw answers themselves
        assert not any(r["suppressed"] for r in got)
    if min_cell == 10:  # every non-zero count in this small lake is hidden
        assert all(r["suppressed"] for r in got if any(r[c] != 0 for c in counts))


def test_nested_values_in_the_local_csv_look_like_athenas():
    """Multi-value LibInsight fields are arrays: the local CSV writes them as Athena does."""
    from edulake.catalog.athena import csv_ready

    table = pa.table(
        {
            "id": [1, 2, 3],
            "topics": pa.array([["a", "b"], None, []], pa.list_(pa.string())),
        }
    )
    out = csv_ready(table)
    assert out.column("topics").to_pylist() == ["[a, b]", None, "[]"]
    assert out.column("id").to_pylist() == [1, 2, 3]  # flat columns untouched
