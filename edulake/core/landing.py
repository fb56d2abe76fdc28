"""Landing: raw bytes copied unchanged into stage1np, recorded in the landing ledger.

The ledger is one small immutable JSON record per landed version, at
``_system/ledger/<source>/<name>/<sha256>.json``: written atomically, never rewritten,
safe on S3 (no read-modify-write of a shared file). A version already in the ledger is
never landed twice; a changed file lands as a new version beside the old one. An index
(:mod:`edulake.core.index`: a manifest compacted at the end of a run plus a journal of
the records since) makes reading the ledger a few requests, whatever its length.

Order of effects, so a killed run is repaired by the next: stage the bytes (invisible),
write an intent (``<sha256>.intent``: "these bytes go to this key"), commit the raw file,
write the ledger record, journal it, drop the intent. A run killed before the record
(or before its journal entry: the record is then adopted as first written) lands the same
bytes again next time - at the key its intent names, even on a later landing day, so
stage1np never holds an unrecorded second copy.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import posixpath
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field
from typing import IO, Any, Literal

from edulake.core.faults import crashpoint
from edulake.core.index import RecordIndex
from edulake.core.lake import Lake, Zone, safe_key

CHUNK = 1 << 20


@dataclass(frozen=True)
class SourceFile:
    """A file offered by a source: its relative name there, size and modification time."""

    name: str
    size: int | None = None
    mtime: float | None = None


@dataclass(frozen=True)
class LedgerEntry:
    """One landed version of a source file."""

    source: str
    name: str
    sha256: str
    size: int
    path: str  # stage1np key
    landed_at: str
    mtime: float | None = None
    flow_run_id: str | None = None
    attrs: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> LedgerEntry:
        return cls(**obj)


class Ledger:
    """The landing ledger of one source.

    ``indexed`` (the default) keeps a :class:`~edulake.core.index.RecordIndex` beside the
    records, so reading the ledger costs a few requests whatever its length; a ledger
    object reads it once and keeps what it records itself (one run, under the lease).
    """

    def __init__(self, lake: Lake, source: str, *, indexed: bool = True) -> None:
        self.lake = lake
        self.source = source
        self._prefix = f"ledger/{source}"
        self.index = RecordIndex(lake, self._prefix) if indexed else None
        self._known: dict[str, list[dict[str, Any]]] | None = None  # name -> records
        self._lock = threading.Lock()

    def _key(self, name: str, sha256: str) -> str:
        return safe_key(self._prefix, name, f"{sha256}.json")

    def record(self, entry: LedgerEntry) -> None:
        """Write a version's record, then journal it (the index never claims more)."""
        obj = asdict(entry)
        self.lake.write_json(Zone.SYSTEM, self._key(entry.name, entry.sha256), obj)
        crashpoint("land.recorded")
        self._journal(entry, obj)

    def adopt(self, entry: LedgerEntry) -> None:
        """Journal a record a killed run wrote but never journaled (kept as first written)."""
        self._journal(entry, asdict(entry))

    def _journal(self, entry: LedgerEntry, obj: dict[str, Any]) -> None:
        if self.index is None:
            return
        self.index.add(self._key(entry.name, entry.sha256), obj)
        with self._lock:
            if self._known is not None:
                self._known.setdefault(entry.name, []).append(obj)

    def read(self, name: str, sha256: str) -> LedgerEntry:
        return LedgerEntry.from_json(self.lake.read_json(Zone.SYSTEM, self._key(name, sha256)))

    def _intent_key(self, name: str, sha256: str) -> str:
        return safe_key(self._prefix, name, f"{sha256}.intent")

    def intend(self, name: str, sha256: str, path: str) -> None:
        """Note that these bytes are about to be committed at ``path`` (before the commit)."""
        self.lake.write_json(Zone.SYSTEM, self._intent_key(name, sha256), {"path": path})

    def intended(self, name: str, sha256: str) -> str | None:
        """Where an earlier, unfinished landing of these bytes was committing them."""
        try:  # one request on the common path (no intent), not exists() + read
            intent = self.lake.read_json(Zone.SYSTEM, self._intent_key(name, sha256))
        except FileNotFoundError:
            return None
        return str(intent["path"])

    def done(self, name: str, sha256: str) -> None:
        """Drop the intent once the ledger record is written."""
        with contextlib.suppress(FileNotFoundError):
            self.lake.delete(Zone.SYSTEM, self._intent_key(name, sha256))

    def has(self, name: str, sha256: str) -> bool:
        return self.lake.exists(Zone.SYSTEM, self._key(name, sha256))

    def versions(self, name: str) -> list[LedgerEntry]:
        """Every landed version of ``name``, oldest first (listed: the records themselves)."""
        keys = [o.key for o in self.lake.list(Zone.SYSTEM, safe_key(self._prefix, name))]
        records = [k for k in keys if k.endswith(".json")]
        self._drop_finished_intents(keys)
        entries = _read_all(self.lake, records)
        return sorted(entries, key=lambda e: (e.landed_at, e.sha256))

    def _drop_finished_intents(self, keys: list[str]) -> None:
        # A run killed between writing a version's record and dropping its intent leaves
        # the intent behind; the version is landed (its record exists), so drop it now
        # (free: this listing was made anyway; later runs skip the file as unchanged).
        done = {k[: -len(".json")] for k in keys if k.endswith(".json")}
        for k in keys:
            if k.endswith(".intent") and k[: -len(".intent")] in done:
                self.lake.delete(Zone.SYSTEM, k)

    def known(self, name: str) -> list[LedgerEntry]:
        """The versions of ``name`` as this ledger object knows them, oldest first.

        Indexed: read once per object (a few requests), then kept current by
        :meth:`record`; not indexed: :meth:`versions`.
        """
        if self.index is None:
            return self.versions(name)
        with self._lock:
            if self._known is None:
                self._known = {}
                for r in self._load_raw():
                    self._known.setdefault(str(r["name"]), []).append(r)
            found = [_entry(r) for r in self._known.get(name, [])]
        return sorted(found, key=lambda e: (e.landed_at, e.sha256))

    def _load_raw(self) -> list[Any]:
        """Every record as stored (a long history: converted only where needed)."""
        if self.index is None:
            keys = [o.key for o in self.lake.list(Zone.SYSTEM, self._prefix)]
            return _read_raw(self.lake, [k for k in keys if k.endswith(".json")])
        snap = self.index.load()
        if snap.listed:  # a full read (no usable manifest): tidy up what it saw
            self._drop_finished_intents([o.key for o in snap.listed])
        return list(snap.records.values())

    def entries(self) -> list[LedgerEntry]:
        """Every version of every file, oldest first."""
        entries = [LedgerEntry.from_json(r) for r in self._load_raw()]
        return sorted(entries, key=lambda e: (e.landed_at, e.name))

    def latest_records(self) -> dict[str, dict[str, Any]]:
        """The newest version of each file name, as stored (no conversion of the rest)."""
        out: dict[str, dict[str, Any]] = {}
        for r in self._load_raw():
            name = r["name"]
            seen = out.get(name)
            if seen is None or (r["landed_at"], r["sha256"]) > (seen["landed_at"], seen["sha256"]):
                out[name] = r
        return out

    def latest(self) -> dict[str, LedgerEntry]:
        """The newest version of each file name."""
        return {n: LedgerEntry.from_json(r) for n, r in sorted(self.latest_records().items())}

    def compact(self) -> bool:
        """Fold the journal into the manifest (under the lake lease, end of a run).

        Also drops the intent of every version journaled since the last compaction: a
        run killed after journaling a version but before dropping its intent left it.
        """
        if self.index is None:
            return False
        snap = self.index.load()
        if snap.listed:
            self._drop_finished_intents([o.key for o in snap.listed])
        for key in snap.journaled:
            rec = snap.records[key]
            self.done(str(rec["name"]), str(rec["sha256"]))
        written = self.index.compact(snap)
        with self._lock:
            self._known = None
        return written


