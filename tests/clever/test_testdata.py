"""The Clever test-data generator: layout, quirks, consistency, determinism, and its source."""

from __future__ import annotations

import csv
import datetime as dt
import io
import os
import re
from collections import Counter, defaultdict
from pathlib import Path

import pyarrow.csv as pacsv
import pytest

from edulake.connectors.files import FileSource
from edulake.demo.clever_testdata import (
    REPORT_COLUMNS,
    TestDataSource,
    generate,
    generate_reports,
    main,
)
from edulake.sources.clever.names import REPORTS, ROLES, parse_report_name
from edulake.specs import load_spec

START = dt.date(2022, 1, 3)  # a Monday: days 5 and 6 are a weekend
DAYS = 7
SIZES = {"students": 3000, "teachers": 200, "staff": 60}
SCHOOLS = 15
HEX24 = re.compile(r"^[0-9a-f]{24}$")
TYPES = {
    "clever-district-added",
    "clever-teacher-added",
    "district-link",
    "teacher-link",
    "app",
    "web-link",
}


def read_rows(path: str) -> tuple[list[str], list[dict[str, str]]]:
    """Header and rows of a generated file, parsed by the standard CSV reader."""
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        rows = [dict(zip(canonical(header), r, strict=True)) for r in reader]
    return header, rows


def canonical(header: list[str]) -> list[str]:
    # staff files say staff_id: read it as sis_id so rows of every role compare
    return ["sis_id" if h == "staff_id" else h for h in header]


def rel(out: Path, path: str) -> str:
    return os.path.relpath(path, out).replace(os.sep, "/")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list]:
    out = tmp_path_factory.mktemp("clever")
    files = generate(
        str(out),
        start=START,
        days=DAYS,
        students=SIZES["students"],
        teachers=SIZES["teachers"],
        staff=SIZES["staff"],
        schools=SCHOOLS,
        seed=0,
    )
    return out, files


@pytest.fixture(scope="module")
def rows(dataset: tuple[Path, list]) -> dict[tuple[str, str], list[dict[str, str]]]:
    """All rows per (report, role), each tagged with its file."""
    out, files = dataset
    by: dict[tuple[str, str], list[dict[str, str]]] = defaultdict(list)
    for f in files:
        _, file_rows = read_rows(f.path)
        for r in file_rows:
            r["_file"] = rel(out, f.path)
        by[f.report, f.role] += file_rows
    return by


def small(out: Path, seed: int = 0, **kw: object) -> list[str]:
    params: dict = {"start": START, "days": 2, "students": 300, "seed": seed} | kw
    return generate_reports(str(out), **params)


def test_layout_and_names(dataset: tuple[Path, list]) -> None:
    out, files = dataset
    assert len(files) == DAYS * len(REPORTS) * len(ROLES)
    names = sorted(rel(out, f.path) for f in files)
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*.csv")) == names
    seen = set()
    for name in names:
        parsed = parse_report_name(name)
        assert parsed.relative == name
        seen.add((parsed.report_date, parsed.report, parsed.role))
    days = {START + dt.timedelta(days=i) for i in range(DAYS)}
    assert seen == {(d, r, role) for d in days for r in REPORTS for role in ROLES}
    assert "daily-participation/2022-01-03-daily-participation-students.csv" in names
    assert "resource-usage/2022-01-09-resource-usage-staff.csv" in names


def test_headers_match_specs_with_staff_id(dataset: tuple[Path, list]) -> None:
    _, files = dataset
    for f in files:
        header, _ = read_rows(f.path)
        expected = list(REPORT_COLUMNS[f.report])
        if f.role == "staff":
            expected[1] = "staff_id"
        assert header == expected
        # the pipeline's spec accepts it as is
        load_spec("clever", REPORTS[f.report]).resolve_header(header)


def test_row_counts_match_parameters(dataset: tuple[Path, list], rows: dict) -> None:
    _, files = dataset
    for f in files:
        if f.report == "daily-participation":
            assert f.rows == SIZES[f.role]
        _, file_rows = read_rows(f.path)
        assert len(file_rows) == f.rows
        assert os.path.getsize(f.path) == f.size
    for role, n in SIZES.items():
        assert len(rows["daily-participation", role]) == n * DAYS
        assert len(rows["resource-usage", role]) > 0


def test_about_half_inactive_on_school_days(rows: dict) -> None:
    for role in ROLES:
        dp = rows["daily-participation", role]
        weekday = [r for r in dp if dt.date.fromisoformat(r["date"]).weekday() < 5]
        weekend = [r for r in dp if dt.date.fromisoformat(r["date"]).weekday() >= 5]
        inactive = [r for r in weekday if r["active"].lower() == "false"]
        assert 0.35 < len(inactive) / len(weekday) < 0.65, role
        weekend_active = sum(r["active"].lower() == "true" for r in weekend)
        assert weekend_active < 0.2 * len(weekend)
        for r in dp:
            logins, resources = int(r["num_logins"]), int(r["num_resources_accessed"])
            if r["active"].lower() == "false":
                assert (logins, resources) == (0, 0)
            else:
                assert r["active"].lower() == "true"
                assert logins >= resources >= 1


