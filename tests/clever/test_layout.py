"""The default layout keeps the protected side out of the analysts' lake folder.

The attack: ``edulake query "SELECT value FROM clever_np.sis_id_lookup"`` without
``--np-root`` printed raw sis_ids, because the protected catalog file sat beside the
analysts' one and ``connect()`` attached every ``*_np.duckdb`` it found there."""

from __future__ import annotations

import os

import duckdb
import pytest

from edulake.catalog.duckdb import connect
from edulake.cli import main
from edulake.core.settings import default_np_root, resolve_np_root

pytestmark = pytest.mark.usefixtures("prefect_harness")


def _files(root: str) -> set[str]:
    return {os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs}


@pytest.mark.parametrize(
    ("root", "expected"),
    [
        ("./lake", "./lake-protected"),
        ("./lake/", "./lake-protected"),
        ("/srv/edulake/lake", "/srv/edulake/lake-protected"),
        ("s3://edulake-lake/lake", None),
    ],
)
def test_default_np_root(root, expected):
    assert default_np_root(root) == expected
    assert resolve_np_root(root, "/elsewhere/np") == "/elsewhere/np"
    assert resolve_np_root(root, root) is None  # np root = root: one root, on request


@pytest.fixture(scope="module")
def demo_lake(tmp_path_factory, prefect_harness) -> str:
    base = tmp_path_factory.mktemp("layout")
    root = str(base / "lake")
    assert main(["demo", "--lake-root", root, "--days", "1", "--students", "40"]) == 0
    return root


def test_the_default_layout_puts_protected_files_in_their_own_root(demo_lake):
    main_files = _files(demo_lake)
    protected = _files(demo_lake + "-protected")
    assert not [f for f in main_files if "stage2np" in f or "quarantine" in f or "_np." in f]
    assert "catalog/clever_np.duckdb" in protected
    assert any(f.startswith("stage2np/clever/sis_id_lookup/") for f in protected)


def _raw_sis_ids(root: str) -> set[str]:
    con = duckdb.connect(f"{root}-protected/catalog/clever_np.duckdb", read_only=True)
    try:
        return {r[0] for r in con.execute("SELECT value FROM sis_id_lookup").fetchall()}
    finally:
        con.close()


def test_an_analyst_query_never_attaches_the_protected_catalogs(demo_lake, capsys):
    ids = _raw_sis_ids(demo_lake)
    assert ids
    sql = "SELECT value FROM clever_np.sis_id_lookup"
    assert main(["query", sql, "--lake-root", demo_lake]) == 2  # DuckDB: no such catalog
    out = capsys.readouterr()
    assert "edulake: SQL error: Catalog Error" in out.err
    assert not [i for i in ids if i in out.out + out.err]
    # connect() itself attaches nothing it finds: also with the old one-folder layout
    con = connect(f"{demo_lake}/catalog/edulake.duckdb")
    try:
        names = {
            r[0] for r in con.execute("SELECT database_name FROM duckdb_databases()").fetchall()
        }
    finally:
        con.close()
    assert not [n for n in names if n.endswith("_np")]
    # --np-root alone is not a way in
    assert (
        main(["query", sql, "--lake-root", demo_lake, "--np-root", demo_lake + "-protected"]) == 2
    )


def test_a_steward_query_attaches_them_and_says_so(demo_lake, capsys):
    sql = "SELECT COUNT(*) AS n FROM clever_np.sis_id_lookup"
    assert main(["query", sql, "--lake-root", demo_lake, "--steward"]) == 0
    out = capsys.readouterr()
    assert "STEWARD QUERY: attached the protected catalogs clever_np" in out.err
    assert str(len(_raw_sis_ids(demo_lake))) in out.out
