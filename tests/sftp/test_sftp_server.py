"""The SFTP source against a real OpenSSH sshd: listing, landing, trust, faults, names."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager, suppress
from pathlib import Path
from typing import IO, Any

import pytest

from edulake.connectors.sftp import (
    HostKeyError,
    SftpAuthError,
    SftpSource,
    SftpTransientError,
    UnsafeRemoteName,
    fingerprint_of,
)
from edulake.core.lake import Lake, UnsafeKeyError, Zone
from edulake.core.landing import Ledger, SourceFile, land_file
from edulake.sources.clever.names import FOLDERS, landing_key, parse_report_name
from tests.servers.sshd import KeyPair, SshdServer, free_port

from .conftest import (
    clever_files,
    lake_files,
    land_all,
    make_settings,
    write_report,
    write_tree,
)

pytestmark = pytest.mark.slow

DAY0 = dt.date(2022, 1, 3)
TODAY = dt.date(2022, 1, 20)


def server_fingerprint(server: SshdServer) -> str:
    import base64

    return fingerprint_of(base64.b64decode(server.host_public_key.split()[1]))


# -- listing ---------------------------------------------------------------------------
def test_listing_ignores_other_folders_and_non_reports(sshd: SshdServer, remote: Path) -> None:
    write_tree(remote, DAY0, 2)
    for other in ("idm-reports", "idm-sensitive-exports"):
        (remote / other).mkdir()
        (remote / other / "students.csv").write_text("sis_id\n1\n")
    (remote / "daily-participation" / "notes.txt").write_text("hello")
    (
        remote / "daily-participation" / "2022-01-03-daily-participation-students.csv.part"
    ).write_text("x")
    (remote / "daily-participation" / "2022-01-09-daily-participation-staff.csv").mkdir()
    os.symlink("/etc/passwd", remote / "resource-usage" / "2022-01-09-resource-usage-staff.csv")

    with SftpSource(make_settings(sshd, remote)) as source:
        listed = source.list_files(FOLDERS)
    names = [f.name for f in listed]
    assert all(n.split("/")[0] in FOLDERS for n in names)
    assert "daily-participation/notes.txt" in names  # listed, then dropped by the name filter
    assert not any(n.endswith("-staff.csv") for n in names)  # a folder and a symlink: skipped
    kept = clever_files(listed)
    assert len(kept) == 8
    local = {p.relative_to(remote).as_posix(): p for p in remote.rglob("*.csv") if p.is_file()}
    for f in kept:
        st = local[f.name].stat()
        assert (f.size, f.mtime) == (st.st_size, float(int(st.st_mtime)))


def test_missing_folder_lists_nothing(sshd: SshdServer, remote: Path) -> None:
    with SftpSource(make_settings(sshd, remote)) as source:
        assert source.list_files(FOLDERS) == []


# -- incremental landing ----------------------------------------------------------------
def test_incremental_landing(sshd: SshdServer, remote: Path, tmp_path: Path) -> None:
    write_tree(remote, DAY0, 3)
    lake = Lake(str(tmp_path / "lake"))
    with SftpSource(make_settings(sshd, remote)) as source:
        first = land_all(lake, source, clever_files(source.list_files(FOLDERS)), TODAY)
        assert [r.outcome for r in first] == ["landed"] * 12
        for r in first:
            assert r.entry is not None
            landed = (tmp_path / "lake" / "stage1np" / r.entry.path).read_bytes()
            assert landed == (remote / r.name).read_bytes()
            assert r.entry.sha256 == hashlib.sha256(landed).hexdigest()

        # unchanged by size + mtime: nothing downloaded
        second = land_all(lake, source, clever_files(source.list_files(FOLDERS)), TODAY)
        assert {r.outcome for r in second} == {"unchanged"}

        # a new day's file is picked up alone
        new = write_report(remote, "daily-participation", DAY0 + dt.timedelta(days=3), "students")
        third = land_all(lake, source, clever_files(source.list_files(FOLDERS)), TODAY)
        landed = [r.name for r in third if r.landed]
        assert landed == [new.relative_to(remote).as_posix()]

        # a file replaced on the server with different content: a new version, both kept
        victim = remote / "resource-usage" / "2022-01-04-resource-usage-teachers.csv"
        old = victim.read_bytes()
        write_report(remote, "resource-usage", DAY0 + dt.timedelta(days=1), "teachers", salt="v2")
        st = victim.stat()
        os.utime(victim, (st.st_atime, st.st_mtime + 60))
        fourth = land_all(
            lake, source, clever_files(source.list_files(FOLDERS)), TODAY + dt.timedelta(days=1)
        )
        changed = [r for r in fourth if r.landed]
        assert [(r.name, r.outcome) for r in changed] == [
            ("resource-usage/2022-01-04-resource-usage-teachers.csv", "new-version")
        ]
    versions = Ledger(lake, "clever").versions(changed[0].name)
    assert len(versions) == 2
    assert (tmp_path / "lake" / "stage1np" / versions[0].path).read_bytes() == old
    assert (tmp_path / "lake" / "stage1np" / versions[1].path).read_bytes() == victim.read_bytes()


# -- trust ------------------------------------------------------------------------------
def test_wrong_host_key_refused_naming_fingerprint(sshd: SshdServer, remote: Path) -> None:
    write_tree(remote, DAY0, 1)
    impostor = KeyPair.generate().public_line
    source = SftpSource(make_settings(sshd, remote, host_key=f"[127.0.0.1]:22 {impostor}"))
    with pytest.raises(HostKeyError) as info:
        source.list_files(FOLDERS)
    message = str(info.value)
    assert server_fingerprint(sshd) in message  # what we got
    assert sshd.host_public_key.split()[1] in message  # the line to pin if confirmed
    assert "does not match" in message
    assert source.connect_attempts == 1  # never retried
    source.close()


def test_wrong_fingerprint_refused(sshd: SshdServer, remote: Path) -> None:
    source = SftpSource(make_settings(sshd, remote, host_key="SHA256:" + "A" * 43))
    with pytest.raises(HostKeyError, match=re.escape(server_fingerprint(sshd))):
        source.connect()
    assert source.connect_attempts == 1


def test_no_pinned_key_refused_with_what_to_pin(sshd: SshdServer, remote: Path) -> None:
    source = SftpSource(make_settings(sshd, remote, host_key=""))
    with pytest.raises(HostKeyError) as info:
        source.connect()
    assert "no host key is pinned" in str(info.value)
    assert server_fingerprint(sshd) in str(info.value)


@pytest.mark.parametrize("form", ["known_hosts", "fingerprint", "keyscan"])
def test_pinned_key_forms_accepted(sshd: SshdServer, remote: Path, form: str) -> None:
    if form == "known_hosts":
        pin = sshd.host_key_line
    elif form == "fingerprint":
        pin = server_fingerprint(sshd)
    else:
        keyscan = shutil.which("ssh-keyscan")
        if keyscan is None:
            pytest.fail("ssh-keyscan missing (package openssh-client)")
        out = subprocess.run(
            [keyscan, "-p", str(sshd.port), "-t", "ed25519", sshd.host],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        pin = out.stdout
    write_tree(remote, DAY0, 1)
    with SftpSource(make_settings(sshd, remote, host_key=pin)) as source:
        assert len(source.list_files(FOLDERS)) == 4


def test_wrong_client_key_fails_fast(sshd: SshdServer, remote: Path) -> None:
    sleeps: list[float] = []
    stranger = KeyPair.generate().private_text
    source = SftpSource(
        make_settings(sshd, remote, private_key=stranger, connect_attempts=5),
        sleep=sleeps.append,
    )
    with pytest.raises(SftpAuthError) as info:
        source.list_files(FOLDERS)
    assert source.connect_attempts == 1
    assert sleeps == []
    assert sshd.user in str(info.value)
    assert "BEGIN" not in str(info.value)


def test_connection_refused_retried_with_backoff(sshd: SshdServer, remote: Path) -> None:
    sleeps: list[float] = []
    closed_port = free_port()  # nothing listens there
    source = SftpSource(
        make_settings(
            sshd,
            remote,
            port=closed_port,
            connect_attempts=4,
            backoff_seconds=1.0,
            max_backoff_seconds=60,
        ),
        sleep=sleeps.append,
    )
    with pytest.raises(SftpTransientError, match=f"127.0.0.1:{closed_port}"):
        source.list_files(FOLDERS)
    assert source.connect_attempts == 4
    assert len(sleeps) == 3
    assert sleeps[0] < sleeps[1] < sleeps[2]  # exponential (jitter is at most 20%)


# -- faults -----------------------------------------------------------------------------
def _cutting_opener(
    source: SftpSource, cut: Callable[[], None]
) -> Callable[[SourceFile], AbstractContextManager[IO[bytes]]]:
    """An opener that cuts the connection once the first bytes have arrived."""

    @contextmanager
    def opener(file: SourceFile) -> Iterator[IO[bytes]]:
        with source.open(file) as stream:

            class Cutting:
                def __init__(self) -> None:
                    self.done = False

                def read(self, n: int = -1) -> bytes:
                    data = stream.read(n)
                    if not self.done:
                        self.done = True
                        cut()
                    return data

            yield Cutting()  # type: ignore[misc]

    return opener


def _big_report(remote: Path) -> Path:
    path = write_report(remote, "resource-usage", DAY0, "students", rows=400_000)
    assert path.stat().st_size > 20 << 20  # several read windows
    return path


@pytest.mark.parametrize("how", ["kill-sessions", "stop-server"])
def test_transfer_cut_leaves_nothing_and_rerun_completes(
    sshd: SshdServer, remote: Path, tmp_path: Path, how: str
) -> None:
    big = _big_report(remote)
    lake = Lake(str(tmp_path / "lake"))
    ledger = Ledger(lake, "clever")

    def key(sf: SourceFile, day: dt.date) -> str:
        return landing_key(parse_report_name(sf.name), day)

    def cut() -> None:
        if how == "kill-sessions":
            assert sshd.kill_connections() >= 1
        else:
            sshd.stop()

    with SftpSource(make_settings(sshd, remote, io_timeout=5.0)) as source:
        (file,) = clever_files(source.list_files(FOLDERS))
        with pytest.raises(SftpTransientError, match="nothing was kept"):
            land_file(lake, ledger, file, _cutting_opener(source, cut), key)
        if how == "stop-server":
            sshd.start()
        # nothing visible: no raw file, no ledger record, no staging leftovers
        assert lake.list(Zone.STAGE1NP) == []
        assert ledger.versions(file.name) == []
        assert lake_files(tmp_path / "lake") == []

        result = land_file(lake, ledger, file, source.open, key)
    assert result.outcome == "landed"
    assert result.entry is not None
    landed = tmp_path / "lake" / "stage1np" / result.entry.path
    assert landed.stat().st_size == big.stat().st_size
    assert (
        hashlib.sha256(landed.read_bytes()).hexdigest()
        == hashlib.sha256(big.read_bytes()).hexdigest()
    )


def test_hung_server_times_out_and_rerun_completes(
    sshd: SshdServer, remote: Path, tmp_path: Path
) -> None:
    big = _big_report(remote)
    lake = Lake(str(tmp_path / "lake"))
    frozen: list[Any] = []
    with SftpSource(make_settings(sshd, remote, io_timeout=1.0)) as source:
        (file,) = clever_files(source.list_files(FOLDERS))
        opener = _cutting_opener(source, lambda: frozen.extend(sshd.freeze_connections()))
        try:
            with pytest.raises(SftpTransientError, match="nothing was kept"):
                land_file(lake, Ledger(lake, "clever"), file, opener, lambda _f, _d: "x/y.csv")
            assert frozen
            assert lake_files(tmp_path / "lake") == []
            # the hung connection is dropped: the re-run reconnects while it is still frozen
            (result,) = land_all(lake, source, [file], TODAY)
        finally:
            for p in frozen:
                p.kill()
    assert result.outcome == "landed"
    assert result.size == big.stat().st_size


def test_file_changed_during_transfer_is_not_landed(
    sshd: SshdServer, remote: Path, tmp_path: Path
) -> None:
    big = _big_report(remote)
    lake = Lake(str(tmp_path / "lake"))
    with SftpSource(make_settings(sshd, remote)) as source:
        (file,) = clever_files(source.list_files(FOLDERS))
        with big.open("ab") as f:  # grows after listing: the listed size is now wrong
            f.write(b"2022-01-03,late,row\n")
        with pytest.raises(SftpTransientError, match="changed on the server"):
            land_all(lake, source, [file], TODAY)
    assert lake.list(Zone.STAGE1NP) == []


# -- names ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name",
    [
        "../x.csv",
        "/etc/passwd",
        "daily-participation/../../x.csv",
        "daily-participation/../resource-usage/x.csv",
        "daily-participation/sub/2022-01-03-daily-participation-students.csv",
        "..\\x.csv",
    ],
)
def test_malicious_names_never_opened(sshd: SshdServer, remote: Path, name: str) -> None:
    with (
        SftpSource(make_settings(sshd, remote)) as source,
        pytest.raises(UnsafeRemoteName),
        source.open(SourceFile(name, 1, 1.0)),
    ):
        pass


def test_malicious_names_never_escape_stage1np(
    sshd: SshdServer, remote: Path, tmp_path: Path
) -> None:
    write_tree(remote, DAY0, 1)
    folder = remote / "daily-participation"
    (folder / "..\\..\\x.csv").write_text("evil")
    (folder / "2022-01-05-daily-participation-students.csv\n").write_text("evil")
    lake = Lake(str(tmp_path / "lake"))
    ledger = Ledger(lake, "clever")
    with SftpSource(make_settings(sshd, remote)) as source:
        listed = source.list_files(FOLDERS)
        assert len(listed) == 4
        assert len(source.rejected_names) == 2
        offered = [*listed, SourceFile("../x.csv", 4, 1.0), SourceFile("/tmp/x.csv", 4, 1.0)]
        offered.append(SourceFile("daily-participation/../../x.csv", 4, 1.0))
        for f in offered:
            with suppress(UnsafeRemoteName, UnsafeKeyError):
                land_file(
                    lake,
                    ledger,
                    f,
                    source.open,
                    # no name filter here: the source and safe_key must hold on their own
                    lambda sf, day: f"clever/{day}/{sf.name}",
                    now=dt.datetime(2022, 1, 20, tzinfo=dt.UTC),
                )
    files = lake_files(tmp_path / "lake")
    assert all(
        p.startswith(("stage1np/clever/", "_system/ledger/clever/", "_system/index/ledger/clever/"))
        for p in files
    )
    assert len([p for p in files if p.startswith("stage1np/")]) == 4


# -- parallel ---------------------------------------------------------------------------
def test_parallel_catch_up_bounded(sshd: SshdServer, remote: Path, tmp_path: Path) -> None:
    write_tree(remote, DAY0, 14)  # two weeks x 2 reports x 2 roles = 56 files
    lake = Lake(str(tmp_path / "lake"))
    ledger = Ledger(lake, "clever")
    now = dt.datetime(2022, 1, 20, 6, tzinfo=dt.UTC)
    with SftpSource(make_settings(sshd, remote, max_connections=4)) as source:
        files = clever_files(source.list_files(FOLDERS))
        assert len(files) == 56

        def one(f: SourceFile) -> str:
            key = landing_key(parse_report_name(f.name), now.date())
            return land_file(lake, ledger, f, source.open, lambda _f, _d: key, now=now).outcome

        with ThreadPoolExecutor(max_workers=8) as pool:
            outcomes = list(pool.map(one, files))
        assert outcomes == ["landed"] * 56
        assert 1 <= source.peak_connections <= 4
    for entry in ledger.entries():
        landed = (tmp_path / "lake" / "stage1np" / entry.path).read_bytes()
        assert landed == (remote / entry.name).read_bytes()
