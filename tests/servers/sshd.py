"""A real OpenSSH sshd on 127.0.0.1 for tests: generated keys, SFTP only, stopped on exit.

Usage::

    with running_sshd() as server:
        (server.root / "daily-participation").mkdir()
        ...  # connect to server.host:server.port as server.user with server.client_key_text

sshd runs as the current user (root in CI); ``ForceCommand internal-sftp`` means the
client key can do nothing but SFTP. ``kill_connections`` cuts every open session (the
per-connection sshd children) while the listener keeps accepting: a dropped transfer.
"""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import psutil
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


def sshd_available() -> bool:
    """Whether an OpenSSH server binary is installed here."""
    return os.path.exists(SSHD)


def free_port() -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class KeyPair:
    """An ed25519 key pair: OpenSSH private key text and the public key line."""

    private_text: str = field(repr=False)
    public_line: str  # "ssh-ed25519 AAAA..."

    @classmethod
    def generate(cls, comment: str = "") -> KeyPair:
        key = Ed25519PrivateKey.generate()
        private = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        ).decode()
        public = (
            key.public_key()
            .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
            .decode()
        )
        return cls(private, f"{public} {comment}".strip())

    def write(self, path: Path) -> Path:
        path.write_text(self.private_text)
        path.chmod(0o600)
        path.with_suffix(".pub").write_text(self.public_line + "\n")
        return path


@dataclass
class SshdServer:
    """A running sshd and what a client needs to reach it."""

    host: str
    port: int
    user: str
    client_key_path: Path
    client_key_text: str = field(repr=False)
    host_public_key: str  # "ssh-ed25519 AAAA..."
    root: Path  # remote root: populate it, point SftpSettings.remote_root at it
    workdir: Path
    process: subprocess.Popen[bytes]

    @property
    def host_key_line(self) -> str:
        """The host key as a known_hosts line (what ``ssh-keyscan -p PORT host`` prints)."""
        return f"[{self.host}]:{self.port} {self.host_public_key}"

    def sessions(self) -> list[psutil.Process]:
        """The per-connection sshd processes (children of the listener)."""
        try:
            return psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def kill_connections(self) -> int:
        """Kill every open session at once (the listener stays up); returns how many."""
        procs = self.sessions()
        for p in procs:
            with suppress(psutil.NoSuchProcess):
                p.send_signal(signal.SIGKILL)
        psutil.wait_procs(procs, timeout=5)
        return len(procs)

    def freeze_connections(self) -> list[psutil.Process]:
        """Suspend every open session (SIGSTOP): a server that hangs without closing."""
        procs = self.sessions()
        for p in procs:
            with suppress(psutil.NoSuchProcess):
                p.suspend()
        return procs

    def stop(self) -> None:
        """Stop the listener and every session."""
        sessions = self.sessions()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        for p in sessions:
            with suppress(psutil.NoSuchProcess):
                p.kill()

    def start(self) -> None:
        """(Re)start the listener on the same port, keys and config."""
        self.process = _spawn(self.workdir, self.port)


def _config(workdir: Path, port: int) -> str:
    return "\n".join(
        [
            f"Port {port}",
            "ListenAddress 127.0.0.1",
            f"HostKey {workdir / 'host_ed25519'}",
            f"PidFile {workdir / 'sshd.pid'}",
            f"AuthorizedKeysFile {workdir / 'authorized_keys'}",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            "PermitRootLogin prohibit-password",
            "StrictModes no",  # keys under /tmp are refused otherwise
            "Subsystem sftp internal-sftp",
            "ForceCommand internal-sftp",
            "AllowTcpForwarding no",
            "X11Forwarding no",
            "MaxStartups 100:30:200",
            "MaxSessions 64",
            "LogLevel ERROR",
            "",
        ]
    )


def _spawn(workdir: Path, port: int) -> subprocess.Popen[bytes]:
    """Start sshd in the foreground and wait until it accepts connections."""
    log = (workdir / "sshd.log").open("ab")
    proc = subprocess.Popen(
        [SSHD, "-D", "-e", "-f", str(workdir / "sshd_config")],
        stdout=log,
        stderr=log,
        stdin=subprocess.DEVNULL,
    )
    log.close()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"sshd exited with {proc.returncode}: {(workdir / 'sshd.log').read_text()}"
            )
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                if s.recv(4).startswith(b"SSH-"):
                    return proc
        except OSError:
            time.sleep(0.02)  # polling for readiness, not a fix
    proc.kill()
    raise RuntimeError("sshd did not start listening within 10 s")


@contextmanager
def running_sshd() -> Iterator[SshdServer]:
    """Start sshd on a free port with fresh keys; stop it and remove its files on exit."""
    if not sshd_available():
        raise RuntimeError(f"{SSHD} not found: apt-get install openssh-server")
    os.makedirs("/run/sshd", exist_ok=True)  # privilege separation dir sshd insists on
    workdir = Path(tempfile.mkdtemp(prefix="edulake-sshd-"))
    try:
        host = KeyPair.generate()
        host.write(workdir / "host_ed25519")
        client = KeyPair.generate("edulake-test")
        client_path = client.write(workdir / "client_ed25519")
        (workdir / "authorized_keys").write_text(client.public_line + "\n")
        root = workdir / "remote"
        root.mkdir()
        port = free_port()
        (workdir / "sshd_config").write_text(_config(workdir, port))
        proc = _spawn(workdir, port)
        server = SshdServer(
            host="127.0.0.1",
            port=port,
            user=getpass.getuser(),
            client_key_path=client_path,
            client_key_text=client.private_text,
            host_public_key=host.public_line,
            root=root,
            workdir=workdir,
            process=proc,
        )
        try:
            yield server
        finally:
            server.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
