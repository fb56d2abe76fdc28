"""State indexes: what a run reads of the lake's history costs O(new work), not O(history).

The ledger and the processed state are immutable records, one small JSON file per file
version (``_system/ledger/<source>/<name>/<sha256>.json``, ``_system/processed/...``),
kept for audit. Reading them all costs one GET per record ever written; on S3 after a
year that is thousands of requests for a run that lands a handful of files. An index
makes that read a constant number of requests:

- a **manifest** (``_system/index/<prefix>/manifest.gzjson``): every record known at the
  last compaction, plus a *sentinel* (the first record's key, size and mtime);
- a **journal** (``_system/index/<prefix>/journal/<hash of key>.json``): one entry per
  record written since, holding a copy of the record.

A record is written first, then its journal entry, so the records are always a superset
of what the index claims. Reading = GET the manifest, HEAD the sentinel, LIST the journal
and GET its entries (only the new work). :meth:`RecordIndex.compact`, under the lake lease
at the end of a run, folds the journal into a new manifest and then deletes the entries it
folded; merging is a set union of immutable records, so a compaction killed half-way is
finished by the next one (an entry already in the manifest merges again, unchanged).

A manifest is never trusted blindly:

- no manifest (a lake from before indexes, or one whose index was deleted): the records
  are listed and read once, and the next compaction writes the manifest;
- the sentinel record missing or changed (its prefix was deleted and perhaps rebuilt, as
  a key rotation or a rebuild after demo data does): the same full read, journal ignored
  (the listing holds every record the journal could name);
- a record written but killed before its journal entry: not in the index, so the work is
  redone (landing adopts the existing record; processing is deterministic) and journaled.

Deleting single records by hand is not detected: delete the manifest with them (the next
run lists and reads everything once).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import threading
import weakref
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from edulake.core.faults import crashpoint
from edulake.core.lake import Lake, ObjectInfo, Zone, safe_key

INDEX_ROOT = "index"
# Parsed manifests per Lake object: (size, mtime) when read, the document.
_CACHE: weakref.WeakKeyDictionary[Lake, dict[str, tuple[tuple[int, float | None], Any]]] = (
    weakref.WeakKeyDictionary()
)
_CACHE_LOCK = threading.Lock()
MANIFEST = "manifest.gzjson"  # gzip JSON; not ".gz": pyarrow would decompress it on read


@dataclass
class Snapshot:
    """The records of one prefix as one read saw them."""

    records: dict[str, dict[str, Any]] = field(default_factory=dict)  # zone key -> record
    journal: list[str] = field(default_factory=list)  # journal keys merged in
    journaled: list[str] = field(default_factory=list)  # the record keys they named
    manifest: bool = False  # read from a manifest (False: listed and read in full)
    stale: bool = False  # a manifest existed but its sentinel no longer matched
    listed: list[ObjectInfo] = field(default_factory=list)  # the full listing, when made


class RecordIndex:
    """The index of the immutable JSON records under one ``_system`` prefix."""

    def __init__(
        self,
        lake: Lake,
        prefix: str,
        *,
        slim: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    ) -> None:
        """``slim`` keeps what readers need of a record in the index (default: all of it)."""
        self.lake = lake
        self.prefix = safe_key(prefix)
        self.base = safe_key(INDEX_ROOT, self.prefix)
        self._slim = slim or (lambda record: record)

    @property
    def manifest_key(self) -> str:
        return f"{self.base}/{MANIFEST}"

    @property
    def journal_prefix(self) -> str:
        return f"{self.base}/journal"

    def journal_key(self, key: str) -> str:
        return f"{self.journal_prefix}/{hashlib.sha256(key.encode()).hexdigest()[:32]}.json"

    # -- writes ----------------------------------------------------------------------------
    def add(self, key: str, record: dict[str, Any]) -> None:
        """Journal a record already written at ``key`` (after the record, never before)."""
        entry = {"key": key, "record": self._slim(record)}
        self.lake.write_json(Zone.SYSTEM, self.journal_key(key), entry)

    def compact(self, snapshot: Snapshot | None = None) -> bool:
        """Fold the journal into a new manifest (under the lake lease); whether it wrote.

        Nothing is written when the manifest exists and the journal is empty (a no-op run).
        """
        snap = snapshot or self.load()
        if snap.manifest and not snap.journal:
            return False
        if not snap.records and not snap.manifest:
            self._drop_journal(snap)  # nothing recorded: leave no index behind
            return False
        first = min(snap.records)
        info = self._info(first)
        doc = {
            "version": 1,
            "prefix": self.prefix,
            "records": snap.records,
            "sentinel": _sentinel(first, info),
        }
        data = gzip.compress(json.dumps(doc, sort_keys=True, default=str).encode(), mtime=0)
        self.lake.write_bytes(Zone.SYSTEM, self.manifest_key, data)
        crashpoint("index.compacted")
        self._drop_journal(snap)
        return True

    def _drop_journal(self, snap: Snapshot) -> None:
        keys = snap.journal if snap.manifest else self._journal_keys()
        for key in keys:
            self.lake.delete(Zone.SYSTEM, key)

    def drop(self) -> None:
        """Forget the index (the next read lists and reads every record once)."""
        self.lake.delete(Zone.SYSTEM, self.manifest_key)

    # -- reads -----------------------------------------------------------------------------
    def load(self) -> Snapshot:
        """Every record: the manifest plus the journal, or a full read when it cannot be trusted."""
        doc = self._manifest()
        if doc is None:
            return self._full()
        sentinel = doc.get("sentinel") or {}
        key = sentinel.get("key")
        if not key or _sentinel(key, self._info(key)) != sentinel:
            snap = self._full()
            snap.stale = True
            return snap
        snap = Snapshot(records=dict(doc["records"]), manifest=True)
        snap.journal = self._journal_keys()
        for entry in _read_many(self.lake, snap.journal):
            snap.records[str(entry["key"])] = entry["record"]
            snap.journaled.append(str(entry["key"]))
        return snap

    def _manifest(self) -> dict[str, Any] | None:
        """The manifest, parsed once per lake object while it does not change (HEAD, then
        GET only when it changed: parsing a long history is what would grow)."""
        info = self.lake.info(Zone.SYSTEM, self.manifest_key)
        if info is None:
            return None
        stamp = (info.size, info.mtime)
        with _CACHE_LOCK:
            hit = _CACHE.get(self.lake, {}).get(self.manifest_key)
        if hit is not None and hit[0] == stamp:
            cached: dict[str, Any] = hit[1]
            return cached
        try:
            raw = self.lake.read_bytes(Zone.SYSTEM, self.manifest_key)
        except FileNotFoundError:
            return None
        doc: dict[str, Any] = json.loads(gzip.decompress(raw))
        with _CACHE_LOCK:  # a change between HEAD and GET: the next HEAD differs, re-read
            _CACHE.setdefault(self.lake, {})[self.manifest_key] = (stamp, doc)
        return doc

    def _journal_keys(self) -> list[str]:
        return [o.key for o in self.lake.list(Zone.SYSTEM, self.journal_prefix)]

    def _full(self) -> Snapshot:
        """Every record, listed and read (no usable manifest)."""
        listed = self.lake.list(Zone.SYSTEM, self.prefix)
        keys = [o.key for o in listed if o.key.endswith(".json")]
        records = {k: self._slim(r) for k, r in zip(keys, _read_many(self.lake, keys), strict=True)}
        return Snapshot(records=records, manifest=False, listed=listed)

    def _info(self, key: str) -> ObjectInfo | None:
        return self.lake.info(Zone.SYSTEM, key)


def _sentinel(key: str, info: ObjectInfo | None) -> dict[str, Any]:
    if info is None:
        return {"key": key, "missing": True}
    return {"key": key, "size": info.size, "mtime": info.mtime}


def _read_many(lake: Lake, keys: Iterable[str]) -> list[Any]:
    keys = list(keys)
    if not keys:
        return []
    if len(keys) == 1:
        return [lake.read_json(Zone.SYSTEM, keys[0])]
    with ThreadPoolExecutor(max_workers=min(16, len(keys))) as pool:
        return list(pool.map(lambda k: lake.read_json(Zone.SYSTEM, k), keys))
