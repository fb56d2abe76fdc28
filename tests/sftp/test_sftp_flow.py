"""The Clever flow end to end from a real sshd: source="sftp" with an SftpServer block."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from edulake.catalog.duckdb import connect as connect_catalog
from edulake.connectors.blocks import SftpServer
from edulake.connectors.sftp import HostKeyError, SftpAuthError
from edulake.core import clock
from edulake.demo.clever_testdata import generate_reports
from flows.clever_participation import clever_participation
from tests.keys import KEY_TEXT
from tests.servers.sshd import KeyPair, SshdServer

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    """A real key: the demo key is refused for source=sftp."""
    monkeypatch.setenv("EDULAKE_HMAC_KEY", KEY_TEXT)


def save_block(name: str, server: SshdServer, root: Path, **overrides: object) -> None:
    fields: dict[str, object] = {
        "host": server.host,
        "port": server.port,
        "username": server.user,
        "private_key": server.client_key_text,
        "host_key": server.host_key_line,
        "remote_root": str(root),
        "connect_timeout": 5.0,
        "max_connections": 4,
    }
    fields.update(overrides)
    SftpServer(**fields).save(name, overwrite=True, _sync=True)  # type: ignore[call-arg]


def daily_rows(db: str) -> int:
    con = connect_catalog(db)
    try:
        return int(con.execute("SELECT COUNT(*) FROM clever.daily_participation").fetchone()[0])
    finally:
        con.close()


def test_clever_flow_from_sftp(sshd: SshdServer, remote: Path, tmp_path: Path) -> None:
    start = clock.today() - dt.timedelta(days=3)
    generate_reports(str(remote), start=start, days=2, students=300, teachers=20, staff=5)
    (remote / "idm-reports").mkdir()
    (remote / "idm-reports" / "students.csv").write_text("sis_id\nS1\n")
    save_block("test-clever-sftp", sshd, remote)
    lake = str(tmp_path / "lake")

    first = clever_participation(source="sftp", sftp_block="test-clever-sftp", lake_root=lake)
    assert first["landing"] == {"landed": 12}
    assert first["failed_files"] == []
    assert daily_rows(f"{lake}/catalog/edulake.duckdb") == 2 * (300 + 20 + 5)
    fresh = first["freshness"]["daily-participation"]
    assert fresh["newest_on_server"] == str(start + dt.timedelta(days=1))
    assert fresh["age_days"] == 2
    assert not fresh["stale"]
    assert fresh["missing_ranges"] == [f"{clock.today() - dt.timedelta(days=1)} (1 day)"]

    second = clever_participation(source="sftp", sftp_block="test-clever-sftp", lake_root=lake)
    assert second["landing"] == {"unchanged": 12}
    assert second["files_processed"] == 0

    # the next day arrives: only its files land
    generate_reports(
        str(remote), start=start + dt.timedelta(days=2), days=1, students=300, teachers=20, staff=5
    )
    third = clever_participation(source="sftp", sftp_block="test-clever-sftp", lake_root=lake)
    assert third["landing"] == {"landed": 6, "unchanged": 12}
    assert third["freshness"]["daily-participation"]["missing_days"] == 0
    assert third["freshness"]["resource-usage"]["missing_ranges"] == []
    assert daily_rows(f"{lake}/catalog/edulake.duckdb") == 3 * (300 + 20 + 5)


def test_flow_refuses_wrong_host_key(sshd: SshdServer, remote: Path, tmp_path: Path) -> None:
    save_block("test-bad-host", sshd, remote, host_key=KeyPair.generate().public_line)
    with pytest.raises(HostKeyError, match="does not match the pinned key"):
        clever_participation(source="sftp", sftp_block="test-bad-host", lake_root=str(tmp_path))
    assert not (tmp_path / "stage1np").exists()
    assert not (tmp_path.parent / f"{tmp_path.name}-protected" / "stage1np").exists()


def test_flow_refuses_wrong_login(sshd: SshdServer, remote: Path, tmp_path: Path) -> None:
    save_block("test-bad-login", sshd, remote, private_key=KeyPair.generate().private_text)
    with pytest.raises(SftpAuthError, match="refused user"):
        clever_participation(source="sftp", sftp_block="test-bad-login", lake_root=str(tmp_path))


def test_missing_block_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no SftpServer block named 'nope'"):
        clever_participation(source="sftp", sftp_block="nope", lake_root=str(tmp_path))


def test_block_hides_secrets() -> None:
    block = SftpServer(
        host="h", username="u", password="PASSWORD", private_key="KEYTEXT", host_key="SHA256:x"
    )
    assert "PASSWORD" not in repr(block) and "KEYTEXT" not in repr(block)
    settings = block.settings()
    assert settings.password == "PASSWORD"
    assert "PASSWORD" not in repr(settings)


def test_block_cli_save_and_check(
    sshd: SshdServer, remote: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from edulake.connectors.blocks import main

    generate_reports(str(remote), start=dt.date(2022, 1, 3), days=1, students=50)
    assert main(["host-key", sshd.host, "--port", str(sshd.port)]) == 0
    pin = capsys.readouterr().out
    assert pin.strip() == sshd.host_key_line
    (tmp_path / "known_hosts").write_text(pin)
    key = tmp_path / "id"
    key.write_text(sshd.client_key_text)
    args = ["save-sftp", "--name", "test-cli-sftp", "--host", sshd.host]
    args += ["--port", str(sshd.port), "--username", sshd.user, "--private-key-file", str(key)]
    args += ["--host-key-file", str(tmp_path / "known_hosts"), "--remote-root", str(remote)]
    assert main([*args, "--overwrite"]) == 0
    assert main(["check-sftp", "--name", "test-cli-sftp"]) == 0
    out = capsys.readouterr().out
    assert "host key verified, login ok, 6 files" in out
    loaded = SftpServer.load("test-cli-sftp", _sync=True)  # type: ignore[call-arg]
    assert loaded.private_key is not None
    assert loaded.private_key.get_secret_value() == sshd.client_key_text
    assert sshd.client_key_text not in out

    save_block("test-cli-bad", sshd, remote, host_key=KeyPair.generate().public_line)
    assert main(["check-sftp", "--name", "test-cli-bad"]) == 2
    assert "does not match the pinned key" in capsys.readouterr().err


def test_flow_fails_at_once_on_a_root_without_report_folders(
    sshd: SshdServer, remote: Path, tmp_path: Path
) -> None:
    from edulake.connectors.files import SourceRootError

    (remote / "idm-reports").mkdir()
    (remote / "idm-reports" / "students.csv").write_text("sis_id\nS1\n")
    save_block("test-clever-sftp-empty", sshd, remote)
    state = clever_participation(
        source="sftp",
        sftp_block="test-clever-sftp-empty",
        lake_root=str(tmp_path / "lake"),
        return_state=True,
    )
    err = state.result(raise_on_failure=False)
    assert isinstance(err, SourceRootError)
    assert f"{sshd.host}:{sshd.port}:{remote} holds none of Clever's report folders" in str(err)
    assert discover_run_counts(state.state_details.flow_run_id) == [1]  # never retried


def discover_run_counts(flow_run_id: object) -> list[int]:
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    async def read() -> list[int]:
        async with get_client() as client:
            runs = await client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
            )
        return [r.run_count for r in runs if r.name.startswith("discover-reports")]

    return asyncio.run(read())
