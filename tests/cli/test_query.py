"""``edulake query``: whole values, csv/json output, the configured lake, one-line errors."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from edulake.cli import main
from edulake.privacy.pseudonym import Pseudonymizer
from tests.envs import without_edulake
from tests.keys import KEY

REPO = Path(__file__).parents[2]
PSEUDONYM = Pseudonymizer(KEY).pseudonymize(pa.array(["S123456"]))[0].as_py()


def make_catalog(root: Path, rows: int, path: Path | None = None) -> Path:
    """A real catalog file where the flows put it: <root>/catalog/edulake.duckdb."""
    file = path or root / "catalog" / "edulake.duckdb"
    file.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(file))
    con.execute("CREATE SCHEMA clever")
    con.execute(
        "CREATE TABLE clever.people (student_pseudonym VARCHAR, school VARCHAR, logins INT, "
        "note VARCHAR)"
    )
    con.executemany(
        "INSERT INTO clever.people VALUES (?, ?, ?, ?)",
        [
            [PSEUDONYM if i == 0 else f"p{i}", 'School, "North"', i, None if i else "a\nb"]
            for i in range(rows)
        ],
    )
    con.close()
    return file


def test_a_64_character_pseudonym_is_printed_whole(tmp_path, capsys) -> None:
    assert len(PSEUDONYM) == 64
    make_catalog(tmp_path / "lake", 3)
    sql = "SELECT student_pseudonym FROM clever.people ORDER BY logins"
    assert main(["query", sql, "--lake-root", str(tmp_path / "lake")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].strip() == "student_pseudonym"
    assert out[1].strip() == PSEUDONYM


def test_max_width_cuts_when_asked(tmp_path, capsys) -> None:
    make_catalog(tmp_path / "lake", 1)
    sql = "SELECT student_pseudonym FROM clever.people"
    assert main(["query", sql, "--lake-root", str(tmp_path / "lake"), "--max-width", "10"]) == 0
    assert capsys.readouterr().out.splitlines()[1].strip() == PSEUDONYM[:10]


def test_csv_parses_back(tmp_path, capsys) -> None:
    make_catalog(tmp_path / "lake", 4)
    sql = "SELECT * FROM clever.people ORDER BY logins"
    assert main(["query", sql, "--lake-root", str(tmp_path / "lake"), "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["logins"] for r in rows] == ["0", "1", "2", "3"]
    assert rows[0]["student_pseudonym"] == PSEUDONYM
    assert {r["school"] for r in rows} == {'School, "North"'}  # quoting survives
    assert rows[0]["note"] == "a\nb" and rows[1]["note"] == ""


def test_json_loads(tmp_path, capsys) -> None:
    make_catalog(tmp_path / "lake", 2)
    sql = "SELECT * FROM clever.people ORDER BY logins"
    assert main(["query", sql, "--lake-root", str(tmp_path / "lake"), "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data == [
        {"student_pseudonym": PSEUDONYM, "school": 'School, "North"', "logins": 0, "note": "a\nb"},
        {"student_pseudonym": "p1", "school": 'School, "North"', "logins": 1, "note": None},
    ]


def test_the_configured_lake_root_is_honoured_and_named(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    make_catalog(tmp_path / "lake", 7)  # ./lake: the old default, not the configured lake
    configured = make_catalog(tmp_path / "district-lake", 3)
    monkeypatch.setenv("EDULAKE_LAKE__ROOT", str(tmp_path / "district-lake"))
    assert main(["query", "SELECT count(*) AS n FROM clever.people", "--format", "json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out) == [{"n": 3}]
    assert f"reading catalog {configured}" in captured.err


def test_the_configured_catalog_file_is_honoured(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    make_catalog(tmp_path / "lake", 7)
    file = make_catalog(tmp_path, 2, path=tmp_path / "elsewhere" / "bi.duckdb")
    monkeypatch.setenv("EDULAKE_CATALOG__DUCKDB_PATH", str(file))
    assert main(["query", "SELECT count(*) AS n FROM clever.people", "--format", "csv"]) == 0
    captured = capsys.readouterr()
    assert captured.out.splitlines() == ["n", "2"]
    assert f"reading catalog {file}" in captured.err


def test_no_catalog_is_one_line_exit_2(tmp_path, capsys) -> None:
    assert main(["query", "SELECT 1", "--lake-root", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no catalog file" in err[0]
    assert not (tmp_path / "nothing").exists()  # reading never creates a lake


@pytest.mark.parametrize(
    ("sql", "says"),
    [("SELEC 1", "syntax error"), ("SELECT * FROM clever.nope", "nope")],
)
def test_a_sql_error_is_one_line_exit_2(tmp_path, capsys, sql: str, says: str) -> None:
    make_catalog(tmp_path / "lake", 1)
    assert main(["query", sql, "--lake-root", str(tmp_path / "lake")]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = [ln for ln in captured.err.splitlines() if not ln.startswith("reading catalog")]
    assert len(lines) == 1 and lines[0].startswith("edulake: SQL error: ") and says in lines[0]


def test_a_sql_typo_prints_no_traceback_as_a_command(tmp_path) -> None:
    """The real command line (a new process), as a user types it."""
    make_catalog(tmp_path / "lake", 1)
    env = without_edulake()
    env["PYTHONPATH"] = str(REPO)
    cmd = [
        sys.executable,
        "-m",
        "edulake",
        "query",
        "SELEC 1",
        "--lake-root",
        str(tmp_path / "lake"),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, check=False)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert [ln for ln in done.stderr.splitlines() if ln.startswith("edulake:")] == [
        ln for ln in done.stderr.splitlines() if not ln.startswith("reading catalog")
    ]
    debug = subprocess.run(
        [*cmd[:3], "--debug", *cmd[3:]], capture_output=True, text=True, env=env, cwd=tmp_path
    )
    assert debug.returncode != 0 and "Traceback" in debug.stderr


def test_query_never_attaches_protected_catalogs(tmp_path, capsys) -> None:
    root = tmp_path / "lake"
    make_catalog(root, 1)
    np_catalog = tmp_path / "lake-protected" / "catalog"
    np_catalog.mkdir(parents=True)
    duckdb.connect(str(np_catalog / "clever_np.duckdb")).close()
    sql = "SELECT database_name FROM duckdb_databases() WHERE ends_with(database_name, '_np')"
    assert main(["query", sql, "--lake-root", str(root), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert main(["query", sql, "--lake-root", str(root), "--format", "json", "--steward"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out) == [{"database_name": "clever_np"}]
    assert "STEWARD QUERY" in captured.err


def test_an_s3_lake_needs_the_catalog_path(monkeypatch, capsys) -> None:
    monkeypatch.setenv("EDULAKE_LAKE__ROOT", "s3://district-lake/edulake")
    assert main(["query", "SELECT 1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a local folder" in err[0]
    assert "EDULAKE_CATALOG__DUCKDB_PATH" in err[0]