def _read_raw(lake: Lake, keys: list[str]) -> list[Any]:
    if not keys:
        return []
    with ThreadPoolExecutor(max_workers=min(16, len(keys))) as pool:
        return list(pool.map(lambda k: lake.read_json(Zone.SYSTEM, k), keys))


def _read_all(lake: Lake, keys: list[str]) -> list[LedgerEntry]:
    return [LedgerEntry.from_json(o) for o in _read_raw(lake, keys)]


def _entry(record: dict[str, Any]) -> LedgerEntry:
    return LedgerEntry.from_json(record)


Outcome = Literal["landed", "new-version", "unchanged", "same-content", "vanished"]


@dataclass(frozen=True)
class LandingResult:
    """What happened to one offered file."""

    name: str
    outcome: Outcome
    entry: LedgerEntry | None
    size: int | None

    @property
    def landed(self) -> bool:
        return self.outcome in ("landed", "new-version")


def land_file(
    lake: Lake,
    ledger: Ledger,
    file: SourceFile,
    opener: Callable[[SourceFile], AbstractContextManager[IO[bytes]]],
    landing_key: Callable[[SourceFile, dt.date], str],
    *,
    attrs: dict[str, Any] | None = None,
    flow_run_id: str | None = None,
    now: dt.datetime | None = None,
) -> LandingResult:
    """Land one file unless the ledger already holds it; returns what happened.

    Unchanged files (same size and mtime as a landed version) are skipped without a
    download; otherwise the bytes are streamed to staging while hashed, and committed
    only if the checksum is new and the size matches what the source announced.
    """
    versions = ledger.known(file.name)
    if file.mtime is not None and file.size is not None:
        for v in versions:
            if v.size == file.size and v.mtime == file.mtime:
                return LandingResult(file.name, "unchanged", v, file.size)

    now = now or dt.datetime.now(dt.UTC)
    key = landing_key(file, now.date())
    staged = lake.staged()
    digest = hashlib.sha256()
    size = 0
    try:
        with opener(file) as src, staged.open(Zone.STAGE1NP, key) as out:
            while chunk := src.read(CHUNK):
                digest.update(chunk)
                out.write(chunk)
                size += len(chunk)
        if file.size is not None and size != file.size:
            raise IncompleteTransferError(
                f"{file.name}: received {size} bytes, the source announced {file.size}"
            )
        sha = digest.hexdigest()
        if any(v.sha256 == sha for v in versions):
            staged.discard()
            same = next(v for v in versions if v.sha256 == sha)
            return LandingResult(file.name, "same-content", same, size)
        prior = ledger.intended(file.name, sha)
        if prior is not None and prior != key and _holds(lake, prior, sha):
            # A killed run committed these very bytes under an earlier landing date but
            # died before recording them: adopt that copy instead of landing a second one.
            staged.discard()
            return _record(
                lake, ledger, file, sha, size, prior, versions, attrs, flow_run_id, now, True
            )
        if versions and lake.exists(Zone.STAGE1NP, key):
            # A changed version on the same landing day: keep both, never overwrite.
            stem, ext = posixpath.splitext(key)
            key = f"{stem}~{sha[:12]}{ext}"
            staged.discard()
            return land_file(
                lake,
                ledger,
                file,
                opener,
                lambda _f, _d: key,
                attrs=attrs,
                flow_run_id=flow_run_id,
                now=now,
            )
        ledger.intend(file.name, sha, key)
        crashpoint("land.staged")
        staged.commit()
    except BaseException:
        staged.discard()
        raise
    crashpoint("land.committed")
    repair = prior is not None
    return _record(lake, ledger, file, sha, size, key, versions, attrs, flow_run_id, now, repair)


