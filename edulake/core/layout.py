"""Where the raw files live, and moving them out of a lake made by an older edulake.

Since raw files (stage1np) are a protected zone, a lake with an np root keeps them under
it (:data:`edulake.core.lake.PROTECTED_ZONES`). A lake made before keeps them under the
lake root, where anyone given the lake folder can read every raw identifier. Such a lake
is refused by every run (:func:`check_layout`) until :func:`move_raw` (``python -m edulake
move-raw``) has moved them: each file is copied to the np root, checked, then deleted
from the lake root, so a move that is killed is finished by running it again.
"""

from __future__ import annotations

import copy

import pyarrow.fs as pafs

from edulake.core.lake import Lake, Zone
from edulake.core.settings import ConfigError

MOVE_COMMAND = "python -m edulake move-raw --lake-root {root} --np-root {np_root}"


class RawFilesUnderLakeRoot(ConfigError):
    """The lake root still holds raw files from an older layout."""


def _legacy_base(lake: Lake) -> str:
    return lake.main.path(Zone.STAGE1NP.value)


def _legacy_files(lake: Lake) -> list[pafs.FileInfo]:
    selector = pafs.FileSelector(_legacy_base(lake), recursive=True, allow_not_found=True)
    return [i for i in lake.main.fs.get_file_info(selector) if i.type == pafs.FileType.File]


def has_legacy_raw(lake: Lake) -> bool:
    """Raw files under the lake root of a lake with a separate np root. Files, not
    folders: on S3 a delete leaves empty folder markers behind. One listing of a prefix
    that a lake of this layout does not have (one request on S3); a lake that has it is
    being refused or moved anyway."""
    if lake.protected is lake.main:
        return False
    return bool(_legacy_files(lake))


def legacy_view(lake: Lake) -> Lake:
    """The same lake seen as an older edulake saw it: every zone under the lake root (to
    read raw files left there, e.g. by the audit)."""
    view = copy.copy(lake)
    view.protected = lake.main
    return view


def check_layout(lake: Lake) -> None:
    """Refuse a lake whose raw files are still under the lake root (see module doc)."""
    if has_legacy_raw(lake):
        raise RawFilesUnderLakeRoot(
            f"raw files (stage1np) are under the lake root {lake.main.uri}, where an older "
            "edulake kept them: whoever is given the lake folder can read raw identifiers. "
            "Move them under the np root once, then re-run: "
            + MOVE_COMMAND.format(root=lake.main.uri, np_root=lake.protected.uri)
        )


def move_raw(lake: Lake) -> tuple[int, int]:
    """Move every raw file from the lake root to the np root; (files moved, bytes).

    A file already at the np root with the same size is not copied again (a killed move,
    re-run). The caller holds the lake lease (no run lands meanwhile)."""
    if lake.protected is lake.main:
        return 0, 0
    src, dst = lake.main, lake.protected
    base = _legacy_base(lake)
    selector = pafs.FileSelector(base, recursive=True, allow_not_found=True)
    moved = size = 0
    for info in src.fs.get_file_info(selector):
        if info.type != pafs.FileType.File:
            continue
        key = info.path[len(base) :].lstrip("/")
        target = lake.fs_path(Zone.STAGE1NP, key)
        there = dst.fs.get_file_info(target)
        if there.type != pafs.FileType.File or there.size != info.size:
            lake.check_commit()
            if dst.is_local:
                dst.fs.create_dir(target.rsplit("/", 1)[0], recursive=True)
            with src.fs.open_input_stream(info.path) as f, dst.fs.open_output_stream(target) as out:
                while chunk := f.read(8 << 20):
                    out.write(chunk)
            if dst.fs.get_file_info(target).size != info.size:
                raise OSError(f"copying raw file {key} to the np root was incomplete: re-run")
        src.fs.delete_file(info.path)
        moved += 1
        size += info.size or 0
    # the empty folders left (on S3: the folder markers its deletes leave), once no file is
    if src.fs.get_file_info(base).type == pafs.FileType.Directory and not _legacy_files(lake):
        src.fs.delete_dir(base)
    return moved, size
