"""forget and rotate-key audit what they republish, like every ordinary run.

The attack: a raw identifier already sits in a live stage2p file (written by an older
release, a hand fix, a bad restore). A forget for someone else, or a key rotation, rewrites
the tables and republishes them. Without an audit before that publish, the catalog (what
analysts query) serves the raw id; with it, the run fails, nothing is republished, and the
message says what to do.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from edulake.catalog import open_catalog, publish_all
from edulake.catalog.duckdb import connect as connect_catalog
from edulake.core.lake import Lake, Zone
from edulake.core.versions import table_keys
from edulake.privacy.pseudonym import Pseudonymizer
from edulake.sources.clever import pipeline
from tests.keys import KEY, KEY_TEXT

from ..clever.helpers import dp_rows, ru_rows, write
from ..reliability.helpers import run

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]

USERS = [(f"S77{i:03d}", f"c{i:03d}") for i in range(12)]
DAYS = ["2022-01-03", "2022-01-04"]
LEAKED = USERS[5][0]  # a real sis_id (in stage1np): planted where analysts can read it


def _lake(tmp_path) -> tuple[Lake, str, str]:
    root, np_root = str(tmp_path / "lake"), str(tmp_path / "np")
    lake = Lake(root, np_root)
    src = str(tmp_path / "src")
    for day in DAYS:
        write(
            src, f"daily-participation/{day}-daily-participation-students.csv", dp_rows(day, USERS)
        )
        write(src, f"resource-usage/{day}-resource-usage-students.csv", ru_rows(day, USERS))
    run(lake, src, Pseudonymizer(KEY))
    cat = open_catalog("duckdb", lake)
    try:
        publish_all(cat, pipeline.catalog_tables(lake, KEY.key_id), rebuild=True)
    finally:
        cat.close()
    return lake, root, np_root


def _plant(lake: Lake) -> None:
    """Put the raw sis_id into a kept column of one live daily_participation file."""
    (key,) = [k for k in table_keys(lake, "clever", "daily_participation") if DAYS[1] in k]
    with lake.open_input_file(Zone.STAGE2P, key) as f:
        table = pq.read_table(f)
    names = table["school_name"].to_pylist()
    names[-1] = LEAKED  # not a row of the person forgotten below
    table = table.set_column(
        table.schema.get_field_index("school_name"), "school_name", pa.array(names, pa.string())
    )
    with lake.atomic_write(Zone.STAGE2P, key) as out:
        pq.write_table(table, out)  # its schema metadata (key id) kept


def _served(root: str) -> list[str]:
    con = connect_catalog(f"{root}/catalog/edulake.duckdb", read_only=True)
    try:
        rows = con.execute("SELECT DISTINCT school_name FROM clever.daily_participation")
        return [r[0] for r in rows.fetchall()]
    finally:
        con.close()


def test_forget_does_not_republish_a_leak(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("EDULAKE_LEASE__PREFECT_LIMIT", "")
    from flows.forget import forget_flow
    from tasks.audit import LeakFound

    lake, root, np_root = _lake(tmp_path)
    _plant(lake)
    monkeypatch.setenv("EDULAKE_HMAC_KEY", KEY_TEXT)
    ids = tmp_path / "forget.txt"
    ids.write_text(f"{USERS[0][0]}\n")
    state = forget_flow(ids_file=str(ids), lake_root=root, np_root=np_root, return_state=True)
    assert state.is_failed()
    err = state.result(raise_on_failure=False)
    assert isinstance(err, LeakFound), type(err)
    assert "Nothing was published" in str(err)
    assert LEAKED not in str(err) and LEAKED not in (state.message or "")
    assert LEAKED not in _served(root)  # the catalog still serves what it served


def test_rotate_key_does_not_republish_a_leak(tmp_path, li_server, monkeypatch) -> None:
    """A LibInsight rotation re-pseudonymizes each month file through its lookups and
    copies the kept columns through: a staff name sitting in one reaches the new version.
    The rotation fails before republishing it; the catalog keeps serving the old version."""
    from edulake.privacy.lookup import read_lookup
    from edulake.sources import registry
    from flows.clever_maintenance import rotate_key_flow
    from tasks.audit import LeakFound
    from tests.keys import LIBINSIGHT_KEY, OTHER_KEY_TEXT

    from ..reliability.test_table_versions import _li_run

    root, np_root = str(tmp_path / "lake"), str(tmp_path / "np")
    lake = Lake(root, np_root)
    _li_run(li_server, lake, LIBINSIGHT_KEY)
    cat = open_catalog("duckdb", lake)
    try:
        tables = registry.get("libinsight").catalog_tables(lake, LIBINSIGHT_KEY.key_id)
        publish_all(cat, tables, rebuild=True)
    finally:
        cat.close()
    name = sorted(
        v for v in read_lookup(lake, "libinsight", "entered_by")["value"].to_pylist() if v
    )[0]
    (table,) = registry.get("libinsight").rotation.tables(lake)
    key = sorted(k for k in table_keys(lake, "libinsight", table) if k.endswith(".parquet"))[0]
    with lake.open_input_file(Zone.STAGE2P, key) as f:
        month = pq.read_table(f)
    kept = next(
        f.name
        for f in month.schema
        if pa.types.is_string(f.type) and not f.name.endswith("_pseudonym")
    )
    values = month[kept].to_pylist()
    values[0] = f"ask {name} at the desk"
    i = month.schema.get_field_index(kept)
    month = month.set_column(i, month.schema.field(i), pa.array(values, pa.string()))
    with lake.atomic_write(Zone.STAGE2P, key) as out:
        pq.write_table(month, out)

    monkeypatch.setenv("EDULAKE_HMAC_KEY", OTHER_KEY_TEXT)
    monkeypatch.setenv("EDULAKE_LEASE__PREFECT_LIMIT", "")
    state = rotate_key_flow(source="libinsight", lake_root=root, np_root=np_root, return_state=True)
    assert state.is_failed()
    err = state.result(raise_on_failure=False)
    assert isinstance(err, LeakFound), type(err)
    assert name not in str(err) and "Nothing was published" in str(err)
    con = connect_catalog(f"{root}/catalog/edulake.duckdb", read_only=True)
    try:
        (comment,) = con.execute(
            f"SELECT comment FROM duckdb_tables() WHERE table_name = '{table}'"
        ).fetchone()
        served = con.execute(f"SELECT * FROM libinsight.{table}").fetchall()
    finally:
        con.close()
    assert f"key_id={LIBINSIGHT_KEY.key_id}" in comment  # the old version, still served
    assert not any(name in str(cell) for row in served for cell in row)


def test_the_full_scope_lists_each_partition_once(tmp_path) -> None:
    """The maintenance audit lists a version's partitions once (full_scope), not again per
    partition in audit_run: on S3 that was one more LIST per partition per rotation."""
    from dataclasses import replace

    from edulake.core.counting import count_requests
    from edulake.privacy.audit import audit_run, full_scope

    lake, _, _ = _lake(tmp_path)
    scope = full_scope(lake, "clever")
    parts = sum(len(p) for p in scope.changed.values())
    assert parts == 4  # 2 tables x 2 days
    with count_requests(lake) as once:
        clean = audit_run(lake, scope)
    with count_requests(lake) as twice:
        audit_run(lake, replace(scope, listed={}))
    assert clean.findings == []
    assert once.counts["LIST"] == twice.counts["LIST"] - parts
