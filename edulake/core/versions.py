"""Table versions: a full rewrite is built beside the live table and switched in one step.

A stage2p table lives in one *version* folder at a time:

- version 0: ``stage2p/<source>/<table>/<part>=<value>/...`` (every lake before versions,
  and every table never rewritten in full);
- version n >= 1: ``stage2p/<source>/<table>/_v=<n>/<part>=<value>/...``.

Which version is live is one small pointer record per source,
``_system/versions/<source>.json``::

    {"tables": {"<table>": n, ...},            # the live version of each table
     "next": {"<table>": m, ...},              # a rewrite in progress (absent: none)
     "retired": [{"table", "version", "retired_at"}, ...]}

- Readers (the catalog renderers, through :func:`read_prefix`) use ``tables``.
- A full rewrite (key rotation) calls :func:`begin_rewrite`: ``next`` names a fresh
  version per table, and every writer (through :func:`write_prefix`) writes there while it
  is set. Ordinary runs do not run meanwhile (the rotation's key intent refuses them).
- :func:`switch` makes ``next`` live in ONE write of the pointer record, and retires the
  old versions. The DuckDB catalog then materializes the new version and swaps its file
  in (one ``os.replace``); Glue gets one ``UpdateTable`` per table (its location).
- :func:`purge_retired` deletes retired versions older than a grace period (readers that
  started before the switch, Athena queries in flight), or all of them (erasure).

Crash safety: a rewrite killed before :func:`switch` leaves ``next`` set and the old
version live; :func:`begin_rewrite` called again clears the half-written folders and
reuses the same version numbers. Ordinary daily appends write into the live version: no
copy of history per day.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
from typing import Any

from edulake.core.lake import Lake, Zone

VERSION_SEGMENT = "_v="


def pointer_key(source: str) -> str:
    return f"versions/{source}.json"


def read_pointer(lake: Lake, source: str) -> dict[str, Any]:
    """The source's pointer record ({} before any rewrite)."""
    key = pointer_key(source)
    if not lake.exists(Zone.SYSTEM, key):
        return {}
    return dict(lake.read_json(Zone.SYSTEM, key))


def _write_pointer(lake: Lake, source: str, record: dict[str, Any]) -> None:
    lake.write_json(Zone.SYSTEM, pointer_key(source), record)


def version_prefix(source: str, table: str, version: int) -> str:
    """A table version's folder inside stage2p."""
    base = f"{source}/{table}"
    return base if version == 0 else f"{base}/{VERSION_SEGMENT}{version}"


def current_version(lake: Lake, source: str, table: str) -> int:
    return int(read_pointer(lake, source).get("tables", {}).get(table, 0))


def writing_version(lake: Lake, source: str, table: str) -> int:
    """The version writers write to: the rewrite's while one is in progress, else the live one."""
    pointer = read_pointer(lake, source)
    nxt = pointer.get("next", {})
    if table in nxt:
        return int(nxt[table])
    return int(pointer.get("tables", {}).get(table, 0))


def read_prefix(lake: Lake, source: str, table: str) -> str:
    """The live version's folder (what readers and the catalog use)."""
    return version_prefix(source, table, current_version(lake, source, table))


def write_prefix(lake: Lake, source: str, table: str) -> str:
    """The folder writers write to (see :func:`writing_version`)."""
    return version_prefix(source, table, writing_version(lake, source, table))


def in_version(key: str, prefix: str) -> bool:
    """Whether a stage2p key listed under ``prefix`` (a version folder) is that version's.

    Version 0's folder holds the other versions' folders: those keys are not its own."""
    rest = key[len(prefix) :].lstrip("/")
    return not rest.startswith(VERSION_SEGMENT)


def is_version_segment(segment: str) -> bool:
    return segment.startswith(VERSION_SEGMENT)


def table_keys(lake: Lake, source: str, table: str, version: int | None = None) -> list[str]:
    """Every file of one version of a table (default: the live one), keys in stage2p."""
    v = current_version(lake, source, table) if version is None else version
    prefix = version_prefix(source, table, v)
    return [o.key for o in lake.list(Zone.STAGE2P, prefix) if in_version(o.key, prefix)]


def _used_versions(lake: Lake, source: str, table: str) -> set[int]:
    used = {0}
    for obj in lake.list(Zone.STAGE2P, f"{source}/{table}"):
        seg = obj.key.split("/")[2] if obj.key.count("/") >= 2 else ""
        if is_version_segment(seg) and seg[len(VERSION_SEGMENT) :].isdigit():
            used.add(int(seg[len(VERSION_SEGMENT) :]))
    return used


