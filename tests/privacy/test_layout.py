"""Raw files are a protected zone: whoever is given the lake root gets no raw identifier.

The attack: the default local layout (``./lake`` + ``./lake-protected``) handed analysts
the lake folder with every raw Clever CSV in ``stage1np/``. Now stage1np lives under the
np root; a lake made by an older edulake is refused until ``edulake move-raw`` moves them.
"""

from __future__ import annotations

import os

import pytest

from edulake.cli import main as cli
from edulake.core.lake import Lake, Zone
from edulake.core.layout import RawFilesUnderLakeRoot, check_layout, has_legacy_raw, move_raw
from edulake.privacy.audit import audit
from edulake.privacy.pseudonym import Pseudonymizer
from tests.keys import KEY

from ..clever.helpers import dp_rows, ru_rows, write
from ..reliability.helpers import run

USERS = [(f"S88{i:03d}", f"c{i:03d}") for i in range(6)]
DAY = "2022-01-03"


def _src(tmp_path) -> str:
    src = str(tmp_path / "src")
    write(src, f"daily-participation/{DAY}-daily-participation-students.csv", dp_rows(DAY, USERS))
    write(src, f"resource-usage/{DAY}-resource-usage-students.csv", ru_rows(DAY, USERS))
    return src


def _files_under(root: str) -> dict[str, bytes]:
    out = {}
    for folder, _dirs, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, root)] = f.read()
    return out


def test_the_lake_root_holds_no_raw_identifier(tmp_path) -> None:
    root, np_root = str(tmp_path / "lake"), str(tmp_path / "lake-protected")
    lake = Lake(root, np_root)
    run(lake, _src(tmp_path), Pseudonymizer(KEY))
    assert lake.list(Zone.STAGE1NP, "clever")  # landed: under the np root
    assert os.path.isdir(os.path.join(np_root, "stage1np", "clever"))
    leaked = {
        path
        for path, data in _files_under(root).items()
        for sis, cid in USERS
        if sis.encode() in data or cid.encode() in data
    }
    assert leaked == set()


def _legacy_lake(tmp_path) -> tuple[Lake, str, str]:
    """A lake as an older edulake left it: raw files under the lake root."""
    root, np_root = str(tmp_path / "lake"), str(tmp_path / "np")
    lake = Lake(root, np_root)
    run(lake, _src(tmp_path), Pseudonymizer(KEY))
    # then, stage1np was not a protected zone: it sat under the lake root
    os.rename(os.path.join(np_root, "stage1np"), os.path.join(root, "stage1np"))
    return lake, root, np_root


def test_an_older_lake_is_refused_and_moved_by_move_raw(tmp_path, capsys) -> None:
    lake, root, np_root = _legacy_lake(tmp_path)
    assert has_legacy_raw(lake)
    with pytest.raises(RawFilesUnderLakeRoot, match="move-raw") as err:
        check_layout(lake)
    assert USERS[0][0] not in str(err.value)
    # the audit, given the lake root, finds the raw files there
    assert audit(lake).findings

    assert cli(["move-raw", "--lake-root", root, "--np-root", np_root]) == 0
    assert "moved 2 raw file(s)" in capsys.readouterr().out
    assert not has_legacy_raw(lake) and not os.path.exists(os.path.join(root, "stage1np"))
    check_layout(lake)
    (entry,) = [o for o in lake.list(Zone.STAGE1NP, "clever") if "daily" in o.key]
    assert USERS[0][0].encode() in lake.read_bytes(Zone.STAGE1NP, entry.key)
    assert audit(lake).findings == []
    assert cli(["move-raw", "--lake-root", root, "--np-root", np_root]) == 0
    assert "nothing to move" in capsys.readouterr().out


def test_a_killed_move_is_finished_by_running_it_again(tmp_path) -> None:
    lake, _root, np_root = _legacy_lake(tmp_path)
    listed = Lake(lake.main.base).list(Zone.STAGE1NP, "clever")
    legacy, size = [o.key for o in listed], sum(o.size for o in listed)
    # killed while copying the first file: a truncated copy at the np root
    target = os.path.join(np_root, "stage1np", legacy[0])
    os.makedirs(os.path.dirname(target), exist_ok=True)
    with open(target, "wb") as f:
        f.write(b"date,sis")
    assert move_raw(lake) == (2, size)
    assert not has_legacy_raw(lake)
    for key in legacy:
        assert lake.read_bytes(Zone.STAGE1NP, key).startswith(b"date,sis_id")
