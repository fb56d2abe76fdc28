"""A Clever source that offers nothing is an error; misplaced files are reported once.

Issue 13 ("never silently green"): ``--source-path /does-not-exist`` and a folder holding
only misplaced files used to exit 0 with "offers 0 report files".
"""

from __future__ import annotations

import logging
import os
from typing import Any

import pytest

from edulake.connectors.files import FolderSource, SourceRootError, find_misplaced
from edulake.sources.clever import pipeline
from edulake.sources.clever.names import (
    EXPECTED_LAYOUT,
    FOLDERS,
    is_report_path,
    looks_like_report,
)
from tests.logs import AllRecords

from .helpers import dp_rows, write

GOOD = "daily-participation/2022-01-03-daily-participation-students.csv"
USERS = [("1001", "c001")]


def misplaced(paths: list[str]) -> dict[str, str]:
    return {
        m.path: m.why for m in find_misplaced(paths, FOLDERS, is_report_path, looks_like_report)
    }


def test_missing_source_folder_is_an_error_naming_it(tmp_path) -> None:
    missing = str(tmp_path / "does-not-exist")
    with pytest.raises(SourceRootError, match=f"{missing} does not exist"):
        pipeline.discover(FolderSource(missing))


def test_empty_source_folder_is_an_error(tmp_path) -> None:
    (tmp_path / "src").mkdir()
    with pytest.raises(SourceRootError, match=r"src is empty"):
        pipeline.discover(FolderSource(str(tmp_path / "src")))


def test_a_file_as_source_folder_is_an_error(tmp_path) -> None:
    (tmp_path / "f.csv").write_text("x\n")
    with pytest.raises(SourceRootError, match="is not a folder"):
        pipeline.discover(FolderSource(str(tmp_path / "f.csv")))


def test_only_misplaced_files_is_an_error_listing_them(tmp_path) -> None:
    src = str(tmp_path / "src")
    write(src, "Daily-Participation/2022-01-03-daily-participation-students.csv", "x\n")
    write(src, "2022-01-04-daily-participation-students.csv", "x\n")  # at the root
    with pytest.raises(SourceRootError) as err:
        pipeline.discover(FolderSource(src))
    text = str(err.value)
    assert "holds none of Clever's report folders" in text and src in text
    assert "Daily-Participation/2022-01-03-daily-participation-students.csv" in text
    assert "2022-01-04-daily-participation-students.csv (at the root)" in text
    assert EXPECTED_LAYOUT in text
    assert "daily-participation/YYYY-MM-DD-daily-participation-<role>.csv" in text


def test_near_misses_found_once_with_why(tmp_path) -> None:
    src = str(tmp_path / "src")
    write(src, GOOD, dp_rows("2022-01-03", USERS))
    near = [
        "daily-participation/Students/Students.csv",  # the OEA module's layout
        "daily-participation/2022-01-04-daily-participation-students.CSV",
        "Resource-Usage/2022-01-03-resource-usage-students.csv",
        "export/daily-participation/2022-01-05-daily-participation-students.csv",
        "2022-01-06-resource-usage-teachers.csv",
        "downloads/2022-01-07-Daily-Participation-staff.csv",
    ]
    for path in near:
        write(src, path, "x\n")
    write(src, "idm-reports/students.csv", "x\n")  # another Clever folder: not a near miss
    write(src, "daily-participation/README.txt", "x\n")  # in the folder, not report-like
    write(src, "notes.txt", "x\n")
    found = pipeline.discover(FolderSource(src))
    assert [n.relative for _f, n in found.reports] == [GOOD]
    got = {m.path: m.why for m in found.misplaced}
    assert sorted(got) == sorted(near)
    assert got["daily-participation/Students/Students.csv"] == (
        "in a subfolder: files go directly in daily-participation/"
    )
    assert "letter case" in got["Resource-Usage/2022-01-03-resource-usage-students.csv"]
    assert "nested under export/" in got[near[3]]
    assert got[near[4]] == "at the root"
    # listed once: not a second time among the ignored names
    assert [n for n, _why in found.ignored] == ["daily-participation/README.txt"]
    assert found.missing_folders == ["resource-usage"]
    message = found.misplaced_message()
    assert message is not None and message.count(near[1]) == 1
    assert message.startswith("6 file(s) are not where Clever puts reports")


def test_matcher_rules() -> None:
    got = misplaced(
        [
            GOOD,
            "resource-usage/2022-01-03-resource-usage-staff.csv",
            "daily-participation/2022-01-03-resource-usage-staff.csv",  # wrong folder for it
            "DAILY-PARTICIPATION/x.txt",
            "daily-participation/2022-01-03-daily-participation-students.csv.gz",
            "idm-sensitive-exports/2022/users.csv",
            "a/b/c/2022-01-03-daily-participation-students.csv",
        ]
    )
    assert GOOD not in got
    assert "resource-usage/2022-01-03-resource-usage-staff.csv" not in got
    assert "daily-participation/2022-01-03-resource-usage-staff.csv" in got
    assert "letter case" in got["DAILY-PARTICIPATION/x.txt"]
    assert "daily-participation/2022-01-03-daily-participation-students.csv.gz" in got
    assert "idm-sensitive-exports/2022/users.csv" not in got
    assert "in folder a/b/c/" in got["a/b/c/2022-01-03-daily-participation-students.csv"]


def test_scan_is_shallow(tmp_path) -> None:
    src = str(tmp_path / "src")
    write(src, "daily-participation/a/b/deep.csv", "x\n")  # depth 4: not scanned
    write(src, "daily-participation/a/shallow.csv", "x\n")
    tree = FolderSource(src).scan()
    assert tree.files == ["daily-participation/a/shallow.csv"]
    assert tree.folders == ["daily-participation"]


def test_flow_task_logs_misplaced_once(tmp_path) -> None:
    """The discover task's log: one warning line for all misplaced files."""
    from tasks.clever import discover_reports

    src = str(tmp_path / "src")
    write(src, GOOD, dp_rows("2022-01-03", USERS))
    write(src, "daily-participation/Students/Students.csv", "x\n")
    handler = AllRecords()
    logging.getLogger("edulake").addHandler(handler)  # the task's logger outside a run
    try:
        discover_reports.fn(FolderSource(src), None, None)
    finally:
        logging.getLogger("edulake").removeHandler(handler)
    logs = handler
    lines = [line for line in logs.lines if "Students.csv" in line]
    assert len(lines) == 1 and "not where Clever puts reports" in lines[0]
    assert any("has no resource-usage/ folder" in line for line in logs.lines)


def test_unreadable_source_folder_is_an_error(tmp_path, monkeypatch) -> None:
    """As root every folder is readable, so the refusal is injected where it happens."""
    src = tmp_path / "src"
    (src / "daily-participation").mkdir(parents=True)
    real = os.scandir

    def scandir(path: Any) -> Any:
        if os.fspath(path) == str(src):
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    with pytest.raises(SourceRootError, match=f"{src} cannot be read"):
        pipeline.discover(FolderSource(str(src)))


def test_linked_report_folders_count_as_folders(tmp_path) -> None:
    """A report folder may be a link to a mounted share, as listing allows."""
    share = tmp_path / "share"
    write(str(share), "2022-01-03-daily-participation-students.csv", dp_rows("2022-01-03", USERS))
    src = tmp_path / "src"
    src.mkdir()
    (src / "daily-participation").symlink_to(share, target_is_directory=True)
    found = pipeline.discover(FolderSource(str(src)))
    assert [n.relative for _f, n in found.reports] == [GOOD]
    assert found.misplaced == [] and found.missing_folders == ["resource-usage"]
