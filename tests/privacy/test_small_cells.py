"""The published layer: small cells of the dashboard views are suppressed, with complements.

Attack first: a school with 3 active students on a day. The raw view shows the 3; the
published view must not, and no difference of published numbers (a day's total minus the
other schools) may reveal it. Expectations are computed here in Python from the rows
written, independently of the SQL.
"""

from __future__ import annotations

import random
from collections import defaultdict

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from edulake.catalog import CatalogTable, publish_all
from edulake.catalog.athena import create_views, load_views, to_duckdb
from edulake.catalog.duckdb import DuckDBCatalog, connect
from edulake.core.lake import Lake, Zone
from edulake.privacy.audit import audit
from edulake.privacy.suppression import (
    ViewDeclarationError,
    parse_declaration,
    published_views,
    render_view,
)
from edulake.specs import load_spec

DAY1, DAY2 = "2024-03-04", "2024-03-05"
# (school id, name) -> active students on DAY1 and DAY2, inactive ones on DAY1
SCHOOLS = {
    ("sch-a", "Alder"): (3, 0, 1),  # the small school: 3 active students on DAY1
    ("sch-b", "Birch"): (12, 13, 0),
    ("sch-c", "Cedar"): (15, 14, 2),
    ("sch-d", "Dogwood"): (25, 20, 0),
}
TEACHERS_DAY1 = 10  # the teachers' row of DAY1 is published (usage_over_time)


def participation_rows() -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for (sid, name), (day1, day2, inactive) in SCHOOLS.items():
        for day, active, idle in ((DAY1, day1, inactive), (DAY2, day2, 0)):
            for i in range(active + idle):
                uid = f"{sid}-u{i}"
                rows.append(
                    {
                        "date": day,
                        "sis_id_pseudonym": "s" + uid,
                        "clever_user_id_pseudonym": uid,
                        "clever_school_id": sid,
                        "school_name": name,
                        "active": i < active,
                        "num_logins": (i % 3 + 1) if i < active else 0,
                        "num_resources_accessed": (i % 2 + 1) if i < active else 0,
                        "role": "students",
                    }
                )
    for i in range(TEACHERS_DAY1):
        rows.append(
            {
                "date": DAY1,
                "sis_id_pseudonym": f"st{i}",
                "clever_user_id_pseudonym": f"t{i}",
                "clever_school_id": "sch-b",
                "school_name": "Birch",
                "active": True,
                "num_logins": 1,
                "num_resources_accessed": 1,
                "role": "teachers",
            }
        )
    return rows


# app -> number of distinct students using it on DAY1 (all at Birch)
APPS = {"r-math": 12, "r-read": 2, "r-sci": 11, "r-art": 30}


def usage_rows() -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for rid, users in APPS.items():
        for i in range(users):
            rows.append(
                {
                    "date": DAY1,
                    "sis_id_pseudonym": f"ssch-b-u{i}",
                    "clever_user_id_pseudonym": f"sch-b-u{i}",
                    "clever_school_id": "sch-b",
                    "school_name": "Birch",
                    "resource_type": "app",
                    "resource_name": rid.upper(),
                    "resource_id": rid,
                    "num_access": 2,
                    "role": "students",
                }
            )
    return rows


def write_table(lake: Lake, name: str, rows: list[dict[str, object]]) -> None:
    schema = load_spec("clever", name).arrow_schema()
    for day in sorted({str(r["date"]) for r in rows}):
        part = [{k: v for k, v in r.items() if k != "date"} for r in rows if r["date"] == day]
        with lake.atomic_write(Zone.STAGE2P, f"clever/{name}/date={day}/f.parquet") as f:
            pq.write_table(pa.Table.from_pylist(part, schema=schema), f)


@pytest.fixture
def published(lake: Lake, tmp_path) -> str:
    """The Clever tables and views published to a DuckDB catalog (the real publish path)."""
    write_table(lake, "daily_participation", participation_rows())
    write_table(lake, "resource_usage", usage_rows())
    path = str(tmp_path / "lake" / "catalog" / "edulake.duckdb")
    tables = [
        CatalogTable.from_spec(lake, load_spec("clever", t))
        for t in ("daily_participation", "resource_usage")
    ]
    publish_all(DuckDBCatalog(path, lake), tables, views_for="clever")
    return path


def rows(path: str, sql: str) -> list[dict[str, object]]:
    con = connect(path)
    try:
        return con.sql(sql).to_arrow_table().to_pylist()
    finally:
        con.close()


