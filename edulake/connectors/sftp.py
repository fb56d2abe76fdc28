"""The SFTP source: Clever's reports server (or any SFTP server) as a :class:`FileSource`.

Safety first:

- **Host key always verified.** The server's key must match a pinned key (a known_hosts
  line, a public key line or a ``SHA256:`` fingerprint); anything else is refused with
  :class:`HostKeyError`, which names the fingerprint received and what to pin. Keys are
  never auto-accepted and never read from ``~/.ssh`` (nor is an SSH agent used).
- **Errors say whether to retry.** Authentication, host-key and configuration problems
  are permanent (:func:`is_retryable` is false: retrying cannot fix them); refused
  connections, timeouts and dropped connections raise :class:`SftpTransientError`.
  Connecting, listing and opening are retried here with exponential backoff; a
  connection dropped mid-file raises, so the caller (``land_file``) discards its staging
  copy and the next attempt lands the file whole.
- **Names are checked.** Only plain ``<folder>/<file>`` names are listed or opened: no
  ``..``, no absolute paths, no separators inside a name (defence in depth beside
  ``parse_report_name`` and ``safe_key``).

Thread safety: :meth:`SftpSource.open` may be called from many threads. Each open
file gets its own SFTP channel from a pool over one SSH connection, bounded by
``max_connections``; a dead connection is replaced on the next checkout.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import logging
import posixpath
import random
import stat
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from dataclasses import dataclass, field
from functools import partial
from typing import IO, TypeVar

import paramiko
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from edulake.connectors.files import SCAN_DEPTH, SourceRootError, Tree
from edulake.core.landing import SourceFile

log = logging.getLogger(__name__)

T = TypeVar("T")

# Bytes requested ahead of the reader: fast (many requests in flight) with bounded memory.
READ_WINDOW = 4 << 20


# -- errors -----------------------------------------------------------------------------
class SftpError(Exception):
    """Base class of the SFTP source's errors."""


class SftpConfigError(SftpError, ValueError):
    """The settings are unusable (missing field, unreadable key): fix the block."""


class HostKeyError(SftpError):
    """The server's host key is not the pinned one (or none is pinned): never retried."""


class SftpAuthError(SftpError):
    """The server refused the username / key / password: never retried."""


class SftpTransientError(SftpError, ConnectionError):
    """Connection refused, timed out or dropped: worth retrying later."""


class UnsafeRemoteName(SftpError, ValueError):
    """A remote name that could escape its folder (``..``, ``/``, absolute paths)."""


def is_retryable(exc: BaseException) -> bool:
    """Whether retrying could help (for a task's retry condition)."""
    if isinstance(exc, SftpTransientError):
        return True
    return not isinstance(exc, (SftpError, SourceRootError))


# -- settings ---------------------------------------------------------------------------
@dataclass(frozen=True)
class SftpSettings:
    """How to reach and trust an SFTP server. Secrets never appear in repr or logs."""

    host: str
    username: str
    host_key: str = ""  # known_hosts line(s), public key line(s) or SHA256:... fingerprint(s)
    port: int = 22
    private_key: str | None = field(default=None, repr=False)  # key file text (OpenSSH/PEM)
    private_key_passphrase: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    remote_root: str = ""  # folder holding daily-participation/ etc.; "" = login folder
    connect_timeout: float = 15.0
    io_timeout: float = 60.0  # no data for this long on an open transfer: give up
    max_connections: int = 4  # SFTP channels open at once
    connect_attempts: int = 4  # attempts per connect/list/open, backoff in between
    backoff_seconds: float = 2.0
    max_backoff_seconds: float = 60.0

    def __post_init__(self) -> None:
        if not self.host:
            raise SftpConfigError("SFTP host is empty")
        if not self.username:
            raise SftpConfigError("SFTP username is empty")
        if not (self.private_key or self.password):
            raise SftpConfigError("give a private key or a password for the SFTP server")
        if not 0 < self.port < 65536:
            raise SftpConfigError(f"bad SFTP port {self.port}")
        if self.max_connections < 1 or self.connect_attempts < 1:
            raise SftpConfigError("max_connections and connect_attempts must be at least 1")

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


