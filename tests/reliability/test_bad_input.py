"""The bad input catalogue: every kind of broken Clever file has one clear outcome.

Outcomes: *processed* (rows in stage2p), *quarantined* (rows in the protected quarantine
zone with file, CSV record number and reason), or *a clear error naming the file* (the
file's status and message; the run fails naming it). Never a bare traceback, never a
silent loss: every data line is either written or quarantined (or the file fails).
"""

from __future__ import annotations

import csv
import io
import os

import pyarrow as pa
import pytest

import edulake.sources.clever.process as process_mod
from edulake.core.lake import Zone
from edulake.sources.clever import pipeline

from ..clever.helpers import DP_HEADER, RU_HEADER, write
from .helpers import DP, RU, read_table, run

GOOD = "2022-01-03,1001,c001,s1,A,True,1,1"
csv.field_size_limit(64 << 20)  # quarantined huge fields are read back whole


def _one(tmp_path, lake, pseudonymizer, content, share=0.9, name=DP):
    src = str(tmp_path / "src")
    write(src, name, content)
    _, _, processed = run(lake, src, pseudonymizer, share=share)
    (res,) = processed.files
    return res


def _quarantine(lake, res) -> list[dict[str, str]]:
    assert res.quarantine_file, "nothing quarantined"
    text = lake.read_bytes(Zone.QUARANTINE, res.quarantine_file).decode()
    return list(csv.DictReader(io.StringIO(text)))


# -- rows that are processed -----------------------------------------------------------


def test_embedded_newlines_and_commas_in_quoted_fields(tmp_path, lake, pseudonymizer):
    content = (
        DP_HEADER + "\n"
        '2022-01-03,1001,c001,s1,"Lakeview, K-8\nNorth campus",True,1,1\n'
        "2022-01-03,1002,c002,s1,A,True,bad,1\n"
    )
    res = _one(tmp_path, lake, pseudonymizer, content)
    assert (res.status, res.rows_written, res.rows_quarantined) == ("processed", 1, 1)
    assert read_table(lake, "daily_participation")["school_name"].to_pylist() == [
        "Lakeview, K-8\nNorth campus"
    ]
    # CSV record numbers (header = 1): the embedded newline does not shift them
    assert [r["line"] for r in _quarantine(lake, res)] == ["3"]


@pytest.mark.parametrize(
    "content",
    [
        ("\ufeff" + DP_HEADER + "\n" + GOOD + "\n").encode(),
        (
            DP_HEADER.replace(",", '","').join('""') + "\n" + '"' + GOOD.replace(",", '","') + '"\n'
        ).encode(),
        (DP_HEADER + "\r\n" + GOOD + "\r\n").encode(),
        (DP_HEADER + "\n" + GOOD).encode(),  # no final newline
        (DP_HEADER + "\n\n" + GOOD + "\n\n\n").encode(),  # blank lines
        (DP_HEADER.upper() + "\n" + GOOD + "\n").encode(),  # header case
    ],
    ids=[
        "utf8-bom",
        "every-field-quoted",
        "crlf",
        "no-final-newline",
        "blank-lines",
        "upper-header",
    ],
)
def test_harmless_variants_are_processed(tmp_path, lake, pseudonymizer, content):
    res = _one(tmp_path, lake, pseudonymizer, content)
    assert (res.status, res.rows_written, res.rows_quarantined) == ("processed", 1, 0)
    t = read_table(lake, "daily_participation")
    assert t["school_name"].to_pylist() == ["A"] and t["num_logins"].to_pylist() == [1]


def test_unpadded_dates_and_booleans_in_any_case(tmp_path, lake, pseudonymizer):
    bools = ["true", "TRUE", "True", "tRuE", "false", "FALSE", "False", " True "]
    rows = [f"2022-1-{i + 1},{1000 + i},c{i},s1,A,{b},1,1" for i, b in enumerate(bools)]
    res = _one(tmp_path, lake, pseudonymizer, DP_HEADER + "\n" + "\n".join(rows) + "\n")
    assert (res.status, res.rows_written) == ("processed", len(bools))
    t = read_table(lake, "daily_participation").sort_by("num_resources_accessed")
    got = sorted(
        (str(d), a) for d, a in zip(t["date"].to_pylist(), t["active"].to_pylist(), strict=True)
    )
    assert got == sorted(
        (f"2022-01-{i + 1:02d}", b.strip().lower() == "true") for i, b in enumerate(bools)
    )