def test_the_raw_view_shows_the_small_school(published):
    """The attack's premise: the unsuppressed SQL does show 3 students at Alder."""
    con = connect(published)
    try:
        raw = con.sql(to_duckdb(load_views("clever")["active_students_per_school_day"]))
        got = {
            (str(r["date"]), r["school_name"]): r["active_students"]
            for r in raw.to_arrow_table().to_pylist()
        }
    finally:
        con.close()
    assert got[(DAY1, "Alder")] == 3


def test_small_cell_and_its_complement_are_suppressed(published):
    got = {
        (str(r["date"]), r["school_name"]): r
        for r in rows(published, "SELECT * FROM clever.active_students_per_school_day")
    }
    alder, birch = got[(DAY1, "Alder")], got[(DAY1, "Birch")]
    assert alder["active_students"] is None and alder["suppressed"] is True
    # the next smallest school of the day (12 < 15 < 25) is suppressed as its complement
    assert birch["active_students"] is None and birch["suppressed"] is True
    assert got[(DAY1, "Cedar")]["active_students"] == 15
    assert got[(DAY1, "Dogwood")]["active_students"] == 25
    assert not any(r["suppressed"] for (day, _), r in got.items() if day == DAY2)
    assert {r["active_students"] for (day, _), r in got.items() if day == DAY2} == {13, 14, 20}


def test_the_days_total_minus_the_other_schools_does_not_reveal_it(published):
    """usage_over_time publishes the day's total of active students across schools."""
    total = rows(
        published,
        f"SELECT active_users FROM clever.usage_over_time "
        f"WHERE role = 'students' AND \"date\" = DATE '{DAY1}'",
    )[0]["active_users"]
    assert total == sum(v[0] for v in SCHOOLS.values())  # published: 55 >= 10
    shown = rows(
        published,
        f"SELECT active_students FROM clever.active_students_per_school_day "
        f"WHERE \"date\" = DATE '{DAY1}' AND NOT suppressed",
    )
    residue = total - sum(int(r["active_students"]) for r in shown)
    assert residue != 3  # the residue is Alder + Birch, not Alder
    assert residue == 3 + 12


def test_averages_over_fewer_than_min_people_are_suppressed(published):
    got = {
        r["school_name"]: r
        for r in rows(published, "SELECT * FROM clever.avg_usage_per_student_by_school")
    }
    # Alder: 3 active + 1 inactive students in all: 4 people, below 10
    alder = got["Alder"]
    assert alder["suppressed"] is True
    assert alder["students"] is None
    assert alder["avg_logins_per_student_day"] is None
    assert alder["avg_resources_per_student_day"] is None
    # Birch (13 students) is the complement: one suppressed school would be a residue
    assert got["Birch"]["suppressed"] is True and got["Birch"]["students"] is None
    # Cedar: 17 people, its average computed here from the rows written
    cedar = [r for r in participation_rows() if r["school_name"] == "Cedar"]
    expected = sum(int(r["num_logins"]) for r in cedar if r["role"] == "students") / len(cedar)
    assert got["Cedar"]["students"] == 17
    assert got["Cedar"]["avg_logins_per_student_day"] == pytest.approx(expected)


def test_apps_used_by_few_people_hide_their_measures(published):
    got = {r["resource_id"]: r for r in rows(published, "SELECT * FROM clever.top_apps_by_users")}
    assert got["r-read"]["users"] is None and got["r-read"]["accesses"] is None
    assert got["r-sci"]["suppressed"] is True  # 11: the next smallest, its complement
    assert got["r-math"]["users"] == 12 and got["r-math"]["accesses"] == 24
    assert got["r-art"]["users"] == 30


def test_no_published_view_has_a_small_cell(published):
    con = connect(published)
    try:
        views = con.sql(
            "SELECT schema_name, view_name FROM duckdb_views() WHERE NOT internal"
        ).fetchall()
        assert {v for _, v in views} >= set(load_views("clever"))
        for schema, view in views:
            cols = con.sql(f'SELECT * FROM "{schema}"."{view}" LIMIT 0').columns
            assert "suppressed" in cols
    finally:
        con.close()
    report = audit(Lake(published.rsplit("/catalog/", 1)[0]), catalog_paths=[published])
    assert [f for f in report.findings if f.kind == "small-cell"] == []
    assert report.scanned["published views checked for small cells"] >= 5


