"""The lake: zones over one filesystem interface, local folder or S3, with atomic commits.

Every write goes through one protocol so that a reader (or the catalog) never sees a
half-written file, on either backend:

1. bytes are written under ``<root>/_tmp/<uuid>`` (outside every zone, invisible to readers);
2. ``commit`` moves them to the final key: a rename on local disk, a server-side copy then
   delete on S3 (an S3 object is visible only once complete).

A run killed between 1 and 2 leaves only ``_tmp`` garbage, which :meth:`Lake.sweep_tmp`
removes; a run killed during a multi-file commit leaves complete files only, and the
caller's state record (written last) makes the next run redo the unit.
"""

from __future__ import annotations

import contextlib
import json
import os
import posixpath
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.fs as pafs

TMP_DIR = "_tmp"


class Zone(StrEnum):
    """The lake's zones. Protected zones live under the np root."""

    STAGE1NP = "stage1np"  # raw files exactly as received (protected)
    STAGE2NP = "stage2np"  # PII lookup tables (protected)
    STAGE2P = "stage2p"  # pseudonymized tables for analysts
    QUARANTINE = "quarantine"  # rejected input rows: raw, so protected
    SYSTEM = "_system"  # landing ledger, run state, watermarks
    EXPORTS = "exports"  # convenience extracts (CSV for Tableau users)


# Everything that holds raw identifiers: the raw files, the lookups, the rejected rows.
# With an np root they live under it, so whoever is given the lake root (analysts, a BI
# tool) gets no raw identifier at all.
PROTECTED_ZONES = frozenset({Zone.STAGE1NP, Zone.STAGE2NP, Zone.QUARANTINE})


class StorageUnavailableError(OSError):
    """Lake storage kept failing after the client's retries; the message says what to do."""


def explain_storage_error(exc: OSError, lake: Lake | None) -> StorageUnavailableError:
    """A storage error that exhausted its retries, restated with what to do next."""
    where = f"the lake storage ({lake.main.uri}, np root {lake.protected.uri})" if lake else "S3"
    first = str(exc).splitlines()[0][:300]
    return StorageUnavailableError(
        f"{where} kept failing after retries: {first}. What to do: check that the endpoint "
        "is reachable and the credentials valid (EDULAKE_S3__* settings or the AwsCredentials "
        "block); if S3 was throttling (503 SlowDown) or failing (5xx), re-run later or lower "
        "max_concurrent_downloads. Nothing partial is visible to readers, and re-running the "
        "flow is safe: it continues where this run stopped."
    )


class UnsafeKeyError(ValueError):
    """A key that would escape its zone (``..``, absolute paths, backslashes)."""


def safe_key(*parts: str) -> str:
    """Join key parts, refusing anything that could escape the zone."""
    cleaned: list[str] = []
    for part in parts:
        if not part:
            continue
        if "\\" in part or part.startswith("/") or "\x00" in part:
            raise UnsafeKeyError(f"unsafe path component: {part!r}")
        for seg in part.split("/"):
            if seg in ("", "."):
                continue
            if seg == "..":
                raise UnsafeKeyError(f"unsafe path component: {part!r}")
            cleaned.append(seg)
    if not cleaned:
        raise UnsafeKeyError("empty key")
    return "/".join(cleaned)


@dataclass(frozen=True)
class S3Options:
    """How to reach S3 (or an S3-compatible store). ``None`` fields use the AWS default chain."""

    endpoint_url: str | None = None
    region: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = field(default=None, repr=False)
    session_token: str | None = field(default=None, repr=False)
    max_attempts: int = 8  # throttling (503 SlowDown) and 5xx: retried with backoff

    def arrow_fs(self) -> pafs.S3FileSystem:
        kwargs: dict[str, Any] = {
            # Throttling (503 SlowDown) and 5xx are retried by the SDK with backoff.
            "retry_strategy": pafs.AwsStandardS3RetryStrategy(max_attempts=self.max_attempts),
            "connect_timeout": 10,
            "request_timeout": 60,
        }
        if self.access_key_id:
            kwargs["access_key"] = self.access_key_id
            kwargs["secret_key"] = self.secret_access_key
            kwargs["session_token"] = self.session_token
        if self.region:
            kwargs["region"] = self.region
        if self.endpoint_url:
            parsed = urlparse(self.endpoint_url)
            kwargs["endpoint_override"] = parsed.netloc or parsed.path
            kwargs["scheme"] = parsed.scheme or "https"
            kwargs.setdefault("region", "us-east-1")
        return pafs.S3FileSystem(**kwargs)

    def fsspec(self) -> Any:
        """An s3fs filesystem with the same options (for DuckDB, which takes fsspec)."""
        import s3fs

        client_kwargs: dict[str, Any] = {}
        if self.endpoint_url:
            client_kwargs["endpoint_url"] = self.endpoint_url
        if self.region:
            client_kwargs["region_name"] = self.region
        return s3fs.S3FileSystem(
            key=self.access_key_id,
            secret=self.secret_access_key,
            token=self.session_token,
            client_kwargs=client_kwargs,
        )


