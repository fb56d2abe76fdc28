"""Prefect blocks for edulake's connections (the one module of edulake/ that imports Prefect).

``SftpServer`` holds how to reach and trust an SFTP server (Clever's reports server):
secrets are ``SecretStr`` (hidden in the UI, the API and logs). Register the type once
with ``prefect block register -m edulake.blocks``; create a block in Python
(``SftpServer(...).save("edulake-clever-sftp")``) or in the UI. See docs/sftp.md.
"""

from __future__ import annotations

from typing import ClassVar

from prefect.blocks.core import Block
from pydantic import Field, SecretStr

from edulake.sftp import SftpSettings, SftpSource


class SftpServer(Block):
    """An SFTP server edulake reads files from, with its pinned host key."""

    _block_type_name: ClassVar[str | None] = "edulake SFTP server"
    _block_type_slug: ClassVar[str | None] = "edulake-sftp-server"
    _description: ClassVar[str | None] = (
        "An SFTP server edulake lands files from (e.g. Clever's reports server). The host key "
        "is always verified against host_key; give a private key or a password."
    )
    _code_example: ClassVar[str | None] = """```python
from edulake.blocks import SftpServer

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
        raise ValueError(
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