# -- host keys --------------------------------------------------------------------------
@dataclass(frozen=True)
class HostKeyPin:
    """One accepted host key: its SHA256 fingerprint, and its type when the key was given."""

    fingerprint: str  # "SHA256:<base64, no padding>"
    key_type: str | None = None


def fingerprint_of(blob: bytes) -> str:
    """The OpenSSH SHA256 fingerprint of a public key blob."""
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode()
    return "SHA256:" + digest.rstrip("=")


def _key_blob_type(blob: bytes) -> str:
    """The key type named inside an SSH public key blob."""
    n = int.from_bytes(blob[:4], "big")
    return blob[4 : 4 + n].decode("ascii", "replace")


def parse_host_key_pins(text: str) -> list[HostKeyPin]:
    """Parse pinned host keys: known_hosts lines, public key lines or SHA256 fingerprints.

    One per line (``ssh-keyscan`` output can be pasted as is); ``#`` comments and blank
    lines are skipped. Anything else is a :class:`SftpConfigError`.
    """
    pins: list[HostKeyPin] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("@"):
            raise SftpConfigError(
                f"host_key: {line.split()[0]} lines are not supported; pin the server's key"
            )
        pins.append(_parse_pin_line(line))
    return pins


def _parse_pin_line(line: str) -> HostKeyPin:
    tokens = line.split()
    for tok in tokens:
        if tok.startswith("SHA256:"):
            return HostKeyPin("SHA256:" + tok[len("SHA256:") :].rstrip("="))
        if tok.startswith("MD5:"):
            raise SftpConfigError("host_key: MD5 fingerprints are not accepted; use SHA256:...")
    # "[host]:port type base64 [comment]" or "type base64 [comment]"
    for i, tok in enumerate(tokens[:-1]):
        if not _looks_like_key_type(tok):
            continue
        try:
            blob = base64.b64decode(tokens[i + 1], validate=True)
        except (binascii.Error, ValueError):
            continue
        if len(blob) > 4 and _key_blob_type(blob) == tok:
            return HostKeyPin(fingerprint_of(blob), tok)
    raise SftpConfigError(
        "host_key: expected a known_hosts line ('host ssh-ed25519 AAAA...'), a public key "
        "('ssh-ed25519 AAAA...') or a fingerprint ('SHA256:...'), one per line"
    )


def _looks_like_key_type(tok: str) -> bool:
    return tok.startswith(("ssh-", "ecdsa-", "sk-"))


def _host_key_algorithms(key_type: str) -> set[str]:
    """The SSH host key algorithms that present a key of this type."""
    if key_type == "ssh-rsa":
        return {"rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"}
    return {key_type}


class PinnedHostKeyPolicy(paramiko.MissingHostKeyPolicy):
    """Accept the server only if its key is pinned; otherwise refuse, naming what we got.

    No host keys are ever loaded into the client, so paramiko asks this policy about
    every server: it never accepts, saves or learns a key.
    """

    def __init__(self, pins: list[HostKeyPin], address: str) -> None:
        self.pins = pins
        self.address = address

    def missing_host_key(
        self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey
    ) -> None:
        received = fingerprint_of(key.asbytes())
        if any(p.fingerprint == received for p in self.pins):
            return
        line = f"{key.get_name()} {key.get_base64()}"
        fix = (
            "check this fingerprint with the server's operator (or compare with "
            f"`ssh-keyscan -p PORT HOST | ssh-keygen -lf -`), then set the block's host_key "
            f"to the key line '{line}' or to the fingerprint '{received}'."
        )
        if not self.pins:
            raise HostKeyError(
                f"SFTP server {self.address} presented host key {key.get_name()} {received}, "
                f"but no host key is pinned, so it was refused. To trust it, {fix}"
            )
        pinned = ", ".join(p.fingerprint for p in self.pins)
        raise HostKeyError(
            f"SFTP server {self.address} presented host key {key.get_name()} {received}, "
            f"which does not match the pinned key ({pinned}): connection refused. The server's "
            f"key changed or this is not the expected server. Only if the change is confirmed: "
            f"{fix}"
        )


