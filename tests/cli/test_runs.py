"""Flow commands end to end: exit codes, one error line, the run summary, no traceback.

Under Prefect's test harness (in-process), except one command run in a new process as a
user types it. Raw identifiers and the LibInsight client secret never reach the output.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from edulake.cli import main
from edulake.core import clock
from tests.clever.helpers import dp_rows, ru_rows, write
from tests.keys import KEY_TEXT, LIBINSIGHT_KEY_TEXT
from tests.servers.libinsight import libinsight_server

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]

REPO = Path(__file__).parents[2]
USERS = [("S1001x", "c001y"), ("S1002x", "c002y")]
RAW_IDS = {raw for pair in USERS for raw in pair} | {"S999888"}
TODAY = clock.today()  # the flow's "today"
YESTERDAY = TODAY - dt.timedelta(days=1)
ISO_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDULAKE_HMAC_KEY", KEY_TEXT)


def dp(day: dt.date) -> str:
    return f"daily-participation/{day}-daily-participation-students.csv"


def ru(day: dt.date) -> str:
    return f"resource-usage/{day}-resource-usage-students.csv"


def clever(tmp_path: Path, src: Path, *extra: str) -> int:
    return main(
        [
            "clever",
            "--source",
            "folder",
            "--source-path",
            str(src),
            "--lake-root",
            str(tmp_path / "lake"),
            "--np-root",
            str(tmp_path / "np"),
            *extra,
        ]
    )


def no_raw_ids(text: str) -> None:
    assert not [raw for raw in RAW_IDS if raw in text]


def test_a_bad_tree_is_one_line_and_exit_2_as_a_command(tmp_path) -> None:
    """Only misplaced files: SourceRootError. A new process, with its own Prefect server."""
    src = tmp_path / "src"
    write(str(src), f"Daily-Participation/{YESTERDAY}-daily-participation-students.csv", "x\n")
    write(str(src), "daily-participation-export/Students/Students.csv", "x\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EDULAKE_", "PREFECT_API"))}
    env.update(
        PYTHONPATH=str(REPO),
        EDULAKE_HMAC_KEY=KEY_TEXT,
        PREFECT_HOME=str(tmp_path / "prefect"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
    )
    cmd = [sys.executable, "-m", "edulake", "clever", "--source", "folder"]
    cmd += ["--source-path", str(src), "--lake-root", str(tmp_path / "lake")]
    done = subprocess.run(
        cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300, check=False
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr + done.stdout
    errors = [ln for ln in done.stderr.splitlines() if ln.startswith("edulake:")]
    assert len(errors) == 1
    assert errors[0].startswith("edulake: SourceRootError: ")
    assert "not where Clever puts reports" in errors[0]
    assert "== Run summary (failed)" in done.stderr
    assert len(done.stderr.splitlines()) < 20  # was 87 lines of traceback


def test_a_failed_file_exits_1_with_the_run_summary(tmp_path, capfd) -> None:
    src = tmp_path / "src"
    write(str(src), dp(YESTERDAY), dp_rows(str(YESTERDAY), USERS))
    write(str(src), ru(YESTERDAY), "date,sis_id\n" + f"{YESTERDAY},S999888\n")  # bad header
    assert clever(tmp_path, src) == 1
    out, err = capfd.readouterr()
    assert "Traceback" not in out + err
    errors = [ln for ln in err.splitlines() if ln.startswith("edulake:")]
    assert len(errors) == 1 and errors[0].startswith("edulake: FilesFailed: 1 file(s)")
    summary = err[err.index("== Run summary (failed)") :]
    assert "Clever participation run: FAILED: 1 file(s) not processed" in summary
    name = ru(YESTERDAY).split("/")[1]
    assert [ln for ln in summary.splitlines() if "FAILED" in ln and name in ln]
    assert "files processed: 2" in summary
    no_raw_ids(out + err)


def test_debug_shows_the_traceback(tmp_path, capfd) -> None:
    src = tmp_path / "src"
    write(str(src), ru(YESTERDAY), "date,sis_id\n" + f"{YESTERDAY},S999888\n")
    write(str(src), dp(YESTERDAY), dp_rows(str(YESTERDAY), USERS))
    from flows.clever_participation import FilesFailed

    with pytest.raises(FilesFailed):
        main(
            [
                "--debug",
                "clever",
                "--source",
                "folder",
                "--source-path",
                str(src),
                "--lake-root",
                str(tmp_path / "lake"),
                "--np-root",
                str(tmp_path / "np"),
            ]
        )
    assert "Traceback" in "".join(capfd.readouterr())


def old_source(tmp_path: Path) -> Path:
    old = TODAY - dt.timedelta(days=1791)
    src = tmp_path / "src"
    for day in (old - dt.timedelta(days=2), old):  # a hole, then 1790 days not landed
        write(str(src), dp(day), dp_rows(str(day), USERS))
        write(str(src), ru(day), ru_rows(str(day), USERS))
    return src


def test_old_data_prints_missing_days_as_ranges(tmp_path, capfd, monkeypatch) -> None:
    monkeypatch.setenv("EDULAKE_FAIL_REPORT_AGE_DAYS", "100000")  # warn, do not fail
    assert clever(tmp_path, old_source(tmp_path)) == 0
    out, err = capfd.readouterr()
    summary = out[out.index("== Run summary") :]
    assert "WARNING" in summary.splitlines()[1]
    first = TODAY - dt.timedelta(days=1790)
    assert "missing from the lake: 1790 day(s) in 1 range(s): " in summary
    assert f"{first}..{YESTERDAY} (1790 days)" in summary
    assert len(ISO_DAY.findall(summary)) < 20  # ranges, never one date per day
    assert "Traceback" not in out + err
    no_raw_ids(out + err)


def test_old_data_failing_the_run_exits_1_with_ranges(tmp_path, capfd) -> None:
    assert clever(tmp_path, old_source(tmp_path)) == 1
    out, err = capfd.readouterr()
    errors = [ln for ln in err.splitlines() if ln.startswith("edulake:")]
    assert len(errors) == 1 and errors[0].startswith("edulake: SourceStale: ")
    assert len(ISO_DAY.findall(out + err)) < 60  # two reports, ranges only
    assert "Traceback" not in out + err


def test_json_prints_the_whole_summary(tmp_path, capfd) -> None:
    src = tmp_path / "src"
    write(str(src), dp(YESTERDAY), dp_rows(str(YESTERDAY), USERS))
    write(str(src), ru(YESTERDAY), ru_rows(str(YESTERDAY), USERS))
    assert clever(tmp_path, src, "--json") == 0
    out = capfd.readouterr().out
    summary = json.loads(out[out.index("{") :])
    assert summary["status"] == "ok" and summary["files_processed"] == 2


SECRET = "district-secret-7Qm2xV9pL4kR8tZ1"


def test_libinsight_end_to_end_with_the_secret_from_the_environment(
    tmp_path, capfd, monkeypatch
) -> None:
    monkeypatch.setenv("EDULAKE_HMAC_KEY", LIBINSIGHT_KEY_TEXT)
    monkeypatch.setenv("EDULAKE_LIBINSIGHT_CLIENT_SECRET", SECRET)
    root = str(tmp_path / "lake")
    with libinsight_server(client_id="district-client", client_secret=SECRET) as srv:
        argv = ["libinsight", "--base-url", srv.base_url, "--dataset-id", "12345"]
        argv += ["--client-id", "district-client", "--lake-root", root]
        argv += ["--np-root", str(tmp_path / "np"), "--from", "2022-01-01", "--to", "2022-02-28"]
        assert SECRET not in " ".join(argv)
        assert main([*argv, "--json"]) == 0
        out, err = capfd.readouterr()
        summary = json.loads(out[out.index("{") :])
        assert summary["rows_written"] > 0 and summary["watermark_after"] == "2022-02-28"
        assert main(argv) == 0  # again: the human summary, incremental from the watermark
        again_out, again_err = capfd.readouterr()
    assert "LibInsight dataset 12345 -> libinsight.reference_desk_12345" in again_out
    assert "watermark 2022-02-28 -> 2022-02-28" in again_out
    assert SECRET not in out + err + again_out + again_err
    assert "Traceback" not in out + err + again_out + again_err
    sql = "SELECT count(*) AS n FROM libinsight.reference_desk_12345"
    assert main(["query", sql, "--lake-root", root, "--format", "json"]) == 0
    assert json.loads(capfd.readouterr().out) == [{"n": summary["rows_written"]}]


def test_libinsight_without_a_secret_is_one_line_exit_2(tmp_path, capfd) -> None:
    with libinsight_server() as srv:
        code = main(
            [
                "libinsight",
                "--base-url",
                srv.base_url,
                "--dataset-id",
                "12345",
                "--client-id",
                "district-client",
                "--lake-root",
                str(tmp_path / "lake"),
                "--np-root",
                str(tmp_path / "np"),
                "--from",
                "2022-01-01",
                "--to",
                "2022-01-31",
                "--client-secret-block",
                "no-such-block",
            ]
        )
    out, err = capfd.readouterr()
    assert code == 2
    errors = [ln for ln in err.splitlines() if ln.startswith("edulake:")]
    assert len(errors) == 1 and "MissingClientSecretError" in errors[0]
    assert "EDULAKE_LIBINSIGHT_CLIENT_SECRET" in errors[0]
    assert "Traceback" not in out + err


def test_an_unknown_error_shows_its_type_only_on_the_console(tmp_path, capfd, monkeypatch) -> None:
    """A bug whose message quotes a row: neither the CLI's line nor Prefect's console lines
    (the exception, the failed states) show it."""
    from prefect import task

    import flows.clever_participation as flow_module

    @task(name="discover-reports")
    def leaky_discover(*_args: object, **_kw: object) -> None:
        raise ValueError("cannot parse row 'S999888,Jane Doe,jane@example.org'")

    monkeypatch.setattr(flow_module, "discover_reports", leaky_discover)
    src = tmp_path / "src"
    write(str(src), dp(YESTERDAY), dp_rows(str(YESTERDAY), USERS))
    assert clever(tmp_path, src) == 1
    out, err = capfd.readouterr()
    assert "edulake: failed with ValueError (run with --debug for details)" in err
    assert "Jane" not in out + err and "jane@" not in out + err
    no_raw_ids(out + err)
    assert "Traceback" not in out + err