def test_audit_flags_a_deliberately_unsuppressed_view(published):
    raw = to_duckdb(load_views("clever")["active_students_per_school_day"])
    con = duckdb.connect(published)
    try:
        con.execute(f"CREATE VIEW clever.raw_active AS {raw}")
    finally:
        con.close()
    report = audit(Lake(published.rsplit("/catalog/", 1)[0]), catalog_paths=[published])
    small = [f for f in report.findings if f.kind == "small-cell"]
    assert len(small) == 1
    assert small[0].location.endswith("view clever.raw_active")
    assert small[0].detail == "column active_students: cells with 0 < n < 10"
    assert "3" not in small[0].detail.replace("0 < n < 10", "")  # no values


def test_audit_flags_a_view_whose_complement_is_missing(published):
    """A view that suppresses primaries only (the old mistake) is found by the audit."""
    con = duckdb.connect(published)
    try:
        con.execute(
            "CREATE OR REPLACE VIEW clever.active_students_per_school_day AS "
            'SELECT "date", clever_school_id, school_name, '
            "CASE WHEN n < 10 THEN NULL ELSE n END AS active_students, n < 10 AS suppressed "
            'FROM (SELECT "date", clever_school_id, school_name, '
            "COUNT(DISTINCT clever_user_id_pseudonym) AS n FROM clever.daily_participation "
            "WHERE role = 'students' AND active GROUP BY ALL)"
        )
    finally:
        con.close()
    report = audit(Lake(published.rsplit("/catalog/", 1)[0]), catalog_paths=[published])
    small = [f for f in report.findings if f.kind == "small-cell"]
    assert [f.detail for f in small] == [
        "column active_students: a group with one suppressed cell (no complement)"
    ]


def test_audit_flags_complements_that_leave_a_small_sum(tmp_path):
    """Two schools of 1 active student on a day, hidden without a complement: the day's
    total minus the shown schools is 2, so both are known to be 1. The audit recounts the
    hidden cells from the tables and flags it; the published view passes."""
    lake = Lake(str(tmp_path / "lake"), np_root=str(tmp_path / "np"))
    one = participation_rows()[0]  # an active student of DAY1
    part = [
        one | {"clever_school_id": sid, "school_name": sid, "clever_user_id_pseudonym": f"{sid}{i}"}
        for sid, n in (("x", 1), ("y", 1), ("z", 40), ("w", 50))
        for i in range(n)
    ]
    assert {(r["date"], r["active"], r["role"]) for r in part} == {(DAY1, True, "students")}
    write_table(lake, "daily_participation", part)
    write_table(lake, "resource_usage", usage_rows())
    path = str(tmp_path / "lake" / "catalog" / "edulake.duckdb")
    tables = [
        CatalogTable.from_spec(lake, load_spec("clever", t))
        for t in ("daily_participation", "resource_usage")
    ]
    publish_all(DuckDBCatalog(path, lake), tables, views_for="clever")
    assert [f for f in audit(lake, catalog_paths=[path]).findings if f.kind == "small-cell"] == []
    con = duckdb.connect(path)
    try:  # the rule of "exactly one suppressed" only: the 1s hide each other, no complement
        con.execute(
            "CREATE OR REPLACE VIEW clever.active_students_per_school_day AS "
            'SELECT "date", clever_school_id, school_name, '
            "CASE WHEN n < 10 THEN NULL ELSE n END AS active_students, n < 10 AS suppressed "
            'FROM (SELECT "date", clever_school_id, school_name, '
            "COUNT(DISTINCT clever_user_id_pseudonym) AS n FROM clever.daily_participation "
            "WHERE role = 'students' AND active GROUP BY ALL)"
        )
    finally:
        con.close()
    small = [f for f in audit(lake, catalog_paths=[path]).findings if f.kind == "small-cell"]
    assert [f.detail for f in small] == [
        "column active_students: a group whose hidden cells add up to fewer than 10"
    ]


def test_audit_flags_a_view_it_cannot_read(published):
    """A view that fails (its table dropped) cannot be checked: a finding, without the error."""
    con = duckdb.connect(published)
    try:
        con.execute("CREATE TABLE clever.tmp AS SELECT 3 AS students")
        con.execute("CREATE VIEW clever.broken AS SELECT students FROM clever.tmp")
        con.execute("DROP TABLE clever.tmp")
    finally:
        con.close()
    report = audit(Lake(published.rsplit("/catalog/", 1)[0]), catalog_paths=[published])
    small = [f for f in report.findings if f.kind == "small-cell"]
    assert [(f.location.rsplit(" ", 1)[-1], f.detail) for f in small] == [
        ("clever.broken", "view cannot be read (CatalogException): not checked")
    ]


