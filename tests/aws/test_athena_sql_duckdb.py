"""The repo's Athena SQL run for real: transpiled to DuckDB over a lake (moto runs no SQL)."""

from __future__ import annotations

import datetime as dt

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from edulake.catalog.athena import list_queries, load_query, load_views, to_duckdb
from edulake.core.lake import Lake, Zone
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


def write_clever(lake: Lake) -> None:
    """A few days of both Clever tables, day-partitioned as the Clever pipeline writes them."""
    for name, rows in {
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
    }.items():
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
    """Each Clever dashboard view (Athena SQL) runs over the lake and returns rows."""
    rows = con.execute(to_duckdb(load_views("clever")[view])).fetchall()
    assert rows


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