def _record(
    lake: Lake,
    ledger: Ledger,
    file: SourceFile,
    sha: str,
    size: int,
    key: str,
    versions: list[LedgerEntry],
    attrs: dict[str, Any] | None,
    flow_run_id: str | None,
    now: dt.datetime,
    repair: bool = False,
) -> LandingResult:
    """Write the ledger record of a committed raw file, then drop its intent.

    ``repair`` (an intent was found): a killed run may have written the record but not
    its journal entry; that record is kept as first written and journaled.
    """
    outcome: Outcome = "new-version" if versions else "landed"
    if repair and ledger.has(file.name, sha):
        existing = ledger.read(file.name, sha)
        if existing.path == key:
            ledger.adopt(existing)
            ledger.done(file.name, sha)
            return LandingResult(file.name, outcome, existing, size)
    entry = LedgerEntry(
        source=ledger.source,
        name=file.name,
        sha256=sha,
        size=size,
        path=key,
        landed_at=now.isoformat(),
        mtime=file.mtime,
        flow_run_id=flow_run_id,
        attrs=dict(attrs or {}),
    )
    ledger.record(entry)
    crashpoint("land.journaled")
    ledger.done(file.name, sha)
    return LandingResult(file.name, outcome, entry, size)


def _holds(lake: Lake, key: str, sha: str) -> bool:
    """Whether stage1np has exactly these bytes at ``key`` (re-hashed: the rare repair path)."""
    if not lake.exists(Zone.STAGE1NP, key):
        return False
    digest = hashlib.sha256()
    with lake.open_input(Zone.STAGE1NP, key) as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest() == sha


class IncompleteTransferError(IOError):
    """A transfer ended before the announced size: nothing was committed."""


def summarize(results: Iterable[LandingResult]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in results:
        out[r.outcome] = out.get(r.outcome, 0) + 1
    return out