def fetch_host_key(host: str, port: int = 22, timeout: float = 15.0) -> list[str]:
    """The server's host key as ``[line, fingerprint]``, WITHOUT trusting it (like ssh-keyscan).

    For setting up a pin: compare the fingerprint with one obtained out of band (the
    server's operator, another network) before putting it in the block.
    """
    import socket

    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except OSError as exc:
        raise SftpTransientError(f"could not connect to {host}:{port}: {_reason(exc)}") from exc
    transport = paramiko.Transport(sock)
    try:
        transport.start_client(timeout=timeout)
        key = transport.get_remote_server_key()
    except _NETWORK_ERRORS as exc:
        raise SftpTransientError(
            f"SSH handshake with {host}:{port} failed: {_reason(exc)}"
        ) from exc
    finally:
        transport.close()
    where = host if port == 22 else f"[{host}]:{port}"
    return [f"{where} {key.get_name()} {key.get_base64()}", fingerprint_of(key.asbytes())]


# -- client keys ------------------------------------------------------------------------
def load_private_key(text: str, passphrase: str | None = None) -> paramiko.PKey:
    """A paramiko key from private key file text (OpenSSH or PEM; ed25519, ECDSA, RSA)."""
    if "\n" not in text.strip() and "\\n" in text:
        text = text.replace("\\n", "\n")  # pasted from a one-line environment variable
    text = text.strip() + "\n"
    data = text.encode()
    password = passphrase.encode() if passphrase else None
    try:
        try:
            loaded = serialization.load_ssh_private_key(data, password)
        except ValueError:
            loaded = serialization.load_pem_private_key(data, password)  # type: ignore[assignment]
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise SftpConfigError(
            f"the SFTP private key could not be read ({exc}): paste the whole key file, "
            "BEGIN and END lines included, and set the passphrase if the key has one"
        ) from None
    key_class: type[paramiko.PKey]
    if isinstance(loaded, ed25519.Ed25519PrivateKey):
        key_class = paramiko.Ed25519Key
    elif isinstance(loaded, ec.EllipticCurvePrivateKey):
        key_class = paramiko.ECDSAKey
    elif isinstance(loaded, rsa.RSAPrivateKey):
        key_class = paramiko.RSAKey
    else:
        raise SftpConfigError(f"unsupported SFTP key type {type(loaded).__name__}")
    return key_class.from_private_key(io.StringIO(text), password=passphrase)


# -- names ------------------------------------------------------------------------------
def check_segment(name: str) -> str:
    """A single safe path segment (a folder or a file name), or :class:`UnsafeRemoteName`."""
    if (
        not name
        or name in (".", "..")
        or "/" in name
        or "\\" in name
        or "\x00" in name
        or any(ord(c) < 32 for c in name)
    ):
        raise UnsafeRemoteName(f"unsafe remote name {name!r}")
    return name


def _safe(name: str) -> bool:
    try:
        check_segment(name)
    except UnsafeRemoteName:
        return False
    return True


def check_relative(name: str) -> tuple[str, str]:
    """Split a ``<folder>/<file>`` name, refusing anything else."""
    parts = name.split("/")
    if len(parts) != 2:
        raise UnsafeRemoteName(f"unsafe remote name {name!r}: expected <folder>/<file>")
    return check_segment(parts[0]), check_segment(parts[1])


# -- connections ------------------------------------------------------------------------
_NETWORK_ERRORS = (paramiko.SSHException, EOFError, OSError)


def _alive(sftp: paramiko.SFTPClient) -> bool:
    channel = sftp.get_channel()
    if channel is None or channel.closed:
        return False
    transport = channel.get_transport()
    return transport is not None and transport.is_active()


