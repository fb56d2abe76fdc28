"""Fixtures for the SFTP source: one real sshd per session, a fresh remote tree per test."""

from __future__ import annotations

import datetime as dt
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edulake.connectors.sftp import SftpSettings, SftpSource
from edulake.core.lake import Lake
from edulake.core.landing import LandingResult, Ledger, SourceFile, land_file
from edulake.sources.clever.names import REPORTS, landing_key, parse_report_name, report_file_name
from tests.servers.sshd import SshdServer, running_sshd, sshd_available

HEADERS = {
    "daily-participation": "date,sis_id,clever_user_id,clever_school_id,school_name,active,"
    "num_logins,num_resources_accessed",
    "resource-usage": "date,sis_id,clever_user_id,clever_school_id,school_name,resource_type,"
    "resource_name,resource_id,num_access",
}


@pytest.fixture(scope="session")
def sshd() -> Iterator[SshdServer]:
    if not sshd_available():
        pytest.fail("OpenSSH server missing: apt-get install -y openssh-server")
    with running_sshd() as server:
        yield server


@pytest.fixture
def remote(sshd: SshdServer) -> Path:
    """A fresh remote root for this test on the shared server."""
    root = sshd.root / uuid.uuid4().hex[:8]
    root.mkdir()
    return root


def make_settings(server: SshdServer, root: Path, **overrides: Any) -> SftpSettings:
    kwargs: dict[str, Any] = {
        "host": server.host,
        "port": server.port,
        "username": server.user,
        "private_key": server.client_key_text,
        "host_key": server.host_key_line,
        "remote_root": str(root),
        "connect_timeout": 5.0,
        "io_timeout": 10.0,
        "backoff_seconds": 0.01,  # keep retry tests quick; the schedule is checked via sleep
        "max_backoff_seconds": 0.05,
    }
    kwargs.update(overrides)
    return SftpSettings(**kwargs)


def report_text(report: str, day: dt.date, role: str, rows: int, salt: str = "") -> str:
    """A small, valid Clever-like report (content varies with ``salt``)."""
    lines = [HEADERS[report]]
    for i in range(rows):
        if report == "daily-participation":
            lines.append(
                f"{day},S{i}{salt},c{i:06d},sch{i % 3},School {i % 3},True,{i % 4},{i % 5}"
            )
        else:
            lines.append(
                f"{day},S{i}{salt},c{i:06d},sch{i % 3},School {i % 3},app,Résumé app,r{i},{i % 7}"
            )
    return "\n".join(lines) + "\n"


def write_report(
    root: Path, report: str, day: dt.date, role: str, rows: int = 20, salt: str = ""
) -> Path:
    folder = root / report
    folder.mkdir(exist_ok=True)
    path = folder / report_file_name(day, report, role)
    path.write_text(report_text(report, day, role, rows, salt), encoding="utf-8")
    return path


def write_tree(
    root: Path, start: dt.date, days: int, roles: tuple[str, ...] = ("students", "teachers")
) -> list[Path]:
    """Clever-like daily files for ``days`` days, both reports, the given roles."""
    out = []
    for d in range(days):
        day = start + dt.timedelta(days=d)
        for report in REPORTS:
            for role in roles:
                out.append(write_report(root, report, day, role))
    return out


def clever_files(files: list[SourceFile]) -> list[SourceFile]:
    """Only real Clever report names (what the flow's discover step keeps)."""
    keep = []
    for f in files:
        try:
            parse_report_name(f.name)
        except ValueError:
            continue
        keep.append(f)
    return keep


def land_all(
    lake: Lake, source: SftpSource, files: list[SourceFile], today: dt.date
) -> list[LandingResult]:
    ledger = Ledger(lake, "clever")
    now = dt.datetime.combine(today, dt.time(6), tzinfo=dt.UTC)
    return [
        land_file(
            lake,
            ledger,
            f,
            source.open,
            lambda sf, day: landing_key(parse_report_name(sf.name), day),
            now=now,
        )
        for f in files
    ]


def lake_files(root: Path) -> list[str]:
    """Every file under the lake root, relative, sorted."""
    out = []
    for dirpath, _dirs, names in os.walk(root):
        for n in names:
            out.append(os.path.relpath(os.path.join(dirpath, n), root))
    return sorted(out)
