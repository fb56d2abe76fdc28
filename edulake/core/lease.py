"""The lake lease: one writer at a time changes a lake's shared state.

Every flow that changes shared state (identity lookups, table files, the catalog,
watermarks, suppression and key state) holds the lease around its commit sections, so
two runs that overlap end as if they ran one after the other. Long I/O (downloads, page
fetches) may run outside it.

Two backends, one protocol (:class:`LakeLease`):

* **local lake**: an OS lock (``flock``) on ``<root>/_system/lease/lake.lock``. The kernel
  drops it when the holder dies, however it dies, so a killed run never blocks the next.
  (A local lake must be on a local disk: ``flock`` over NFS is not reliable.)
* **S3 lake**: a lease object ``<root>/_system/lease/lake.json`` written with S3 conditional
  writes: ``If-None-Match: *`` takes a free lease, ``If-Match: <etag>`` renews it (a
  heartbeat thread), releases it and takes over one that has expired. Exactly one taker
  wins each race; the others get 412 and wait. A holder that cannot renew before its
  expiry stops committing (:meth:`LakeLease.check` raises :class:`LeaseLost`): by then
  another run may have taken over.

The holder record (owner, host, pid, purpose, since, staging session) is what a waiting
run logs. When a run takes over from a holder that never released (killed), it removes
that holder's staging files at once (``_tmp/<session>/``): raw bytes must not linger.

While a lease is held, :meth:`Lake.commit_guard` points at it, so every commit of the
lake's one commit protocol first checks that the lease is still ours.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from typing import Any, Protocol

from edulake.core.faults import notepoint
from edulake.core.lake import Lake, Store

log = logging.getLogger(__name__)

LEASE_DIR = "_system/lease"
LOCK_NAME = "lake.lock"
RECORD_NAME = "lake.json"


class LeaseError(RuntimeError):
    """Base of the lease's errors (never transient: retrying a task does not help)."""


class LeaseBusy(LeaseError):
    """Another run held the lease for longer than this run was willing to wait."""


class LeaseLost(LeaseError):
    """This run's lease expired or was taken over: it must not commit anything more."""


