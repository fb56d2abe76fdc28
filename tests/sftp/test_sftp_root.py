"""The SFTP root checked against a real sshd: missing, empty, a file, no report folders.

Each is an error naming the server and the path (never "offers 0 report files"), not
retried; misplaced files are found by the same matcher as for a folder.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from edulake.connectors.files import SourceRootError
from edulake.connectors.sftp import SftpSource, is_retryable
from edulake.sources.clever import pipeline
from tests.servers.sshd import SshdServer

from .conftest import make_settings, write_report

pytestmark = pytest.mark.slow

DAY = dt.date(2022, 1, 3)


def discover(server: SshdServer, root: Path) -> pipeline.Discovery:
    with SftpSource(make_settings(server, root)) as src:
        return pipeline.discover(src)


def test_missing_root_is_an_error_naming_it(sshd: SshdServer, remote: Path) -> None:
    with pytest.raises(SourceRootError, match=f"{remote}/nope does not exist") as err:
        discover(sshd, remote / "nope")
    assert f"{sshd.host}:{sshd.port}" in str(err.value)
    assert not is_retryable(err.value)


def test_empty_root_is_an_error(sshd: SshdServer, remote: Path) -> None:
    with pytest.raises(SourceRootError, match="is empty"):
        discover(sshd, remote)


def test_root_that_is_a_file_is_an_error(sshd: SshdServer, remote: Path) -> None:
    (remote / "file.csv").write_text("x\n")
    with pytest.raises(SourceRootError, match="is not a folder"):
        discover(sshd, remote / "file.csv")


def test_no_report_folders_is_an_error_listing_misplaced(sshd: SshdServer, remote: Path) -> None:
    (remote / "idm-reports").mkdir()
    (remote / "Daily-Participation").mkdir()
    (remote / "Daily-Participation" / "2022-01-03-daily-participation-students.csv").write_text(
        "x\n"
    )
    with pytest.raises(SourceRootError) as err:
        discover(sshd, remote)
    text = str(err.value)
    assert "holds none of Clever's report folders" in text
    assert "Daily-Participation/2022-01-03-daily-participation-students.csv" in text
    assert "daily-participation/YYYY-MM-DD-daily-participation-<role>.csv" in text


def test_a_missing_report_folder_on_sftp_is_an_error(sshd: SshdServer, remote: Path) -> None:
    write_report(remote, "daily-participation", DAY, "students")
    with pytest.raises(SourceRootError, match=f"{remote} has no resource-usage/ folder"):
        discover(sshd, remote)


def test_near_misses_on_sftp_match_the_folder_rules(sshd: SshdServer, remote: Path) -> None:
    write_report(remote, "daily-participation", DAY, "students")
    (remote / "resource-usage").mkdir()
    (remote / "daily-participation" / "Students").mkdir()
    (remote / "daily-participation" / "Students" / "Students.csv").write_text("x\n")
    (remote / "daily-participation" / "2022-01-04-daily-participation-staff.CSV").write_text("x")
    (remote / "2022-01-05-resource-usage-students.csv").write_text("x\n")
    (remote / "idm-reports").mkdir()
    (remote / "idm-reports" / "users.csv").write_text("x\n")
    found = discover(sshd, remote)
    assert [n.file_name for _f, n in found.reports] == [
        "2022-01-03-daily-participation-students.csv"
    ]
    assert [m.path for m in found.misplaced] == [
        "2022-01-05-resource-usage-students.csv",
        "daily-participation/2022-01-04-daily-participation-staff.CSV",
        "daily-participation/Students/Students.csv",
    ]
    assert found.ignored == []  # the .CSV file is listed once, as misplaced
    assert found.missing_folders == []


def test_linked_report_folder_on_sftp_counts(
    sshd: SshdServer, remote: Path, tmp_path: Path
) -> None:
    share = tmp_path / "share"
    share.mkdir()
    write_report(share, "daily-participation", DAY, "students")
    (remote / "daily-participation").symlink_to(share / "daily-participation")
    (remote / "resource-usage").mkdir()
    found = discover(sshd, remote)
    assert [n.file_name for _f, n in found.reports] == [
        "2022-01-03-daily-participation-students.csv"
    ]
    assert found.missing_folders == [] and found.misplaced == []