def test_header_only_file_is_processed_with_no_rows(tmp_path, lake, pseudonymizer):
    res = _one(tmp_path, lake, pseudonymizer, DP_HEADER + "\n")
    assert (res.status, res.rows_read, res.error) == ("processed", 0, None)
    assert lake.list(Zone.STAGE2P) == []


@pytest.mark.parametrize(
    "content", [b"", b"\n\n  \n", b"\xef\xbb\xbf"], ids=["0-bytes", "blank", "bom-only"]
)
def test_empty_file_is_reported_empty(tmp_path, lake, pseudonymizer, content):
    res = _one(tmp_path, lake, pseudonymizer, content)
    assert res.status == "empty" and "empty" in res.error
    assert pipeline.pending(lake) == []  # recorded: an empty file is not retried forever


# -- duplicates ------------------------------------------------------------------------


def test_exact_duplicate_rows_within_a_file_are_kept_as_delivered(tmp_path, lake, pseudonymizer):
    # Decision (docs/guarantees.md): stage2p mirrors each source file; nothing is dropped.
    res = _one(tmp_path, lake, pseudonymizer, DP_HEADER + f"\n{GOOD}\n{GOOD}\n")
    assert (res.rows_read, res.rows_written) == (2, 2)
    assert read_table(lake, "daily_participation").num_rows == 2


def test_duplicates_across_files_redelivery_replaces_own_rows(tmp_path, lake, pseudonymizer):
    src = str(tmp_path / "src")
    teachers = DP.replace("students", "teachers")
    write(src, DP, DP_HEADER + f"\n{GOOD}\n")
    write(src, teachers, DP_HEADER + f"\n{GOOD}\n")  # the same row in another file
    run(lake, src, pseudonymizer)
    assert read_table(lake, "daily_participation").num_rows == 2  # one per source file
    # the students file is re-delivered unchanged: skipped, nothing duplicated
    os.utime(os.path.join(src, DP), (2e9, 2e9))
    _, landed, processed = run(lake, src, pseudonymizer)
    assert sorted(r.outcome for r in landed) == ["same-content", "unchanged"]
    assert processed.files == []
    # re-delivered changed: replaces exactly its own rows
    write(src, DP, DP_HEADER + "\n" + GOOD.replace(",1,1", ",7,1") + "\n")
    _, landed, _ = run(lake, src, pseudonymizer)
    t = read_table(lake, "daily_participation")
    assert sorted(zip(t["role"].to_pylist(), t["num_logins"].to_pylist(), strict=True)) == [
        ("students", 7),
        ("teachers", 1),
    ]


# -- rows that are quarantined ---------------------------------------------------------


def test_wrong_field_count_is_quarantined(tmp_path, lake, pseudonymizer):
    content = DP_HEADER + f"\n{GOOD}\n2022-01-03,1002,c002,s1,A,True,1\n{GOOD},EXTRA\n{GOOD}\n"
    res = _one(tmp_path, lake, pseudonymizer, content)
    assert (res.rows_written, res.rows_quarantined, res.mode) == (2, 2, "exact")
    assert [(r["line"], r["reason"]) for r in _quarantine(lake, res)] == [
        ("3", "expected 8 fields, got 7"),
        ("4", "expected 8 fields, got 9"),
    ]


def test_unterminated_quote_quarantines_the_swallowed_lines(tmp_path, lake, pseudonymizer):
    content = DP_HEADER + f'\n{GOOD}\n2022-01-03,1002,c002,s1,"A,True,1,1\n{GOOD}\n{GOOD}\n'
    res = _one(tmp_path, lake, pseudonymizer, content)
    (row,) = _quarantine(lake, res)
    assert row["line"] == "3" and "unterminated quote" in row["reason"]
    assert row["raw"].count("\n") == 2  # the swallowed lines are kept, not lost
    # ... and they count against the quarantine share: 3 of 4 lines lost
    res = _one(
        tmp_path / "again", lake.__class__(str(tmp_path / "l2")), pseudonymizer, content, share=0.5
    )
    assert res.status == "too-many-bad-rows" and "3 of 4 rows" in res.error


def test_non_utf8_bytes_in_a_row_are_quarantined(tmp_path, lake, pseudonymizer):
    content = (DP_HEADER + f"\n{GOOD}\n").encode() + b"2022-01-03,1002,c002,s1,Caf\xe9,True,1,1\n"
    res = _one(tmp_path, lake, pseudonymizer, content)
    assert (res.rows_written, res.rows_quarantined) == (1, 1)
    (row,) = _quarantine(lake, res)
    assert (row["line"], row["reason"]) == ("3", "bytes that are not UTF-8")