def begin_rewrite(lake: Lake, source: str, tables: list[str]) -> dict[str, int]:
    """Start (or restart) a full rewrite of ``tables``: a fresh, empty version for each.

    A rewrite left by a killed run is restarted: its half-written folders are cleared and
    its version numbers reused. Returns table -> the version being written."""
    pointer = read_pointer(lake, source)
    live = dict(pointer.get("tables", {}))
    nxt = dict(pointer.get("next", {}))
    for table in tables:
        if table not in nxt:
            nxt[table] = max(_used_versions(lake, source, table) | {int(live.get(table, 0))}) + 1
    for table, v in nxt.items():
        lake.delete_prefix(Zone.STAGE2P, version_prefix(source, table, int(v)))
    pointer["next"] = nxt
    _write_pointer(lake, source, pointer)
    return {t: int(v) for t, v in nxt.items()}


def rewrite_in_progress(lake: Lake, source: str) -> dict[str, int]:
    return {t: int(v) for t, v in read_pointer(lake, source).get("next", {}).items()}


def switch(lake: Lake, source: str) -> dict[str, int]:
    """Make the rewrite's versions live, in one write of the pointer record.

    Returns table -> new live version ({} when no rewrite was in progress)."""
    pointer = read_pointer(lake, source)
    nxt = {t: int(v) for t, v in pointer.get("next", {}).items()}
    if not nxt:
        return {}
    live = {t: int(v) for t, v in pointer.get("tables", {}).items()}
    now = dt.datetime.now(dt.UTC).isoformat()
    retired = list(pointer.get("retired", []))
    for table, v in nxt.items():
        old = live.get(table, 0)
        if old != v:
            retired.append({"table": table, "version": old, "retired_at": now})
        live[table] = v
    lake.check_commit()
    _write_pointer(lake, source, {"tables": live, "retired": retired})
    return nxt


def purge_retired(lake: Lake, source: str, grace_s: float | None) -> int:
    """Delete retired versions older than ``grace_s`` seconds (None: every one, at once).

    Returns how many files were deleted. The pointer record is updated last, so a purge
    killed half-way is finished by the next one."""
    pointer = read_pointer(lake, source)
    retired = list(pointer.get("retired", []))
    if not retired:
        return 0
    now = dt.datetime.now(dt.UTC)
    keep, removed = [], 0
    for r in retired:
        age = (now - dt.datetime.fromisoformat(str(r["retired_at"]))).total_seconds()
        if grace_s is not None and age < grace_s:
            keep.append(r)
            continue
        table, version = str(r["table"]), int(r["version"])
        if version == int(pointer.get("tables", {}).get(table, 0)):
            continue  # never the live version
        for key in table_keys(lake, source, table, version):
            lake.delete(Zone.STAGE2P, key)
            removed += 1
    pointer["retired"] = keep
    with contextlib.suppress(KeyError):
        if not pointer["retired"]:
            del pointer["retired"]
    _write_pointer(lake, source, pointer)
    return removed


def rebase_key(lake: Lake, key: str) -> str:
    """A stage2p key of any version of its table, in the version writers use now.

    Records written before a switch (Clever's processed records name their outputs)
    stay meaningful after it: the same file of the new version."""
    parts = key.split("/")
    if len(parts) < 3:
        return key
    rest = parts[3:] if is_version_segment(parts[2]) else parts[2:]
    return "/".join([write_prefix(lake, parts[0], parts[1]), *rest])


def copy_file(lake: Lake, src: str, dst: str) -> None:
    """Copy a stage2p file into another version: a hard link locally (committed files are
    never written in place, only replaced), a server-side copy on S3. The target version
    is not live yet, so no reader sees a copy before it is whole."""
    store = lake.store(Zone.STAGE2P)
    source, target = lake.fs_path(Zone.STAGE2P, src), lake.fs_path(Zone.STAGE2P, dst)
    lake.check_commit()
    if store.is_local:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            os.remove(target)  # a restarted rewrite's leftover
        try:
            os.link(source, target)
            return
        except OSError:
            pass  # no hard links here: copy
    store.fs.copy_file(source, target)


def abandon_rewrite(lake: Lake, source: str) -> int:
    """Drop a rewrite a killed run left (its folders, then ``next``); files deleted.

    Ordinary runs call it when no key rotation is in progress, so they never write into
    a version nobody will switch to (a killed erasure restarts its rewrite anyway)."""
    pointer = read_pointer(lake, source)
    nxt = pointer.get("next", {})
    if not nxt:
        return 0
    removed = sum(
        lake.delete_prefix(Zone.STAGE2P, version_prefix(source, t, int(v))) for t, v in nxt.items()
    )
    del pointer["next"]
    _write_pointer(lake, source, pointer)
    return removed