class _ChannelPool:
    """At most ``size`` SFTP channels checked out at once, over one shared SSH connection."""

    def __init__(self, connect: Callable[[], paramiko.SSHClient], size: int, io_timeout: float):
        self._connect = connect
        self._io_timeout = io_timeout
        self._slots = threading.BoundedSemaphore(size)
        self._lock = threading.Lock()
        self._client: paramiko.SSHClient | None = None
        self._idle: list[paramiko.SFTPClient] = []
        self.in_use = 0
        self.peak_in_use = 0  # most channels ever checked out at once (reports, tests)

    def checkout(self) -> paramiko.SFTPClient:
        """A channel for this thread alone; give it back with :meth:`checkin`."""
        self._slots.acquire()
        try:
            sftp = self._channel()
        except BaseException:
            self._slots.release()
            raise
        with self._lock:
            self.in_use += 1
            self.peak_in_use = max(self.peak_in_use, self.in_use)
        return sftp

    def checkin(self, sftp: paramiko.SFTPClient, *, broken: bool = False) -> None:
        with self._lock:
            self.in_use -= 1
        try:
            if broken or not _alive(sftp):
                with suppress(Exception):
                    sftp.close()
            else:
                with self._lock:
                    self._idle.append(sftp)
        finally:
            self._slots.release()

    def _channel(self) -> paramiko.SFTPClient:
        with self._lock:
            while self._idle:
                sftp = self._idle.pop()
                if _alive(sftp):
                    return sftp
                with suppress(Exception):
                    sftp.close()
            client = self._live_client()
        try:
            sftp = client.open_sftp()
        except _NETWORK_ERRORS as exc:
            raise SftpTransientError(f"could not open an SFTP channel: {_reason(exc)}") from exc
        channel = sftp.get_channel()
        if channel is not None:
            channel.settimeout(self._io_timeout)
        return sftp

    def _live_client(self) -> paramiko.SSHClient:
        """The shared connection, reconnecting if it died (caller holds the lock)."""
        transport = self._client.get_transport() if self._client else None
        if self._client is not None and transport is not None and transport.is_active():
            return self._client
        if self._client is not None:
            with suppress(Exception):
                self._client.close()
            self._client = None
        self._client = self._connect()
        return self._client

    def reset(self, sftp: paramiko.SFTPClient) -> None:
        """Drop the connection ``sftp`` runs over (it hung), so the next checkout reconnects."""
        channel = sftp.get_channel()
        transport = channel.get_transport() if channel is not None else None
        with self._lock:
            if self._client is not None and self._client.get_transport() is transport:
                log.warning("SFTP connection stopped responding: reconnecting")
                with suppress(Exception):
                    self._client.close()
                self._client = None

    def close(self) -> None:
        with self._lock:
            for sftp in self._idle:
                with suppress(Exception):
                    sftp.close()
            self._idle.clear()
            if self._client is not None:
                with suppress(Exception):
                    self._client.close()
                self._client = None


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if str(exc) else text