def test_the_minimum_reaches_duckdb_and_athena(monkeypatch, lake, tmp_path):
    """EDULAKE_PUBLISH__MIN_CELL: the same rendered SQL for DuckDB views and Athena DDL;
    a changed minimum re-creates the DuckDB views at the next publish."""
    write_table(lake, "daily_participation", participation_rows())
    write_table(lake, "resource_usage", usage_rows())
    path = str(tmp_path / "cat.duckdb")
    tables = [
        CatalogTable.from_spec(lake, load_spec("clever", t))
        for t in ("daily_participation", "resource_usage")
    ]

    def alder() -> object:
        publish_all(DuckDBCatalog(path, lake), tables, views_for="clever")
        got = {
            (str(r["date"]), r["school_name"]): r["active_students"]
            for r in rows(path, "SELECT * FROM clever.active_students_per_school_day")
        }
        return got[(DAY1, "Alder")]

    assert alder() is None  # default 10
    monkeypatch.setenv("EDULAKE_PUBLISH__MIN_CELL", "3")
    assert alder() == 3  # 3 is not below 3: the view was re-created with the new minimum
    monkeypatch.setenv("EDULAKE_PUBLISH__MIN_CELL", "4")
    assert alder() is None

    class Recorder:
        def __init__(self) -> None:
            self.ddl: list[str] = []

        def run(self, sql: str, name: str, run_key: str = "") -> None:
            self.ddl.append(sql)

    rec = Recorder()
    monkeypatch.setenv("EDULAKE_PUBLISH__MIN_CELL", "7")
    create_views(rec, "clever", "edu")  # type: ignore[arg-type]
    assert len(rec.ddl) == len(load_views("clever"))
    assert all("< 7" in d and "< 10" not in d and "edu_clever." in d for d in rec.ddl)


def test_the_minimum_is_a_checked_setting(monkeypatch):
    from edulake.core.settings import ConfigError, check_setting_names, get_settings

    assert get_settings().publish.min_cell == 10
    monkeypatch.setenv("EDULAKE_PUBLISH__MIN_CELL", "0")
    with pytest.raises(ConfigError, match="EDULAKE_PUBLISH__MIN_CELL"):
        get_settings()
    with pytest.raises(ConfigError, match="EDULAKE_PUBLISH__MIN_CEL "):
        check_setting_names({"EDULAKE_PUBLISH__MIN_CEL": "5"})


def test_a_view_without_a_declaration_is_refused():
    sql = "SELECT school_name, COUNT(*) AS students FROM clever.daily_participation GROUP BY 1"
    with pytest.raises(ViewDeclarationError, match="publish"):
        render_view("x", sql, 10)
    with pytest.raises(ViewDeclarationError, match="not one of its columns"):
        render_view("x", "-- publish: counts=pupils\n" + sql, 10)
    assert render_view("x", "-- publish: none\n" + sql, 10).endswith(sql)
    assert parse_declaration("x", "-- publish: counts=a, b; group=g\n").counts == ("a", "b")
    for view in load_views("clever"):  # every bundled view declares its counts
        assert parse_declaration(view, load_views("clever")[view]).counts


def expected_suppression(cells: list[tuple[str, str, int]], n: int) -> set[tuple[str, str]]:
    """The rule, in Python: (group, key) of every suppressed cell."""
    by_group: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for g, k, c in cells:
        by_group[g].append((k, c))
    out: set[tuple[str, str]] = set()
    for g, members in by_group.items():
        primary = {k for k, c in members if 0 < c < n}
        out |= {(g, k) for k in primary}
        if primary and sum(c for k, c in members if k in primary) < n:
            rest = sorted((c, k) for k, c in members if k not in primary and c > 0)
            if rest:
                out.add((g, rest[0][1]))
    return out


def test_two_cells_of_one_get_a_complement():
    """Two suppressed 1s add up to 2 = total minus the rest: both would be known."""
    con = duckdb.connect()
    con.execute("CREATE SCHEMA s")
    con.execute(
        "CREATE TABLE s.cells AS SELECT * FROM (VALUES ('a', 1), ('b', 1), ('c', 40), "
        "('d', 50)) AS t(k, c)"
    )
    got = con.sql(to_duckdb(render_view("v", "-- publish: counts=c\nSELECT k, c FROM s.cells", 10)))
    assert {k for k, c, s in got.fetchall() if s} == {"a", "b", "c"}


