"""Prefect blocks for edulake's connections (the one module of edulake/ that imports Prefect).

``SftpServer`` holds how to reach and trust an SFTP server (Clever's reports server):
secrets are ``SecretStr`` (hidden in the UI, the API and logs). Register the type once
with ``prefect block register -m edulake.connectors.blocks``; create a block in Python
(``SftpServer(...).save("edulake-clever-sftp")``), in the UI, or from a shell with
``python -m edulake.connectors.blocks save-sftp ...`` (``--help``). See docs/sftp.md.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from pathlib import Path
from typing import ClassVar

from prefect.blocks.core import Block
from pydantic import Field, SecretStr

from edulake.connectors.sftp import SftpError, SftpSettings, SftpSource, fetch_host_key
from edulake.core.settings import ConfigError


class SftpServer(Block):
    """An SFTP server edulake reads files from, with its pinned host key."""

    _block_type_name: ClassVar[str | None] = "edulake SFTP server"
    _block_type_slug: ClassVar[str | None] = "edulake-sftp-server"
    _description: ClassVar[str | None] = (
        "An SFTP server edulake lands files from (e.g. Clever's reports server). The host key "
        "is always verified against host_key; give a private key or a password."
    )
    _code_example: ClassVar[str | None] = """```python
from edulake.connectors.blocks import SftpServer

SftpServer(
    host="reports-sftp.clever.com",
    username="district-sftp-user",
    private_key=open("clever_ed25519").read(),
    host_key="reports-sftp.clever.com ssh-ed25519 AAAA...",  # from ssh-keyscan, verified
).save("edulake-clever-sftp")
```"""

    host: str = Field(description="Server name or address, e.g. reports-sftp.clever.com.")
    port: int = Field(22, description="SSH port.")
    username: str = Field(description="SFTP login name.")
    private_key: SecretStr | None = Field(
        None,
        description="Private key file text (OpenSSH or PEM: ed25519, ECDSA or RSA), "
        "BEGIN/END lines included. Preferred over a password.",
    )
    private_key_passphrase: SecretStr | None = Field(
        None, description="Passphrase of the private key, if it has one."
    )
    password: SecretStr | None = Field(None, description="Password, if the server uses one.")
    host_key: str = Field(
        description="The server's host key, verified out of band: a known_hosts line "
        "('host ssh-ed25519 AAAA...', as printed by ssh-keyscan), a public key line or a "
        "SHA256:... fingerprint. Several lines are allowed (one per key).",
    )
    remote_root: str = Field(
        "",
        description="Folder holding daily-participation/ and resource-usage/ "
        "(empty: the login folder).",
    )
    connect_timeout: float = Field(15.0, description="Seconds to connect and log in.")
    io_timeout: float = Field(60.0, description="Seconds without data before a transfer fails.")
    max_connections: int = Field(
        4, ge=1, le=32, description="SFTP channels open at once (parallel downloads)."
    )
    connect_attempts: int = Field(
        4, ge=1, description="Attempts to connect, list or open, with exponential backoff."
    )

    def settings(self) -> SftpSettings:
        """The plain-Python settings (secrets revealed only to the SFTP client)."""
        return SftpSettings(
            host=self.host,
            port=self.port,
            username=self.username,
            private_key=_reveal(self.private_key),
            private_key_passphrase=_reveal(self.private_key_passphrase),
            password=_reveal(self.password),
            host_key=self.host_key,
            remote_root=self.remote_root,
            connect_timeout=self.connect_timeout,
            io_timeout=self.io_timeout,
            max_connections=self.max_connections,
            connect_attempts=self.connect_attempts,
        )


def _reveal(secret: SecretStr | None) -> str | None:
    return secret.get_secret_value() if secret is not None else None


def open_sftp_source(block_name: str, *, connect: bool = True) -> SftpSource:
    """An :class:`SftpSource` from the ``SftpServer`` block named ``block_name``.

    Connects at once (with retries) so that a wrong host key or login fails the run at
    the start with a clear message, before any task runs.
    """
    try:
        block = SftpServer.load(block_name, _sync=True)  # type: ignore[call-arg]
    except ValueError as exc:
        raise ConfigError(
            f"no SftpServer block named {block_name!r}: create one (docs/sftp.md) or pass "
            "the right name as the flow's sftp_block parameter"
        ) from exc
    assert isinstance(block, SftpServer)
    source = SftpSource(block.settings())
    if connect:
        try:
            source.connect()
        except BaseException:
            source.close()
            raise
    return source


def _save_sftp(args: argparse.Namespace) -> int:
    """Save an SftpServer block; secrets come from files or the environment, never argv."""
    key = Path(args.private_key_file).expanduser().read_text() if args.private_key_file else None
    password = os.environ.get("EDULAKE_SFTP_PASSWORD") or None
    if args.ask_password:
        password = getpass.getpass("SFTP password: ")
    passphrase = os.environ.get("EDULAKE_SFTP_KEY_PASSPHRASE") or None
    if args.host_key_file:
        host_key = Path(args.host_key_file).expanduser().read_text()
    else:
        host_key = args.host_key or ""
    block = SftpServer(
        host=args.host,
        port=args.port,
        username=args.username,
        private_key=SecretStr(key) if key else None,
        private_key_passphrase=SecretStr(passphrase) if passphrase else None,
        password=SecretStr(password) if password else None,
        host_key=host_key,
        remote_root=args.remote_root,
        max_connections=args.max_connections,
    )
    SftpSource(block.settings()).close()  # validates the pins and the key text, no network
    block.save(args.name, overwrite=args.overwrite, _sync=True)  # type: ignore[call-arg]
    print(f"saved SftpServer block {args.name!r} ({args.username}@{args.host}:{args.port})")
    return 0


def _check_sftp(args: argparse.Namespace) -> int:
    """Connect with a saved block and list the report folders."""
    from edulake.sources.clever.names import FOLDERS

    with open_sftp_source(args.name) as source:
        files = source.list_files(FOLDERS)
    print(f"{source.label}: host key verified, login ok, {len(files)} files in {FOLDERS}")
    for f in files[-args.show :]:
        print(f"  {f.name}  {f.size} bytes")
    return 0


def _host_key(args: argparse.Namespace) -> int:
    line, fingerprint = fetch_host_key(args.host, args.port)
    print(line)
    print(
        f"# fingerprint {fingerprint}: NOT verified. Compare it with the fingerprint the "
        "server's operator gives you before pinning it.",
        file=sys.stderr,
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m edulake.connectors.blocks``: create and check the SFTP block from a shell."""
    ap = argparse.ArgumentParser(prog="python -m edulake.connectors.blocks", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    hk = sub.add_parser("host-key", help="print a server's host key line (unverified)")
    hk.add_argument("host")
    hk.add_argument("--port", type=int, default=22)
    hk.set_defaults(run=_host_key)
    save = sub.add_parser(
        "save-sftp",
        help="save an SftpServer block (password from EDULAKE_SFTP_PASSWORD or --ask-password)",
    )
    save.add_argument("--name", default="edulake-clever-sftp")
    save.add_argument("--host", required=True)
    save.add_argument("--port", type=int, default=22)
    save.add_argument("--username", required=True)
    save.add_argument("--private-key-file", help="private key file (passphrase: env var)")
    save.add_argument("--ask-password", action="store_true")
    pin = save.add_mutually_exclusive_group(required=True)
    pin.add_argument("--host-key", help="known_hosts line, public key or SHA256:... fingerprint")
    pin.add_argument("--host-key-file", help="file with known_hosts line(s), e.g. verified keyscan")
    save.add_argument("--remote-root", default="")
    save.add_argument("--max-connections", type=int, default=4)
    save.add_argument("--overwrite", action="store_true")
    save.set_defaults(run=_save_sftp)
    check = sub.add_parser("check-sftp", help="connect with a saved block and list the reports")
    check.add_argument("--name", default="edulake-clever-sftp")
    check.add_argument("--show", type=int, default=5, help="how many file names to print")
    check.set_defaults(run=_check_sftp)
    args = ap.parse_args(argv)
    try:
        return int(args.run(args))
    except SftpError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
