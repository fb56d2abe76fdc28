from __future__ import annotations

import os

import pytest

from edulake.core.lake import Lake, UnsafeKeyError, Zone, safe_key


def test_zones_and_np_root(tmp_path):
    lake = Lake(str(tmp_path / "main"), np_root=str(tmp_path / "protected"))
    lake.write_bytes(Zone.STAGE2P, "a/b.txt", b"p")
    lake.write_bytes(Zone.STAGE2NP, "a/b.txt", b"np")
    lake.write_bytes(Zone.QUARANTINE, "q.csv", b"q")
    assert (tmp_path / "main/stage2p/a/b.txt").read_bytes() == b"p"
    assert (tmp_path / "protected/stage2np/a/b.txt").read_bytes() == b"np"
    assert (tmp_path / "protected/quarantine/q.csv").read_bytes() == b"q"
    assert not (tmp_path / "main/stage2np").exists()


def test_atomic_write_invisible_until_done_and_discarded_on_error(tmp_path):
    lake = Lake(str(tmp_path))
    with lake.atomic_write(Zone.STAGE1NP, "x/file.csv") as out:
        out.write(b"half")
        assert not lake.exists(Zone.STAGE1NP, "x/file.csv")
    assert lake.read_bytes(Zone.STAGE1NP, "x/file.csv") == b"half"

    with pytest.raises(RuntimeError), lake.atomic_write(Zone.STAGE1NP, "x/other.csv") as out:
        out.write(b"partial")
        raise RuntimeError("killed")
    assert not lake.exists(Zone.STAGE1NP, "x/other.csv")
    # nothing left in staging (each Lake object stages under its own session folder)
    assert [f for _d, _s, files in os.walk(tmp_path / "_tmp") for f in files] == []


def test_staged_commit_many_and_list(tmp_path):
    lake = Lake(str(tmp_path))
    staged = lake.staged()
    for i in range(3):
        staged.write_bytes(Zone.STAGE2P, f"t/p={i}/f.parquet", b"x" * i)
    assert lake.list(Zone.STAGE2P) == []
    staged.commit()
    assert [o.key for o in lake.list(Zone.STAGE2P, "t")] == [
        "t/p=0/f.parquet",
        "t/p=1/f.parquet",
        "t/p=2/f.parquet",
    ]
    assert [o.size for o in lake.list(Zone.STAGE2P, "t")] == [0, 1, 2]


def test_sweep_tmp_removes_leftovers(tmp_path):
    lake = Lake(str(tmp_path))
    staged = lake.staged()
    staged.write_bytes(Zone.STAGE2P, "t/f", b"x")  # never committed: a killed run
    assert lake.sweep_tmp(older_than_s=3600) == 0  # too fresh: maybe a live run
    assert lake.sweep_tmp(older_than_s=0) == 1


@pytest.mark.parametrize("bad", ["../x.csv", "/etc/passwd", "a/../../b", "a\\b", ""])
def test_unsafe_keys_refused(bad):
    with pytest.raises(UnsafeKeyError):
        safe_key("clever", bad) if bad else safe_key(bad)


def test_unsupported_root():
    with pytest.raises(ValueError, match="unsupported lake root"):
        Lake("ftp://x/y")