def test_resource_usage_only_for_active_users_and_consistent(rows: dict) -> None:
    for role in ROLES:
        daily = {(r["date"], r["clever_user_id"]): r for r in rows["daily-participation", role]}
        per_user: dict[tuple[str, str], list[dict[str, str]]] = defaultdict(list)
        for r in rows["resource-usage", role]:
            per_user[r["date"], r["clever_user_id"]].append(r)
        assert per_user
        for key, usage in per_user.items():
            day = daily[key]
            assert day["active"].lower() == "true"
            assert len(usage) == int(day["num_resources_accessed"])
            assert len({u["resource_id"] for u in usage}) == len(usage)  # distinct resources
            assert sum(int(u["num_access"]) for u in usage) == int(day["num_logins"])
            assert all(int(u["num_access"]) >= 1 for u in usage)
        active = {k for k, r in daily.items() if r["active"].lower() == "true"}
        assert set(per_user) == active
    students_ru = rows["resource-usage", "students"]
    dp = rows["daily-participation", "students"]
    active_days = sum(1 for r in dp if r["active"].lower() == "true")
    assert len(students_ru) > 2.5 * active_days  # several resources per active user-day


def test_ids_stable_across_days_and_reports(rows: dict) -> None:
    for role in ROLES:
        identity: dict[str, tuple[str, str, str]] = {}
        for report in REPORTS:
            for r in rows[report, role]:
                assert HEX24.match(r["clever_user_id"])
                assert HEX24.match(r["clever_school_id"])
                assert r["sis_id"] == "" or r["sis_id"].isdigit()
                who = (r["sis_id"], r["clever_school_id"], r["school_name"])
                assert identity.setdefault(r["clever_user_id"], who) == who
        assert len(identity) == SIZES[role]
        sis = [v[0] for v in identity.values() if v[0]]
        assert len(set(sis)) == len(sis)  # one sis id per user
    schools = {r["clever_school_id"] for r in rows["daily-participation", "students"]}
    assert len(schools) == SCHOOLS
    all_sis = [{r["sis_id"] for r in rows["daily-participation", role]} - {""} for role in ROLES]
    assert not (all_sis[0] & all_sis[1])
    assert not (all_sis[1] & all_sis[2])


def test_blank_sis_ids_present(rows: dict) -> None:
    users = {r["clever_user_id"]: r["sis_id"] for r in rows["daily-participation", "students"]}
    blank = sum(1 for v in users.values() if v == "")
    assert 0.005 < blank / len(users) < 0.03
    assert any(r["sis_id"] == "" for r in rows["resource-usage", "students"])


def test_resource_names_and_types(rows: dict) -> None:
    usage = [r for role in ROLES for r in rows["resource-usage", role]]
    names = {r["resource_name"] for r in usage}
    assert {r["resource_type"] for r in usage} == TYPES
    assert any(not n.isascii() for n in names)
    assert any("\ufffd" in n for n in names)
    assert any(re.search(r"[\u4e00-\u9fff]", n) for n in names)  # CJK
    assert any(re.search(r"[\U0001f300-\U0001faff]", n) for n in names)  # emoji
    assert any(re.search(r"[éèñçü]", n) for n in names)  # accents
    assert any(n.startswith("https://") for n in names)
    assert any("," in n for n in names)
    assert any('"' in n for n in names)
    ids = defaultdict(set)
    for r in usage:
        ids[r["resource_id"]].add((r["resource_name"], r["resource_type"]))
        assert HEX24.match(r["resource_id"])
    assert all(len(v) == 1 for v in ids.values())  # a resource keeps its name and type


def test_file_styles_vary(dataset: tuple[Path, list]) -> None:
    _, files = dataset
    quoted = [f for f in files if Path(f.path).read_bytes().startswith(b'"date"')]
    assert 0 < len(quoted) < len(files)
    for f in quoted:  # every field quoted, in every line
        for line in Path(f.path).read_text("utf-8").splitlines()[:50]:
            assert line.startswith('"')
            assert line.endswith('"')
    spellings = set()
    for f in files:
        if f.report == "daily-participation":
            text = Path(f.path).read_text("utf-8")
            spellings |= {s for s in ("True", "TRUE", "False", "FALSE") if s in text}
    assert spellings == {"True", "TRUE", "False", "FALSE"}


def test_pyarrow_reads_every_file_with_the_spec_types(dataset: tuple[Path, list]) -> None:
    _, files = dataset
    for f in files:
        table = pacsv.read_csv(
            f.path,
            convert_options=pacsv.ConvertOptions(
                column_types={"sis_id": "string", "staff_id": "string", "date": "date32"}
            ),
        )
        assert table.num_rows == f.rows
        if f.report == "daily-participation":
            assert str(table.schema.field("active").type) == "bool"