def test_the_rule_matches_an_independent_computation_on_random_cells():
    """Many random groups of cells through the rendered SQL (DuckDB) and the rule in Python."""
    rng = random.Random(16)
    cells = [
        (f"g{g}", f"k{k:02d}", rng.choice([0, 1, 2, 5, 9, 10, 11, 12, 30, rng.randint(0, 40)]))
        for g in range(300)
        for k in range(rng.randint(1, 6))
    ]
    con = duckdb.connect()
    con.execute("CREATE SCHEMA s")
    con.execute("CREATE TABLE s.cells (g VARCHAR, k VARCHAR, c BIGINT)")
    con.executemany("INSERT INTO s.cells VALUES (?, ?, ?)", cells)
    view = "-- publish: counts=c; group=g\nSELECT g, k, c FROM s.cells"
    got = con.sql(to_duckdb(render_view("v", view, 10))).fetchall()
    suppressed = {(g, k) for g, k, c, s in got if s}
    assert all(c is None for g, k, c, s in got if s)
    assert suppressed == expected_suppression(cells, 10)
    # and no group leaves a single cell, or a small sum, to be found by difference
    for g in {g for g, _ in suppressed}:
        members = [c for gg, _, c in cells if gg == g and c > 0]
        hidden = [c for gg, k, c in cells if (gg, k) in suppressed]
        assert (len(hidden) >= 2 and sum(hidden) >= 10) or len(hidden) == len(members)
    assert any(len([1 for gg, _ in suppressed if gg == g]) >= 3 for g in {g for g, _, _ in cells})


def test_published_views_render_every_bundled_view_for_both_engines():
    from edulake.catalog.athena import qualify

    for view, sql in published_views("clever", min_cell=10).items():
        assert "edulake_suppressed" in sql, view
        qualify(sql, "edu")  # Athena's dialect parses it
        to_duckdb(sql)


def test_no_day_total_reveals_a_school_on_a_random_lake(lake: Lake, tmp_path):
    """The attack on many days: for each day, the published total of active students minus
    the shown schools is a sum of at least two hidden schools and at least 10 students."""
    rng = random.Random(8)
    schools = [(f"sch-{i}", f"School {i}") for i in range(6)]
    truth: dict[tuple[str, str], int] = {}
    part: list[dict[str, object]] = []
    for d in range(20):
        day = f"2024-04-{d + 1:02d}"
        for sid, name in rng.sample(schools, rng.randint(1, 6)):
            active = rng.choice([1, 2, 3, 5, 8, 9, 10, 11, 14, 25, rng.randint(1, 40)])
            truth[(day, sid)] = active
            for i in range(active):
                part.append(
                    {
                        "date": day,
                        "sis_id_pseudonym": f"s{sid}-{i}",
                        "clever_user_id_pseudonym": f"{sid}-{i}",
                        "clever_school_id": sid,
                        "school_name": name,
                        "active": True,
                        "num_logins": 1,
                        "num_resources_accessed": 1,
                        "role": "students",
                    }
                )
    write_table(lake, "daily_participation", part)
    write_table(lake, "resource_usage", usage_rows())
    path = str(tmp_path / "cat.duckdb")
    tables = [
        CatalogTable.from_spec(lake, load_spec("clever", t))
        for t in ("daily_participation", "resource_usage")
    ]
    publish_all(DuckDBCatalog(path, lake), tables, views_for="clever")
    totals = {
        str(r["date"]): r["active_users"]
        for r in rows(path, "SELECT * FROM clever.usage_over_time WHERE role = 'students'")
    }
    cells = rows(path, "SELECT * FROM clever.active_students_per_school_day")
    checked = 0
    for day in sorted(totals):
        day_cells = [c for c in cells if str(c["date"]) == day]
        hidden = [truth[(day, str(c["clever_school_id"]))] for c in day_cells if c["suppressed"]]
        shown = [int(c["active_students"]) for c in day_cells if not c["suppressed"]]
        for c in day_cells:  # shown cells are the true counts, and none is small
            if not c["suppressed"]:
                assert c["active_students"] == truth[(day, str(c["clever_school_id"]))] >= 10
        if totals[day] is None or not hidden:
            continue
        residue = totals[day] - sum(shown)
        assert residue == sum(hidden)
        assert len(hidden) >= 2 and residue >= 10 and residue > max(hidden)
        checked += 1
    assert checked >= 5  # the attack was tried on several days