@dataclass(frozen=True)
class Store:
    """One root: a filesystem and the base path of the root in it."""

    fs: pafs.FileSystem
    base: str
    uri: str
    is_local: bool
    s3: S3Options | None = None

    def path(self, *parts: str) -> str:
        return posixpath.join(self.base, *parts) if parts else self.base


def open_store(root: str, s3: S3Options | None = None) -> Store:
    """A store for a root URL: a local folder, ``file://`` or ``s3://bucket/prefix``."""
    parsed = urlparse(root)
    if parsed.scheme == "s3":
        opts = s3 or S3Options()
        base = (parsed.netloc + "/" + parsed.path.strip("/")).rstrip("/")
        return Store(opts.arrow_fs(), base, f"s3://{base}", is_local=False, s3=opts)
    if parsed.scheme in ("", "file"):
        local = parsed.path if parsed.scheme == "file" else root
        base = os.path.abspath(local).replace(os.sep, "/")
        return Store(pafs.LocalFileSystem(), base, base, is_local=True)
    raise ValueError(f"unsupported lake root {root!r}: use a folder path or s3://bucket/prefix")


@dataclass(frozen=True)
class ObjectInfo:
    """A file in the lake: its key relative to the zone, size and modification time."""

    key: str
    size: int
    mtime: float | None


class StagedFiles:
    """Files written to ``_tmp`` and made visible together by :meth:`commit`."""

    def __init__(self, lake: Lake) -> None:
        self._lake = lake
        self._pending: list[tuple[Zone, str, str]] = []  # zone, key, tmp path

    @contextlib.contextmanager
    def open(self, zone: Zone, key: str) -> Iterator[pa.NativeFile]:
        """An output stream for ``key``; the file becomes visible at :meth:`commit`."""
        store = self._lake.store(zone)
        # Each Lake object stages under its own session folder, so a run that takes over
        # the lease from a killed holder can remove exactly what that holder left.
        tmp = store.path(TMP_DIR, self._lake.session, f"{uuid.uuid4().hex}.tmp")
        if store.is_local:
            store.fs.create_dir(store.path(TMP_DIR, self._lake.session), recursive=True)
        key = safe_key(key)
        stream = store.fs.open_output_stream(tmp)
        try:
            yield stream
        except BaseException:
            stream.close()
            with contextlib.suppress(OSError):
                store.fs.delete_file(tmp)
            raise
        stream.close()
        self._pending.append((zone, key, tmp))

    def write_bytes(self, zone: Zone, key: str, data: bytes) -> None:
        with self.open(zone, key) as out:
            out.write(data)

    @property
    def keys(self) -> list[tuple[Zone, str]]:
        return [(z, k) for z, k, _ in self._pending]

    def commit(self) -> None:
        """Move every staged file to its final key (atomic per file)."""
        self._lake.check_commit()
        for zone, key, tmp in self._pending:
            store = self._lake.store(zone)
            final = store.path(zone.value, key)
            if store.is_local:
                store.fs.create_dir(posixpath.dirname(final), recursive=True)
                store.fs.move(tmp, final)  # rename(2): atomic on one filesystem
            else:
                store.fs.copy_file(tmp, final)  # CopyObject: visible only when complete
                store.fs.delete_file(tmp)
        self._pending.clear()

    def discard(self) -> None:
        for zone, _key, tmp in self._pending:
            with contextlib.suppress(FileNotFoundError, OSError):
                self._lake.store(zone).fs.delete_file(tmp)
        self._pending.clear()