def test_huge_field_is_quarantined(tmp_path, lake, pseudonymizer):
    huge = "X" * (10 << 20)  # larger than a read block: read again with a bigger block
    content = DP_HEADER + f"\n{GOOD}\n2022-01-03,1002,c002,s1,{huge},True,1,1\n{GOOD}\n"
    res = _one(tmp_path, lake, pseudonymizer, content)
    assert (res.status, res.rows_written, res.rows_quarantined) == ("processed", 2, 1)
    (row,) = _quarantine(lake, res)
    assert row["line"] == "3" and row["reason"] == "school_name: longer than 65536 characters"


def test_record_larger_than_any_block_fails_the_file_clearly(
    tmp_path, lake, pseudonymizer, monkeypatch
):
    monkeypatch.setattr(process_mod, "read_block_size", lambda: 1 << 10)
    monkeypatch.setattr(process_mod, "MAX_BLOCK_SIZE", 4 << 10)
    content = DP_HEADER + f"\n{GOOD}\n2022-01-03,1002,c002,s1,{'Y' * 10_000},True,1,1\n"
    res = _one(tmp_path, lake, pseudonymizer, content)
    assert res.status == "not-a-report"
    assert "record is larger than" in res.error
    assert lake.list(Zone.STAGE2P) == []


# -- files that fail clearly -----------------------------------------------------------


def test_missing_and_extra_columns_are_named(tmp_path, lake, pseudonymizer):
    header = DP_HEADER.replace(",num_resources_accessed", ",favourite_colour")
    res = _one(tmp_path, lake, pseudonymizer, header + f"\n{GOOD}\n")
    assert res.status == "header-mismatch"
    assert "missing columns: num_resources_accessed" in res.error
    assert "unknown columns: favourite_colour" in res.error
    assert lake.list(Zone.STAGE2P) == []


def test_wrong_report_columns_are_a_clear_error(tmp_path, lake, pseudonymizer):
    # a resource-usage file saved under a daily-participation name
    content = RU_HEADER + "\n2022-01-03,1001,c001,s1,A,app,Math,r1,3\n"
    res = _one(tmp_path, lake, pseudonymizer, content)
    assert res.status == "header-mismatch"
    assert "unknown columns: resource_type, resource_name, resource_id, num_access" in res.error


def test_headerless_file_never_echoes_its_first_row(tmp_path, lake, pseudonymizer):
    res = _one(
        tmp_path, lake, pseudonymizer, "2022-01-03,S98765,c98765,s1,A,True,1,1\n" + GOOD + "\n"
    )
    assert res.status == "not-a-report" and "header" in res.error
    assert "S98765" not in res.error and "c98765" not in res.error
    assert lake.list(Zone.STAGE2P) == []


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("<!DOCTYPE html>\n<html><body>Please log in</body></html>\n", "HTML"),
        ('{"error": "unauthorized", "detail": "token expired"}\n', "JSON"),
        ('[{"date": "2022-01-03"}, {"date": "2022-01-04"}]', "JSON"),
        ("\ufeff" + DP_HEADER + "\n" + GOOD + "\n", None),  # control: a real report
    ],
    ids=["html", "json-object", "json-array", "control"],
)
def test_html_or_json_saved_as_csv(tmp_path, lake, pseudonymizer, content, expected):
    res = _one(tmp_path, lake, pseudonymizer, content)
    if expected is None:
        assert res.status == "processed"
        return
    assert res.status == "not-a-report" and expected in res.error
    assert "nothing of" in res.error


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ((DP_HEADER + "\n" + GOOD + "\n").encode("utf-16"), "UTF-16"),
        ((DP_HEADER.replace("school_name", "schöol_name") + "\n").encode("latin-1"), "UTF-8"),
    ],
    ids=["utf16", "latin1-header"],
)
def test_wrong_encoding_is_a_clear_error(tmp_path, lake, pseudonymizer, content, expected):
    res = _one(tmp_path, lake, pseudonymizer, content)
    assert res.status == "not-a-report" and expected in res.error


def test_unexpected_failure_names_the_file_without_row_data(
    tmp_path, lake, pseudonymizer, monkeypatch, caplog
):
    def boom(*_a, **_k):
        raise pa.ArrowInvalid("CSV conversion error: row '2022-01-03,S55555,...'")

    monkeypatch.setattr(process_mod, "read_batches", boom)
    res = _one(tmp_path, lake, pseudonymizer, DP_HEADER + f"\n{GOOD}\n")
    assert res.status == "error" and "ArrowInvalid: CSV conversion error" in res.error
    assert "S55555" not in res.error
    logged = [r.getMessage() for r in caplog.records]
    assert any("test_bad_input.py" in m for m in logged)  # the stack, for debugging ...
    assert not any("S55555" in m or r.exc_info for m, r in zip(logged, caplog.records))
    assert pipeline.pending(lake)  # not recorded: retried next run