# -- the source -------------------------------------------------------------------------
class SftpSource:
    """Files on an SFTP server, listed per top-level folder and streamed one by one."""

    def __init__(
        self,
        settings: SftpSettings,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        self.pins = parse_host_key_pins(settings.host_key)
        self._pkey = (
            load_private_key(settings.private_key, settings.private_key_passphrase)
            if settings.private_key
            else None
        )
        self._sleep = sleep
        root = settings.remote_root.rstrip("/") or ""
        self._root = root if root or not settings.remote_root else "/"
        self.label = f"sftp:{settings.username}@{settings.address}/{self._root.lstrip('/')}"
        self.connect_attempts = 0  # SSH connections attempted (for reports and tests)
        self.rejected_names: list[str] = []  # unsafe names the server listed
        self._count_lock = threading.Lock()
        self._pool = _ChannelPool(self._connect_once, settings.max_connections, settings.io_timeout)

    def __repr__(self) -> str:
        return f"SftpSource({self.label!r})"

    def __enter__(self) -> SftpSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- connecting ---------------------------------------------------------------------
    def _disabled_host_key_algorithms(self) -> list[str]:
        """When every pin names its key type, negotiate only those types."""
        if not self.pins or any(p.key_type is None for p in self.pins):
            return []
        wanted: set[str] = set()
        for p in self.pins:
            wanted |= _host_key_algorithms(p.key_type or "")
        known: tuple[str, ...] = getattr(paramiko.Transport, "_preferred_keys", ())
        return [k for k in known if k not in wanted]

    def _connect_once(self) -> paramiko.SSHClient:
        """One SSH connection attempt: verify the host key, then authenticate."""
        s = self.settings
        with self._count_lock:
            self.connect_attempts += 1
        client = paramiko.SSHClient()
        client.set_missing_host_key_policy(PinnedHostKeyPolicy(self.pins, s.address))
        disabled = self._disabled_host_key_algorithms()
        try:
            client.connect(
                s.host,
                port=s.port,
                username=s.username,
                pkey=self._pkey,
                password=s.password,
                timeout=s.connect_timeout,
                banner_timeout=s.connect_timeout,
                auth_timeout=s.connect_timeout,
                channel_timeout=s.connect_timeout,
                allow_agent=False,
                look_for_keys=False,
                disabled_algorithms={"keys": disabled} if disabled else None,
            )
        except BaseException as exc:
            client.close()
            raise self._connect_error(exc, bool(disabled)) from exc
        transport = client.get_transport()
        if transport is not None:
            transport.set_keepalive(30)
        log.info("connected to SFTP server %s as %s", s.address, s.username)
        return client

    def _connect_error(self, exc: BaseException, types_restricted: bool) -> BaseException:
        s = self.settings
        if isinstance(exc, SftpError):
            return exc
        if isinstance(exc, paramiko.BadAuthenticationType):
            return SftpAuthError(
                f"SFTP server {s.address} does not accept this kind of login for user "
                f"{s.username!r}; it allows: {', '.join(exc.allowed_types)}. Set the block's "
                "private_key or password accordingly."
            )
        if isinstance(exc, paramiko.AuthenticationException):
            what = "private key" if self._pkey else "password"
            if self._pkey and s.password:
                what = "private key and password"
            return SftpAuthError(
                f"SFTP server {s.address} refused user {s.username!r} with the {what} from the "
                "block: check the username, and that the server has this key's public half "
                "(or that the password is current). Not retried."
            )
        if isinstance(exc, paramiko.BadHostKeyException):
            return HostKeyError(f"SFTP server {s.address}: {exc}")
        if types_restricted and isinstance(exc, paramiko.SSHException) and "host key" in str(exc):
            kinds = ", ".join(sorted({p.key_type or "" for p in self.pins}))
            return HostKeyError(
                f"SFTP server {s.address} offers no host key of the pinned type ({kinds}): "
                f"{exc}. Pin its key with `ssh-keyscan -p {s.port} {s.host}`."
            )
        if isinstance(exc, _NETWORK_ERRORS):
            return SftpTransientError(
                f"could not connect to SFTP server {s.address}: {_reason(exc)}"
            )
        return exc

    def connect(self) -> None:
        """Connect now (with retries), so host-key and login problems show up front."""
        sftp = self._retrying("connect", self._pool.checkout)
        self._pool.checkin(sftp)

    def _retrying(self, what: str, op: Callable[[], T]) -> T:
        """Run ``op``, retrying transient errors with exponential backoff and jitter."""
        s = self.settings
        for attempt in range(1, s.connect_attempts + 1):
            try:
                return op()
            except SftpTransientError as exc:
                if attempt == s.connect_attempts:
                    raise
                delay = min(s.max_backoff_seconds, s.backoff_seconds * 2 ** (attempt - 1))
                delay *= random.uniform(0.8, 1.2)  # noqa: S311 - jitter, not crypto
                log.warning(
                    "SFTP %s failed (%s); attempt %d of %d in %.1f s",
                    what,
                    exc,
                    attempt + 1,
                    s.connect_attempts,
                    delay,
                )
                self._sleep(delay)
        raise AssertionError("unreachable")

    # -- FileSource ---------------------------------------------------------------------
    def _path(self, *parts: str) -> str:
        return posixpath.join(self._root, *parts) if self._root else posixpath.join(*parts)

    def scan(self, max_depth: int = SCAN_DEPTH) -> Tree:
        """Check the remote root exists, is readable and is not empty; list files shallowly.

        A missing, unreadable or empty root is a :class:`SourceRootError` (not retried)
        naming the server and the path.
        """
        top = self._retrying("listing the root", self._list_root)
        tree = Tree(f"{self.settings.address}:{self._root or '.'}", server=True)
        self._walk_remote(top, (), 1, max_depth, tree)
        tree.folders.extend(
            a.filename
            for a in top
            if a.st_mode is not None and stat.S_ISDIR(a.st_mode) and _safe(a.filename)
        )
        return tree

    def _list_root(self) -> list[paramiko.SFTPAttributes]:
        where = f"{self.settings.address}:{self._root or '(login folder)'}"
        sftp = self._pool.checkout()
        broken = False
        try:
            mode = sftp.stat(self._root or ".").st_mode
            if mode is not None and not stat.S_ISDIR(mode):
                raise SourceRootError(f"the SFTP root {where} is not a folder")
            attrs = sftp.listdir_attr(self._root or ".")
            for a in attrs:  # top-level links to folders count as folders (as when listing)
                if a.st_mode is not None and stat.S_ISLNK(a.st_mode) and _safe(a.filename):
                    with suppress(OSError):
                        a.st_mode = sftp.stat(self._path(a.filename)).st_mode
        except FileNotFoundError:
            raise SourceRootError(f"the SFTP root {where} does not exist") from None
        except PermissionError:
            raise SourceRootError(f"the SFTP root {where} cannot be read") from None
        except _NETWORK_ERRORS as exc:
            broken = True
            raise SftpTransientError(f"listing {where} failed: {_reason(exc)}") from exc
        finally:
            self._pool.checkin(sftp, broken=broken)
        if not attrs:
            raise SourceRootError(f"the SFTP root {where} is empty")
        return sorted(attrs, key=lambda a: a.filename)

    def _walk_remote(
        self,
        attrs: list[paramiko.SFTPAttributes],
        parents: tuple[str, ...],
        depth: int,
        limit: int,
        tree: Tree,
    ) -> None:
        for a in attrs:
            if not _safe(a.filename) or a.st_mode is None:
                continue
            parts = (*parents, a.filename)
            if stat.S_ISREG(a.st_mode):
                tree.files.append("/".join(parts))
            elif stat.S_ISDIR(a.st_mode) and depth < limit:
                try:
                    below = self._retrying(
                        f"listing {'/'.join(parts)}/", partial(self._listdir, "/".join(parts))
                    )
                except SftpError as exc:
                    if isinstance(exc, SftpTransientError):
                        raise
                    continue  # unreadable: a report folder is checked again on listing
                self._walk_remote(
                    sorted(below, key=lambda x: x.filename), parts, depth + 1, limit, tree
                )

    def list_files(self, folders: list[str]) -> list[SourceFile]:
        """Regular files directly under each given folder (missing folders list nothing)."""
        out: list[SourceFile] = []
        for folder in folders:
            check_segment(folder)
            attrs = self._retrying(f"listing {folder}/", partial(self._listdir, folder))
            for a in sorted(attrs, key=lambda a: a.filename):
                try:
                    check_segment(a.filename)
                except UnsafeRemoteName:
                    log.warning("ignoring unsafe name listed in %s/: %r", folder, a.filename)
                    self.rejected_names.append(f"{folder}/{a.filename!r}")
                    continue
                if a.st_mode is None or not stat.S_ISREG(a.st_mode):
                    continue  # folders, symlinks, devices: never landed
                mtime = float(a.st_mtime) if a.st_mtime is not None else None
                out.append(SourceFile(f"{folder}/{a.filename}", a.st_size, mtime))
        return out

    def _listdir(self, folder: str) -> list[paramiko.SFTPAttributes]:
        sftp = self._pool.checkout()
        broken = False
        try:
            return sftp.listdir_attr(self._path(*folder.split("/")))
        except FileNotFoundError:
            return []
        except PermissionError as exc:
            raise SftpError(
                f"no permission to list {folder}/ on {self.settings.address}: {exc}"
            ) from exc
        except _NETWORK_ERRORS as exc:
            broken = True
            raise SftpTransientError(
                f"listing {folder}/ on {self.settings.address} failed: {_reason(exc)}"
            ) from exc
        finally:
            self._pool.checkin(sftp, broken=broken)

    def open(self, file: SourceFile) -> AbstractContextManager[IO[bytes]]:
        """Stream one file. Raises :class:`SftpTransientError` if the connection drops."""
        return self._open(file)

    @contextmanager
    def _open(self, file: SourceFile) -> Iterator[IO[bytes]]:
        path = self._path(*check_relative(file.name))
        sftp, handle, size = self._retrying(f"opening {file.name}", lambda: self._start(path, file))
        broken = True
        raw = _WindowedReader(handle, size, file.name)
        try:
            yield io.BufferedReader(raw, buffer_size=1 << 20)
            broken = False
        finally:
            if raw.timed_out:
                self._pool.reset(sftp)  # a hung connection would stall every later transfer
            else:
                with suppress(Exception):
                    handle.close()
            self._pool.checkin(sftp, broken=broken)

    def _start(
        self, path: str, file: SourceFile
    ) -> tuple[paramiko.SFTPClient, paramiko.SFTPFile, int]:
        sftp = self._pool.checkout()
        try:
            handle = sftp.open(path, "rb")
            size = file.size if file.size is not None else int(handle.stat().st_size or 0)
        except (FileNotFoundError, PermissionError):
            self._pool.checkin(sftp)
            raise
        except _NETWORK_ERRORS as exc:
            self._pool.checkin(sftp, broken=True)
            raise SftpTransientError(f"opening {file.name} failed: {_reason(exc)}") from exc
        except BaseException:
            self._pool.checkin(sftp, broken=True)
            raise
        return sftp, handle, size

    @property
    def peak_connections(self) -> int:
        """The most SFTP channels this source had open at once."""
        return self._pool.peak_in_use

    def close(self) -> None:
        self._pool.close()


class _WindowedReader(io.RawIOBase):
    """Reads a remote file with many requests in flight, one bounded window at a time.

    Raises :class:`SftpTransientError` if the connection drops, or if the file ends
    before, or continues after, the size it was listed with (it changed meanwhile):
    never returns a silently truncated file.
    """

    def __init__(self, handle: paramiko.SFTPFile, size: int, name: str) -> None:
        super().__init__()
        self._handle = handle
        self._size = size
        self._name = name
        self._pos = 0  # bytes handed out
        self._requested = 0  # bytes requested so far
        self._pending = b""
        self._chunks: Iterator[bytes] = iter(())
        self._expected: list[int] = []  # lengths of the current window's requests, reversed
        self._checked_end = False
        self.timed_out = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        try:
            data = self._next(len(buffer))
        except SftpError:
            raise
        except _NETWORK_ERRORS as exc:
            self.timed_out = isinstance(exc, TimeoutError)
            raise SftpTransientError(
                f"transfer of {self._name} failed after {self._pos} of {self._size} bytes "
                f"({_reason(exc)}); nothing was kept, it will be fetched again"
            ) from exc
        n = len(data)
        buffer[:n] = data
        self._pos += n
        return n

    def _next(self, limit: int) -> bytes:
        while not self._pending:
            chunk = next(self._chunks, None)
            if chunk is not None:
                if len(chunk) != self._expected.pop():
                    raise SftpTransientError(
                        f"{self._name} ended at {self._pos} of {self._size} bytes: it changed "
                        "on the server during the transfer"
                    )
                self._pending = chunk
                break
            if self._requested >= self._size:
                self._check_end()
                return b""
            self._chunks = self._window()
        data, self._pending = self._pending[:limit], self._pending[limit:]
        return data

    def _window(self) -> Iterator[bytes]:
        start = self._requested
        end = min(self._size, start + READ_WINDOW)
        self._requested = end
        step = paramiko.SFTPFile.MAX_REQUEST_SIZE
        spans = [(off, min(step, end - off)) for off in range(start, end, step)]
        self._expected = [n for _, n in reversed(spans)]
        return iter(self._handle.readv(spans))

    def _check_end(self) -> None:
        if self._checked_end:
            return
        self._checked_end = True
        self._handle.seek(self._size)
        if self._handle.read(1):
            raise SftpTransientError(
                f"{self._name} is longer than the {self._size} bytes listed: it changed on the "
                "server during the transfer"
            )