class Lake:
    """The data lake: zones under a main root, protected zones under the np root."""

    def __init__(self, root: str, np_root: str | None = None, s3: S3Options | None = None):
        self.main = open_store(root, s3)
        self.protected = open_store(np_root, s3) if np_root else self.main
        # Staging folder of this Lake object under _tmp/ (see StagedFiles.open).
        self.session = uuid.uuid4().hex[:16]
        # Set by a held lake lease: every commit first checks the lease is still ours.
        self.commit_guard: Callable[[], None] | None = None

    def check_commit(self) -> None:
        """Raise if this run holds the lake lease and has lost it (see edulake.core.lease)."""
        if self.commit_guard is not None:
            self.commit_guard()

    def __repr__(self) -> str:
        return f"Lake(root={self.main.uri!r}, np_root={self.protected.uri!r})"

    # -- locations ---------------------------------------------------------------------
    def store(self, zone: Zone) -> Store:
        return self.protected if zone in PROTECTED_ZONES else self.main

    def fs_path(self, zone: Zone, key: str = "") -> str:
        store = self.store(zone)
        return store.path(zone.value, safe_key(key)) if key else store.path(zone.value)

    def uri(self, zone: Zone, key: str = "") -> str:
        """A URL for engines (DuckDB, Athena): an absolute path locally, s3://... on S3."""
        store = self.store(zone)
        path = self.fs_path(zone, key)
        return path if store.is_local else f"s3://{path}"

    @property
    def is_local(self) -> bool:
        return self.main.is_local and self.protected.is_local

    # -- reads ---------------------------------------------------------------------------
    def exists(self, zone: Zone, key: str) -> bool:
        info = self.store(zone).fs.get_file_info(self.fs_path(zone, key))
        return bool(info.type == pafs.FileType.File)

    def info(self, zone: Zone, key: str) -> ObjectInfo | None:
        """Size and mtime of one file (one HEAD), or None when there is none."""
        info = self.store(zone).fs.get_file_info(self.fs_path(zone, key))
        if info.type != pafs.FileType.File:
            return None
        mtime = info.mtime.timestamp() if info.mtime is not None else None
        return ObjectInfo(safe_key(key), info.size or 0, mtime)

    def list(self, zone: Zone, prefix: str = "") -> list[ObjectInfo]:
        """Every file under ``prefix`` in a zone (recursive), sorted by key."""
        store = self.store(zone)
        base = self.fs_path(zone, prefix) if prefix else self.fs_path(zone)
        selector = pafs.FileSelector(base, recursive=True, allow_not_found=True)
        zone_base = self.fs_path(zone) + "/"
        out = []
        for info in store.fs.get_file_info(selector):
            if info.type != pafs.FileType.File:
                continue
            mtime = info.mtime.timestamp() if info.mtime is not None else None
            out.append(ObjectInfo(info.path[len(zone_base) :], info.size or 0, mtime))
        return sorted(out, key=lambda o: o.key)

    def open_input(self, zone: Zone, key: str) -> pa.NativeFile:
        return self.store(zone).fs.open_input_stream(self.fs_path(zone, key))

    def open_input_file(self, zone: Zone, key: str) -> pa.NativeFile:
        """A seekable input (Parquet readers need one)."""
        return self.store(zone).fs.open_input_file(self.fs_path(zone, key))

    def read_bytes(self, zone: Zone, key: str) -> bytes:
        with self.open_input(zone, key) as f:
            return bytes(f.read())

    def read_json(self, zone: Zone, key: str) -> Any:
        return json.loads(self.read_bytes(zone, key))

    # -- writes --------------------------------------------------------------------------
    def staged(self) -> StagedFiles:
        return StagedFiles(self)

    @contextlib.contextmanager
    def atomic_write(self, zone: Zone, key: str) -> Iterator[pa.NativeFile]:
        """Write one file; it becomes visible only if the block completes."""
        staged = self.staged()
        try:
            with staged.open(zone, key) as out:
                yield out
            staged.commit()
        except BaseException:
            staged.discard()
            raise

    def write_bytes(self, zone: Zone, key: str, data: bytes) -> None:
        with self.atomic_write(zone, key) as out:
            out.write(data)

    def write_json(self, zone: Zone, key: str, obj: Any) -> None:
        self.write_bytes(zone, key, json.dumps(obj, indent=1, sort_keys=True, default=str).encode())

    def delete(self, zone: Zone, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.store(zone).fs.delete_file(self.fs_path(zone, key))

    def delete_prefix(self, zone: Zone, prefix: str) -> int:
        """Delete every file under a prefix; returns how many."""
        files = self.list(zone, prefix)
        for obj in files:
            self.delete(zone, obj.key)
        return len(files)

    def sweep_session(self, session: str) -> int:
        """Remove the staging files of one session (a dead lease holder's); returns how many."""
        removed = 0
        stores = {id(self.main): self.main, id(self.protected): self.protected}
        for store in stores.values():
            folder = store.path(TMP_DIR, safe_key(session))
            selector = pafs.FileSelector(folder, recursive=True, allow_not_found=True)
            for info in store.fs.get_file_info(selector):
                if info.type == pafs.FileType.File:
                    with contextlib.suppress(FileNotFoundError):
                        store.fs.delete_file(info.path)
                        removed += 1
            with contextlib.suppress(OSError):  # the folder (an S3 directory marker too)
                store.fs.delete_dir(folder)
        return removed

    def sweep_tmp(self, older_than_s: float = 3600.0) -> int:
        """Remove staging files left by killed runs (older than ``older_than_s``)."""
        removed = 0
        stores = {id(self.main): self.main, id(self.protected): self.protected}
        now = time.time()
        for store in stores.values():
            selector = pafs.FileSelector(store.path(TMP_DIR), recursive=True, allow_not_found=True)
            for info in store.fs.get_file_info(selector):
                if info.type != pafs.FileType.File:
                    continue
                if info.mtime is not None and now - info.mtime.timestamp() < older_than_s:
                    continue
                with contextlib.suppress(FileNotFoundError):
                    store.fs.delete_file(info.path)
                    removed += 1
        return removed