def test_every_line_is_accounted_for(tmp_path, lake, pseudonymizer):
    """No silent loss: written + quarantined (+ swallowed lines) = data lines, over a mixed file."""
    lines = [GOOD] * 5 + [
        "2022-01-03,1002,c002,s1,A,True,1",
        "2022-01-03,1003,c003,s1,A,maybe,1,1",
        "2022-02-30,1004,c004,s1,A,True,1,1",
        "2022-01-03,1005,c005,s1,A,True,1.5,1",
        "2022-01-03,1006,c006,s1,A,True,,1",  # blank integer: null, not an error
        "2022-01-03,,c007,s1,A,True,1,1",  # blank sis_id: null
    ]
    res = _one(tmp_path, lake, pseudonymizer, DP_HEADER + "\n" + "\n".join(lines) + "\n")
    assert res.rows_written + res.rows_quarantined == len(lines)
    assert (res.rows_written, res.rows_quarantined) == (7, 4)
    assert read_table(lake, "daily_participation").num_rows == 7


def test_failed_files_fail_the_run_naming_them(tmp_path, lake, pseudonymizer):
    src = str(tmp_path / "src")
    write(src, DP, "<html>oops</html>\n")
    write(src, RU, RU_HEADER + "\n2022-01-03,1001,c001,s1,A,app,Math,r1,3\n")
    _, _, processed = run(lake, src, pseudonymizer)
    assert [f.name for f in processed.failed] == [DP]
    assert read_table(lake, "resource_usage").num_rows == 1  # the good file is committed
    from flows.clever_participation import FilesFailed

    msg = "; ".join(f"{f.name}: {f.error}" for f in processed.failed)
    assert DP in msg and "HTML" in msg
    assert issubclass(FilesFailed, RuntimeError)


# -- issue 16 item 2 / issue 13: no data in errors, compressed files, the floor ---------


def test_malformed_row_with_bytes_that_are_not_utf8_is_quarantined(
    tmp_path, lake, pseudonymizer, caplog
):
    """pyarrow cannot hand such a row to the invalid-row handler and raises a parse error
    quoting it; the file used to fail whole (0 rows) with the row in the log."""
    content = (
        (DP_HEADER + f"\n{GOOD}\n").encode()
        + b"2022-01-03,LEAKSIS0001,LEAK-UUID-0001,s1,Caf\xe9,True,1,1,9\n"
        + b"2022-01-03,1004,c004,s1,Caf\xe9,True,1,1\n"  # right field count, not UTF-8
        + (GOOD + "\n").encode()
    )
    res = _one(tmp_path, lake, pseudonymizer, content)
    assert (res.status, res.rows_written, res.rows_quarantined) == ("processed", 2, 2)
    rows = _quarantine(lake, res)
    assert [(r["line"], r["reason"]) for r in rows] == [
        ("3", "expected 8 fields, got 9; bytes that are not UTF-8"),
        ("4", "bytes that are not UTF-8"),
    ]
    assert "LEAKSIS0001" in rows[0]["raw"] and "Caf\ufffd" in rows[0]["raw"]
    assert not any("LEAKSIS0001" in r.getMessage() for r in caplog.records)


def test_glued_header_reports_positions_never_cells_that_could_be_data(
    tmp_path, lake, pseudonymizer
):
    content = DP_HEADER + "2022-01-03,LEAKSIS0002,LEAK-UUID-0002,s1,A,True,1,1\n" + GOOD + "\n"
    res = _one(tmp_path, lake, pseudonymizer, content)
    assert res.status == "header-mismatch"
    for planted in ("LEAKSIS0002", "LEAK-UUID-0002", "2022-01-03"):
        assert planted not in res.error
    assert "missing columns: num_resources_accessed" in res.error
    assert "column 8 (unrecognised, 32 chars)" in res.error
    assert "column 9 (unrecognised, 11 chars)" in res.error


def test_header_cells_that_look_like_names_are_named_unless_they_are_known_data(
    tmp_path, lake, pseudonymizer
):
    # a lower-case id that looks like a column name: the lake knows it (stage2np lookup)
    src = str(tmp_path / "src")
    write(src, DP, DP_HEADER + "\n2022-01-03,abc_student,c001,s1,A,True,1,1\n")
    run(lake, src, pseudonymizer)
    header = DP_HEADER.replace("num_resources_accessed", "num_resources") + ",abc_student"
    write(src, DP, header + ",sis_id\n" + GOOD + ",x,y\n")
    _, _, processed = run(lake, src, pseudonymizer)
    (res,) = processed.files
    assert res.status == "header-mismatch"
    assert "unknown columns: num_resources, column 9 (unrecognised, 11 chars)" in res.error
    assert "sis_id (column 10, a second time)" in res.error
    assert "abc_student" not in res.error