@dataclass(frozen=True)
class Holder:
    """Who holds (or last held) the lease."""

    owner: str  # flow run id, or "cli"/"local" outside Prefect
    purpose: str  # e.g. "clever-participation"
    host: str
    pid: int
    session: str  # the holder's staging folder under _tmp/
    since: str  # ISO time the lease was taken
    expires_at: float = 0.0  # epoch seconds (S3 only; 0 locally: the OS lock is the truth)
    released: bool = False

    def describe(self) -> str:
        return (
            f"{self.purpose} (flow run {self.owner}, host {self.host}, pid {self.pid}) "
            f"since {self.since}"
        )

    def to_bytes(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Holder | None:
        try:
            raw = json.loads(data)
            return cls(**{k: raw[k] for k in cls.__dataclass_fields__ if k in raw})
        except (ValueError, TypeError, KeyError):
            return None


@dataclass(frozen=True)
class LeaseConfig:
    """How long to wait for the lease, and how long an S3 lease lives without renewal."""

    wait_s: float = 1800.0
    ttl_s: float = 120.0
    poll_s: float = 1.0


class _Backend(Protocol):
    def try_take(self, me: Holder) -> tuple[bool, Holder | None]:
        """Take the lease if free: (taken, previous or current holder)."""

    def renew(self, me: Holder) -> bool:
        """Extend our lease; False if it is no longer ours."""

    def release(self, me: Holder) -> None:
        """Give the lease back."""


class _LocalBackend:
    """``flock`` on a lock file; the holder record beside it for messages and sweeping."""

    def __init__(self, store: Store) -> None:
        self.folder = store.path(LEASE_DIR)
        self.lock_path = os.path.join(self.folder, LOCK_NAME)
        self.record_path = os.path.join(self.folder, RECORD_NAME)
        self._fd: int | None = None

    def _read(self) -> Holder | None:
        try:
            with open(self.record_path, "rb") as f:
                return Holder.from_bytes(f.read())
        except FileNotFoundError:
            return None

    def _write(self, holder: Holder) -> None:
        tmp = f"{self.record_path}.{os.getpid()}.{threading.get_ident()}"
        with open(tmp, "wb") as f:
            f.write(holder.to_bytes())
        os.replace(tmp, self.record_path)

    def try_take(self, me: Holder) -> tuple[bool, Holder | None]:
        os.makedirs(self.folder, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False, self._read()
        self._fd = fd
        previous = self._read()
        self._write(me)
        return True, previous

    def renew(self, me: Holder) -> bool:
        return self._fd is not None

    def release(self, me: Holder) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            self._write(replace(me, released=True))
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None


class _S3Backend:
    """A lease object written with conditional PUTs (``If-None-Match``/``If-Match``)."""

    def __init__(self, store: Store, ttl_s: float) -> None:
        from edulake.connectors.aws import boto3_s3_client

        bucket, _, prefix = store.base.partition("/")
        self.bucket = bucket
        self.key = "/".join(p for p in (prefix, LEASE_DIR, RECORD_NAME) if p)
        self.client = boto3_s3_client(store.s3)
        self.ttl_s = ttl_s
        self.etag: str | None = None

    def _get(self) -> tuple[Holder | None, str | None]:
        try:
            obj = self.client.get_object(Bucket=self.bucket, Key=self.key)
        except self.client.exceptions.NoSuchKey:
            return None, None
        return Holder.from_bytes(obj["Body"].read()), str(obj["ETag"])

    def _put(self, holder: Holder, **condition: str) -> str | None:
        """PUT under a condition; the new ETag, or None when the condition failed (412)."""
        from botocore.exceptions import ClientError

        try:
            out = self.client.put_object(
                Bucket=self.bucket, Key=self.key, Body=holder.to_bytes(), **condition
            )
        except ClientError as exc:
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            code = exc.response.get("Error", {}).get("Code")
            # 409 ConditionalRequestConflict: a concurrent conditional write won the race.
            if status in (409, 412) or code in ("PreconditionFailed", "ConditionalRequestConflict"):
                return None
            raise
        return str(out["ETag"])

    def try_take(self, me: Holder) -> tuple[bool, Holder | None]:
        current, etag = self._get()
        mine = replace(me, expires_at=time.time() + self.ttl_s)
        if current is None:
            self.etag = self._put(mine, IfNoneMatch="*")
        elif current.released or current.expires_at < time.time():
            assert etag is not None
            self.etag = self._put(mine, IfMatch=etag)
        else:
            return False, current
        if self.etag is None:  # lost the race: say who won it
            return False, self._get()[0]
        return True, current

    def renew(self, me: Holder) -> bool:
        if self.etag is None:
            return False
        self.etag = self._put(replace(me, expires_at=time.time() + self.ttl_s), IfMatch=self.etag)
        return self.etag is not None

    def release(self, me: Holder) -> None:
        if self.etag is not None:
            self._put(replace(me, released=True, expires_at=0.0), IfMatch=self.etag)
            self.etag = None


def _now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


class LakeLease:
    """The exclusive right to change a lake's shared state; use as a context manager."""

    def __init__(
        self,
        lake: Lake,
        purpose: str,
        *,
        owner: str | None = None,
        config: LeaseConfig | None = None,
        on_wait: Callable[[str], None] | None = None,
    ) -> None:
        self.lake = lake
        self.config = config or LeaseConfig()
        self.on_wait = on_wait or log.info
        self.me = Holder(
            owner=owner or "local",
            purpose=purpose,
            host=socket.gethostname(),
            pid=os.getpid(),
            session=lake.session,
            since="",
        )
        store = lake.main
        self._backend: _Backend = (
            _LocalBackend(store) if store.is_local else _S3Backend(store, self.config.ttl_s)
        )
        self._held = False
        self._lost: str | None = None
        self._valid_until = float("inf")
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None
        self.waited_s = 0.0
        self.acquired_at = 0.0

    # -- taking and giving back ------------------------------------------------------
    def acquire(self) -> LakeLease:
        """Wait (bounded by ``config.wait_s``) until the lease is ours."""
        start = time.monotonic()
        told: Holder | None = None
        last_told = 0.0
        while True:
            me = replace(self.me, since=_now_iso())
            taken, other = self._backend.try_take(me)
            if taken:
                self.me = me
                break
            waited = time.monotonic() - start
            if waited >= self.config.wait_s:
                who = other.describe() if other else "another run"
                raise LeaseBusy(
                    f"the lake {self.lake.main.uri} is locked by {who}; waited "
                    f"{waited:.0f} s (EDULAKE_LEASE__WAIT_S={self.config.wait_s:g}). Nothing "
                    "was changed. What to do: let that run finish and run this one again; if "
                    "it is dead and the lake is on S3, its lease expires after "
                    f"EDULAKE_LEASE__TTL_S={self.config.ttl_s:g} s and is then taken over."
                )
            if other != told or time.monotonic() - last_told >= 60:
                who = other.describe() if other else "another run"
                self.on_wait(
                    f"waiting for the lake lease: held by {who} "
                    f"(waiting up to {self.config.wait_s:g} s)"
                )
                told, last_told = other, time.monotonic()
                notepoint("lease.waiting")
            time.sleep(self.config.poll_s)
        self.waited_s = time.monotonic() - start
        self.acquired_at = time.monotonic()
        self._held = True
        self._valid_until = (
            float("inf") if self.lake.main.is_local else time.monotonic() + self.config.ttl_s * 0.75
        )
        if isinstance(self._backend, _S3Backend):
            self._beat = threading.Thread(target=self._heartbeat, name="lease-beat", daemon=True)
            self._beat.start()
        if other is not None and not other.released and other.session != self.me.session:
            swept = self.lake.sweep_session(other.session)
            log.warning(
                "took over the lake lease from %s, which never released it (killed?); "
                "removed %d staging file(s) it left",
                other.describe(),
                swept,
            )
        self.lake.commit_guard = self.check
        return self

    def release(self) -> None:
        if not self._held:
            return
        self._stop.set()
        if self._beat is not None:
            self._beat.join(timeout=10)
        if self.lake.commit_guard == self.check:
            self.lake.commit_guard = None
        if self._lost is None:
            self._backend.release(self.me)
        self._held = False

    @property
    def held_s(self) -> float:
        return time.monotonic() - self.acquired_at if self.acquired_at else 0.0

    def __enter__(self) -> LakeLease:
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()

    # -- staying the holder ------------------------------------------------------------
    def check(self) -> None:
        """Raise :class:`LeaseLost` unless the lease is still ours (call before committing)."""
        if self._lost is None and time.monotonic() > self._valid_until:
            self._lost = "it was not renewed in time"
        if self._lost is not None:
            raise LeaseLost(
                f"this run lost the lake lease ({self._lost}); it stopped before committing "
                "more. What to do: run it again (what was committed is complete and kept)."
            )

    def _heartbeat(self) -> None:
        interval = max(self.config.ttl_s / 4, 0.05)
        while not self._stop.wait(interval):
            try:
                ok = self._backend.renew(self.me)
            except Exception as exc:  # a transient S3 error: try again next beat
                log.warning("lake lease renewal failed (%s); retrying", type(exc).__name__)
                continue
            if not ok:
                self._lost = "another run took it over after it expired"
                log.error("lost the lake lease: %s", self._lost)
                return
            self._valid_until = time.monotonic() + self.config.ttl_s * 0.75


def read_holder(lake: Lake) -> Holder | None:
    """The current (or last) holder record, for status displays and tests."""
    store = lake.main
    if store.is_local:
        return _LocalBackend(store)._read()
    return _S3Backend(store, LeaseConfig().ttl_s)._get()[0]


@contextlib.contextmanager
def lake_lease(
    lake: Lake,
    purpose: str,
    *,
    owner: str | None = None,
    config: LeaseConfig | None = None,
    on_wait: Callable[[str], None] | None = None,
) -> Iterator[LakeLease]:
    """``with lake_lease(lake, "clever-participation"):`` the commit section."""
    lease = LakeLease(lake, purpose, owner=owner, config=config, on_wait=on_wait)
    lease.acquire()
    try:
        yield lease
    finally:
        lease.release()