def test_deterministic(tmp_path: Path) -> None:
    def contents(out: Path, seed: int) -> dict[str, bytes]:
        paths = small(out, seed=seed)
        return {rel(out, p): Path(p).read_bytes() for p in paths}

    a = contents(tmp_path / "a", 0)
    b = contents(tmp_path / "b", 0)
    c = contents(tmp_path / "c", 1)
    assert a == b
    assert a.keys() == c.keys()
    assert all(a[k] != c[k] for k in a)


def test_population_does_not_depend_on_days(tmp_path: Path) -> None:
    short = small(tmp_path / "short", days=1)
    long = small(tmp_path / "long", days=3)
    first = {rel(tmp_path / "short", p): Path(p).read_bytes() for p in short}
    again = {rel(tmp_path / "long", p): Path(p).read_bytes() for p in long}
    assert all(again[k] == v for k, v in first.items())


def test_multi_day_file_spans_the_days(tmp_path: Path) -> None:
    out = tmp_path / "multi"
    files = generate(str(out), start=START, days=4, students=200, seed=3, multi_day_file=True)
    assert len(files) == len(REPORTS) * len(ROLES)
    expected_days = [(START + dt.timedelta(days=i)).isoformat() for i in range(4)]
    for f in files:
        name = parse_report_name(rel(out, f.path))
        assert name.report_date == START
        _, file_rows = read_rows(f.path)
        assert sorted({r["date"] for r in file_rows}) == expected_days
        if f.report == "daily-participation":
            assert Counter(r["date"] for r in file_rows) == {d: f.rows // 4 for d in expected_days}


def test_subset_of_reports_and_roles(tmp_path: Path) -> None:
    paths = small(tmp_path, reports=("resource-usage",), roles=("staff",), days=3)
    assert [rel(tmp_path, p) for p in paths] == [
        f"resource-usage/2022-01-0{d}-resource-usage-staff.csv" for d in (3, 4, 5)
    ]
    assert not (tmp_path / "daily-participation").exists()


def test_bad_parameters(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown report"):
        small(tmp_path, reports=("idm-reports",))
    with pytest.raises(ValueError, match="unknown role"):
        small(tmp_path, roles=("parents",))
    with pytest.raises(ValueError, match="days"):
        small(tmp_path, days=0)


def test_source_lists_and_opens_files(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    src = TestDataSource(
        days=2, students=150, teachers=12, staff=5, schools=3, cache_dir=str(cache)
    )
    assert isinstance(src, FileSource)
    assert src.label == "testdata(days=2, students=150, seed=0)"
    assert not cache.exists()  # nothing generated until asked
    listed = src.list_files(["daily-participation", "resource-usage", "idm-reports"])
    assert len(listed) == 2 * len(REPORTS) * len(ROLES)
    for f in listed:
        parse_report_name(f.name)
        assert f.size == (cache / f.name).stat().st_size
    only_dp = src.list_files(["daily-participation"])
    assert {f.name.split("/")[0] for f in only_dp} == {"daily-participation"}
    first = only_dp[0]
    with src.open(first) as stream:
        data = stream.read()
    assert data == (cache / first.name).read_bytes()
    assert len(data.decode("utf-8").splitlines()) == 1 + 5  # header + staff (first by name)
    # a second source with the same parameters serves the cached files unchanged
    mtimes = {f.name: f.mtime for f in listed}
    again = TestDataSource(
        days=2, students=150, teachers=12, staff=5, schools=3, cache_dir=str(cache)
    )
    assert {f.name: f.mtime for f in again.list_files(list(REPORTS))} == mtimes
    src.close()


def test_source_default_cache_is_keyed_by_parameters() -> None:
    a = TestDataSource(days=2, students=100)
    b = TestDataSource(days=2, students=100)
    c = TestDataSource(days=2, students=100, seed=1)
    assert a.cache_dir == b.cache_dir != c.cache_dir
    assert TestDataSource().label == "testdata(days=5, students=2000, seed=0)"


def test_cli_prints_what_it_wrote(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--out", str(tmp_path), "--days", "2", "--students", "100", "--seed", "4"]) == 0
    out = capsys.readouterr().out
    assert "daily-participation/2022-01-03-daily-participation-students.csv" in out
    summary = out.strip().splitlines()[-1]
    assert re.match(r"wrote 12 files, [\d,]+ rows, [\d.]+ MB to .* in [\d.]+ s", summary)
    assert len(list(tmp_path.rglob("*.csv"))) == 12
    buf = io.StringIO(out)
    assert sum(1 for line in buf if " rows " in line and ".csv" in line) == 12


def test_unpadded_dates_like_older_exports(tmp_path: Path) -> None:
    paths = small(tmp_path, days=1, unpadded_dates=True)
    for p in paths:
        parse_report_name(rel(tmp_path, p))  # names stay as Clever writes them
        _, file_rows = read_rows(p)
        assert {r["date"] for r in file_rows} == {"2022-1-3"}