def test_gzip_file_named_csv_is_read_and_kept_as_received(tmp_path, lake, pseudonymizer):
    import gzip

    data = gzip.compress((DP_HEADER + f"\n{GOOD}\n{GOOD.replace('1001', '1002')}\n").encode())
    res = _one(tmp_path, lake, pseudonymizer, data)
    assert (res.status, res.rows_written, res.compression) == ("processed", 2, "gzip")
    (raw,) = lake.list(Zone.STAGE1NP)
    assert lake.read_bytes(Zone.STAGE1NP, raw.key) == data  # stage1np: bytes as received


def test_truncated_gzip_is_a_clear_error(tmp_path, lake, pseudonymizer):
    import gzip

    data = gzip.compress((DP_HEADER + "\n" + (GOOD + "\n") * 5000).encode())
    res = _one(tmp_path, lake, pseudonymizer, data[: len(data) // 2])
    assert res.status == "not-a-report"
    assert "gzip file is truncated or corrupt" in res.error
    assert lake.list(Zone.STAGE2P) == []


def test_zip_archive_named_csv_says_what_to_do(tmp_path, lake, pseudonymizer):
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("report.csv", DP_HEADER + f"\n{GOOD}\n")
    res = _one(tmp_path, lake, pseudonymizer, buf.getvalue())
    assert res.status == "not-a-report"
    assert "zip archive" in res.error and "unzip it" in res.error and "skip it" in res.error


def test_a_small_file_may_have_a_few_bad_rows(tmp_path, lake, pseudonymizer):
    """3 bad rows of 33 (9%, above the 1% default share): the 30 good rows are written."""
    good = [GOOD.replace("1001", str(2000 + i)) for i in range(30)]
    bad = ["2022-01-03,1002,c002,s1,A,True,1"] * 3
    res = _one(tmp_path, lake, pseudonymizer, DP_HEADER + "\n" + "\n".join(good + bad) + "\n", 0.01)
    assert (res.status, res.rows_written, res.rows_quarantined) == ("processed", 30, 3)
    # ... but never a file that is mostly bad: 3 bad of 5 stays a failure
    res = _one(
        tmp_path / "2",
        lake.__class__(str(tmp_path / "l2")),
        pseudonymizer,
        DP_HEADER + "\n" + "\n".join(good[:2] + bad) + "\n",
        0.01,
    )
    assert (res.status, res.rows_written) == ("too-many-bad-rows", 0)


def test_too_many_bad_rows_names_the_settings_and_the_quarantine_file(
    tmp_path, lake, pseudonymizer, monkeypatch
):
    monkeypatch.setenv("EDULAKE_MAX_QUARANTINE_ROWS_FLOOR", "2")
    good = [GOOD.replace("1001", str(2000 + i)) for i in range(30)]
    bad = ["2022-01-03,1002,c002,s1,A,True,1"] * 3
    res = _one(tmp_path, lake, pseudonymizer, DP_HEADER + "\n" + "\n".join(good + bad) + "\n", 0.01)
    assert (res.status, res.rows_written) == ("too-many-bad-rows", 0)
    assert lake.list(Zone.STAGE2P) == []
    for text in (
        "EDULAKE_MAX_QUARANTINE_SHARE",
        "max_quarantine_share",
        "EDULAKE_MAX_QUARANTINE_ROWS_FLOOR",
        "up to 2 bad rows, if fewer than half",
        res.quarantine_file,
    ):
        assert text in res.error


def test_gzip_that_expands_too_far_is_refused(tmp_path, lake, pseudonymizer, monkeypatch):
    import gzip

    import edulake.core.csvproc as csvproc

    monkeypatch.setattr(csvproc, "MIN_GZIP_LIMIT", 1 << 16)  # small, so the test stays small
    data = gzip.compress((DP_HEADER + "\n" + (GOOD + "\n") * 20_000).encode())
    assert 200 * len(data) < 20_000 * len(GOOD)  # compresses better than 200x
    res = _one(tmp_path, lake, pseudonymizer, data)
    assert res.status == "not-a-report" and "decompression bomb" in res.error
    assert lake.list(Zone.STAGE2P) == []
