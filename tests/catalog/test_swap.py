"""The copy-and-swap mechanics, in this process (fast): what is copied, when nothing is,
which inode readers get, temp files of killed and of live publishes, old catalogs."""

from __future__ import annotations

import os
import subprocess
import sys

import duckdb
import pytest

from edulake.catalog import open_catalog, publish_all
from edulake.catalog.duckdb import DuckDBCatalog, remove_stale_temps, temp_path
from edulake.core.lake import Lake, Zone
from edulake.sources.clever import pipeline
from tests.reliability.helpers import KEY, run

from .helpers import first_days


def _publish(lake: Lake) -> tuple[DuckDBCatalog, list[str]]:
    cat = open_catalog("duckdb", lake)
    assert isinstance(cat, DuckDBCatalog)
    try:
        results, _ = publish_all(cat, pipeline.catalog_tables(lake, KEY.key_id), "clever")
    finally:
        cat.close()
    return cat, [r.action for r in results]


@pytest.fixture
def built(day1_source, tmp_path, lake, pseudonymizer) -> Lake:
    run(lake, first_days(day1_source, str(tmp_path / "src"), 1), pseudonymizer)
    _publish(lake)
    return lake


def _main(lake: Lake) -> str:
    return os.path.join(lake.main.base, "catalog", "edulake.duckdb")


def _np(lake: Lake) -> str:
    return os.path.join(lake.protected.base, "catalog", "clever_np.duckdb")


def test_nothing_changed_nothing_copied_nothing_swapped(built):
    inodes = (os.stat(_main(built)).st_ino, os.stat(_np(built)).st_ino)
    cat, actions = _publish(built)
    assert actions == ["unchanged"] * 4
    assert cat.stats.files == 0 and cat.stats.bytes_copied == 0
    assert (os.stat(_main(built)).st_ino, os.stat(_np(built)).st_ino) == inodes


def test_a_changed_partition_swaps_only_the_file_it_lives_in(built):
    np_inode = os.stat(_np(built)).st_ino
    main_inode = os.stat(_main(built)).st_ino
    size = os.path.getsize(_main(built))
    key = next(o.key for o in built.list(Zone.STAGE2P, "clever/daily_participation"))
    path = built.fs_path(Zone.STAGE2P, key)
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))  # same bytes, new mtime
    cat, actions = _publish(built)
    assert actions == ["replaced-partitions", "unchanged", "unchanged", "unchanged"]
    assert cat.stats.files == 1 and cat.stats.bytes_copied == size
    assert os.stat(_main(built)).st_ino != main_inode  # a new file took the name
    assert os.stat(_np(built)).st_ino == np_inode  # the lookups' file was left alone
    assert [n for n in os.listdir(os.path.dirname(_main(built))) if n.startswith(".")] == []


def test_temp_files_of_dead_publishes_go_and_of_live_ones_stay(built, tmp_path):
    folder = os.path.dirname(_main(built))
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead_pid = int(dead.stdout)
    stale = os.path.join(folder, f".edulake.duckdb.{dead_pid}.0badcafe.swap")
    live_proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE
    )
    try:
        live = os.path.join(folder, f".edulake.duckdb.{live_proc.pid}.0badcafe.swap")
        for path in (stale, stale + ".wal", live):
            open(path, "w").close()
        assert remove_stale_temps(folder) == 2
        assert not os.path.exists(stale) and not os.path.exists(stale + ".wal")
        assert os.path.exists(live)  # another live process's publish: not ours to remove
    finally:
        live_proc.communicate()
    assert remove_stale_temps(folder) == 1  # its process is gone now
    assert os.path.basename(temp_path(_main(built))).startswith(f".edulake.duckdb.{os.getpid()}.")


def test_a_failed_publish_drops_its_copy_and_leaves_the_live_file(built, monkeypatch):
    before = os.stat(_main(built))
    key = next(o.key for o in built.list(Zone.STAGE2P, "clever/daily_participation"))
    os.remove(built.fs_path(Zone.STAGE2P, key))
    cat = open_catalog("duckdb", built)
    assert isinstance(cat, DuckDBCatalog)

    def broken(*_a: object, **_k: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(cat, "create_views", broken)
    with pytest.raises(RuntimeError, match="boom"):
        publish_all(cat, pipeline.catalog_tables(built, KEY.key_id), "clever")
    after = os.stat(_main(built))
    assert (after.st_ino, after.st_mtime_ns, after.st_size) == (
        before.st_ino,
        before.st_mtime_ns,
        before.st_size,
    )
    assert [n for n in os.listdir(os.path.dirname(_main(built))) if n.startswith(".")] == []


def test_a_catalog_without_a_manifest_is_rebuilt_once(built):
    """A catalog file written before the manifest existed: rebuilt in full, then tracked."""
    con = duckdb.connect(_main(built))
    con.execute("DROP SCHEMA edulake_meta CASCADE")
    rows = con.execute("SELECT COUNT(*) FROM clever.daily_participation").fetchone()[0]
    con.close()
    _, actions = _publish(built)
    assert actions[:2] == ["updated", "updated"]
    assert actions[2:] == ["unchanged", "unchanged"]  # the np file kept its manifest
    _, again = _publish(built)
    assert again == ["unchanged"] * 4
    con = duckdb.connect(_main(built), read_only=True)
    assert con.execute("SELECT COUNT(*) FROM clever.daily_participation").fetchone()[0] == rows
    con.close()


def test_rebuild_replaces_every_table(built):
    cat = open_catalog("duckdb", built)
    try:
        results, _ = publish_all(cat, pipeline.catalog_tables(built, KEY.key_id), rebuild=True)
    finally:
        cat.close()
    assert [r.action for r in results] == ["updated"] * 4
