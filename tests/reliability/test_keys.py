"""Keys: recorded with every table, never mixed; a rotation re-pseudonymizes everything."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from edulake.catalog import open_catalog, publish_all
from edulake.catalog.duckdb import connect as connect_catalog
from edulake.core.lake import Lake, Zone
from edulake.privacy.keys import KeyRotationInProgress, key_record_key, recorded_key_id
from edulake.privacy.lookup import KeyMismatchError, read_lookup
from edulake.privacy.pseudonym import Pseudonymizer
from edulake.privacy.rotation import finish_rotation, rotate_key, stage2p_key_ids
from edulake.sources.clever import pipeline
from tests.envs import without_edulake

from ..clever.helpers import DP_HEADER, dp_rows, ru_rows, write
from .helpers import (
    DP,
    KEY,
    KEY_TEXT,
    OTHER_KEY,
    OTHER_KEY_TEXT,
    RU,
    lake_fingerprint,
    read_table,
    run,
)

USERS = [("1001", "c001"), ("1002", "c002"), ("", "c003")]


def _src(tmp_path) -> str:
    src = str(tmp_path / "src")
    write(src, DP, dp_rows("2022-01-03", USERS))
    write(src, RU, ru_rows("2022-01-03", USERS[:2]))
    return src


def _publish(lake: Lake, key_id: str, full: bool = True) -> None:
    """Publish the Clever tables (``full``: rebuild them, as after a rotation)."""
    cat = open_catalog("duckdb", lake)
    try:
        publish_all(cat, pipeline.catalog_tables(lake, key_id), rebuild=full)
    finally:
        cat.close()


def test_key_id_recorded_with_every_table(tmp_path, lake, pseudonymizer):
    run(lake, _src(tmp_path), pseudonymizer)
    _publish(lake, KEY.key_id)
    assert lake.read_json(Zone.SYSTEM, key_record_key("clever"))["key_id"] == KEY.key_id
    for obj in lake.list(Zone.STAGE2P):
        with lake.open_input_file(Zone.STAGE2P, obj.key) as f:
            assert pq.read_schema(f).metadata[b"edulake.key_id"] == KEY.key_id.encode()
    assert set(read_lookup(lake, "clever", "sis_id")["key_id"].to_pylist()) == {KEY.key_id}
    con = connect_catalog(
        str(tmp_path / "lake/catalog/edulake.duckdb"), np_dir=str(tmp_path / "np/catalog")
    )
    comments = con.execute(
        "SELECT table_name, comment FROM duckdb_tables() "
        "WHERE (schema_name LIKE 'clever%' OR database_name = 'clever_np') "
        "AND schema_name <> 'edulake_meta'"  # not the catalog's own manifest
    ).fetchall()
    con.close()
    assert len(comments) == 4 and all(f"key_id={KEY.key_id}" in c for _, c in comments)


def test_run_with_another_key_fails_before_writing(tmp_path, lake, pseudonymizer):
    src = _src(tmp_path)
    run(lake, src, pseudonymizer)
    before = lake_fingerprint(lake)
    files_before = lake.list(Zone.STAGE2P)
    # new data arrives, but the run has the wrong key
    write(src, DP.replace("students", "teachers"), dp_rows("2022-01-03", [("2001", "c201")]))
    with pytest.raises(KeyMismatchError, match=r"pseudonymized with key .* rotate-key"):
        run(lake, src, Pseudonymizer(OTHER_KEY))
    assert lake_fingerprint(lake) == before
    assert lake.list(Zone.STAGE2P) == files_before
    assert not any("teachers" in o.key for o in lake.list(Zone.SYSTEM, "processed"))


def test_lake_without_key_record_is_still_protected(tmp_path, lake, pseudonymizer):
    run(lake, _src(tmp_path), pseudonymizer)
    lake.delete(Zone.SYSTEM, key_record_key("clever"))  # a lake from before the record
    assert recorded_key_id(lake, "clever") == KEY.key_id  # from the lookups
    with pytest.raises(KeyMismatchError):
        pipeline.process_pending(lake, [], Pseudonymizer(OTHER_KEY))


def _rotate(lake: Lake, new: Pseudonymizer) -> None:
    rotate_key(lake, new, max_quarantine_share=0.5)
    _publish(lake, new.key_id)
    finish_rotation(lake, new)


def test_rotation_equals_a_fresh_build_with_the_new_key(tmp_path, pseudonymizer):
    src = _src(tmp_path)
    # a changed re-delivery, so the lake holds two versions of one file
    lake = Lake(str(tmp_path / "lake"), str(tmp_path / "np"))
    run(lake, src, pseudonymizer)
    write(src, DP, dp_rows("2022-01-03", USERS[:2]))
    os.utime(os.path.join(src, DP), (2e9, 2e9))
    run(lake, src, pseudonymizer)
    _publish(lake, KEY.key_id)
    new = Pseudonymizer(OTHER_KEY)
    _rotate(lake, new)

    fresh = Lake(str(tmp_path / "fresh"), str(tmp_path / "fresh-np"))
    run(fresh, src, Pseudonymizer(OTHER_KEY))
    assert lake_fingerprint(lake) == lake_fingerprint(fresh)
    assert {kid for kid, _ in stage2p_key_ids(lake).values()} == {OTHER_KEY.key_id}
    assert recorded_key_id(lake, "clever") == OTHER_KEY.key_id
    # ordinary runs with the new key work; with the old key they are refused
    run(lake, src, new)
    with pytest.raises(KeyMismatchError):
        run(lake, src, pseudonymizer)
    con = connect_catalog(str(tmp_path / "lake/catalog/edulake.duckdb"))
    n = con.execute("SELECT COUNT(*) FROM clever.daily_participation").fetchone()[0]
    comment = con.execute(
        "SELECT comment FROM duckdb_tables() WHERE table_name = 'daily_participation'"
    ).fetchone()[0]
    con.close()
    assert n == 2 and f"key_id={OTHER_KEY.key_id}" in comment


def test_rotation_rebuilds_outputs_of_an_older_version(tmp_path, pseudonymizer):
    """The newest version of a file failed: the older version's rows are still live and
    must be re-pseudonymized from that older raw file, not left under the old key."""
    src = _src(tmp_path)
    lake = Lake(str(tmp_path / "lake"), str(tmp_path / "np"))
    run(lake, src, pseudonymizer)
    write(src, DP, DP_HEADER + "\n2022-01-03,1,c1,s1,A,True,x,1\n")  # 100% bad rows
    os.utime(os.path.join(src, DP), (2e9, 2e9))
    run(lake, src, pseudonymizer)
    rows_before = read_table(lake, "daily_participation").num_rows
    result = rotate_key(lake, Pseudonymizer(OTHER_KEY), max_quarantine_share=0.5)
    assert result.rebuilt_older_versions == 1 and len(result.failed) == 1
    assert {kid for kid, _ in stage2p_key_ids(lake).values()} == {OTHER_KEY.key_id}
    assert read_table(lake, "daily_participation").num_rows == rows_before


def test_ordinary_runs_refused_during_rotation(tmp_path, lake, pseudonymizer):
    src = _src(tmp_path)
    run(lake, src, pseudonymizer)
    rotate_key(lake, Pseudonymizer(OTHER_KEY))  # killed before finishing: no finish
    for key in (pseudonymizer, Pseudonymizer(OTHER_KEY)):
        with pytest.raises(KeyRotationInProgress, match="rotate-key"):
            run(lake, src, key)
    with pytest.raises(KeyMismatchError, match="in progress"):
        rotate_key(lake, Pseudonymizer(KEY.__class__(bytes(reversed(OTHER_KEY.secret)))))


ROTATE_RUNNER = """
import sys
from edulake.core.lake import Lake
from edulake.privacy.pseudonym import Pseudonymizer
from tests.reliability.helpers import OTHER_KEY
from tests.reliability.test_keys import _rotate
_rotate(Lake(sys.argv[1], sys.argv[2]), Pseudonymizer(OTHER_KEY))
"""


@pytest.mark.slow
@pytest.mark.parametrize(
    "point",
    [
        "rotate.cleared:1",
        "rotate.prepared:1",
        "process.writing:1",
        "rotate.reprocessed:1",
        "rotate.switched:1",
        "publish.transaction:2",
        "rotate.recorded:1",
    ],
)
def test_rotation_killed_then_rerun_completes(tmp_path, pseudonymizer, point):
    src = _src(tmp_path)
    root, np_root = str(tmp_path / "lake"), str(tmp_path / "np")
    lake = Lake(root, np_root)
    run(lake, src, pseudonymizer)
    _publish(lake, KEY.key_id)
    cwd = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = without_edulake()
    cmd = [sys.executable, "-c", ROTATE_RUNNER, root, np_root]
    killed = subprocess.run(
        cmd, cwd=cwd, env=env | {"EDULAKE_CRASH_AT": point}, capture_output=True
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()[-2000:]
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    fresh = Lake(str(tmp_path / "fresh"), str(tmp_path / "fresh-np"))
    run(fresh, src, Pseudonymizer(OTHER_KEY))
    assert lake_fingerprint(lake) == lake_fingerprint(fresh)
    assert recorded_key_id(lake, "clever") == OTHER_KEY.key_id
    run(lake, src, Pseudonymizer(OTHER_KEY))  # ordinary runs work again


@pytest.mark.usefixtures("prefect_harness")
def test_flows_refuse_another_key_and_rotate(tmp_path, monkeypatch):
    from flows.clever_maintenance import clever_rotate_key
    from flows.clever_participation import clever_participation

    small = {"days": 1, "students": 60, "teachers": 5, "staff": 2, "schools": 2}
    root = str(tmp_path / "lake")
    monkeypatch.setenv("EDULAKE_HMAC_KEY", KEY_TEXT)
    first = clever_participation(source="testdata", lake_root=root, testdata=small)
    monkeypatch.setenv("EDULAKE_HMAC_KEY", OTHER_KEY_TEXT)
    with pytest.raises(KeyMismatchError, match="rotate-key"):
        clever_participation(source="testdata", lake_root=root, testdata=small)
    rotated = clever_rotate_key(lake_root=root)
    assert rotated["rotated"] and rotated["to_key_id"] == OTHER_KEY.key_id
    assert rotated["failed_files"] == []
    again = clever_participation(source="testdata", lake_root=root, testdata=small)
    assert again["files_processed"] == 0 and first["rows_written"] > 0
    assert clever_rotate_key(lake_root=root) == {"rotated": False, "key_id": OTHER_KEY.key_id}
    con = connect_catalog(f"{root}/catalog/edulake.duckdb")
    comment = con.execute(
        "SELECT comment FROM duckdb_tables() WHERE table_name = 'resource_usage'"
    ).fetchone()[0]
    con.close()
    assert f"key_id={OTHER_KEY.key_id}" in comment
