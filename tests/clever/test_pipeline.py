"""The Clever steps as plain functions: land -> process -> lookups, round trips."""

from __future__ import annotations

import glob
import hashlib
import hmac

import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from edulake.connectors.files import FolderSource
from edulake.core.lake import Zone
from edulake.privacy.lookup import read_lookup
from edulake.sources.clever import pipeline
from tests.keys import KEY

from .helpers import DP_HEADER, dp_rows, ru_rows, write

USERS = [("1001", "c001"), ("1002", "c002"), ("", "c003"), ("1004", "c004")]


def run(lake, src_dir, pseudonymizer, **kw):
    src = FolderSource(src_dir)
    found = pipeline.discover(src)
    landed = pipeline.land_reports(lake, src, found.reports)
    processed = pipeline.process_pending(
        lake, pipeline.pending(lake), pseudonymizer, max_quarantine_share=kw.get("share", 0.5)
    )
    return found, landed, processed


def read_table(lake, name):
    root = lake.fs_path(Zone.STAGE2P, f"clever/{name}")
    return ds.dataset(root, format="parquet", partitioning="hive").to_table()


def p(value: str) -> str:
    return hmac.new(KEY.secret, value.encode(), hashlib.sha256).hexdigest()


def test_round_trip_every_zone(tmp_path, lake, pseudonymizer):
    src = str(tmp_path / "src")
    write(
        src,
        "daily-participation/2022-01-03-daily-participation-students.csv",
        dp_rows("2022-01-03", USERS),
    )
    write(
        src,
        "resource-usage/2022-01-03-resource-usage-students.csv",
        ru_rows("2022-01-03", USERS[:2]),
    )
    write(src, "idm-reports/2022-01-03-daily-participation-students.csv", "secret stuff")
    found, landed, processed = run(lake, src, pseudonymizer)

    assert len(found.reports) == 2 and all(r.outcome == "landed" for r in landed)
    # stage1np: bytes unchanged, at the predictable path
    raw = [o.key for o in lake.list(Zone.STAGE1NP)]
    assert any(k.startswith("clever/daily-participation/students/") for k in raw)
    dp_key = next(k for k in raw if "daily-participation" in k)
    assert lake.read_bytes(Zone.STAGE1NP, dp_key).decode() == dp_rows("2022-01-03", USERS)
    assert not any("idm" in k for k in raw)

    # stage2p: partition path exact, pseudonyms keyed, blanks null, role added
    assert [o.key for o in lake.list(Zone.STAGE2P, "clever/daily_participation")] == [
        "clever/daily_participation/date=2022-01-03/2022-01-03-daily-participation-students.parquet"
    ]
    t = read_table(lake, "daily_participation").sort_by("clever_user_id_pseudonym")
    assert "sis_id" not in t.column_names and "clever_user_id" not in t.column_names
    rows = {r["clever_user_id_pseudonym"]: r for r in t.to_pylist()}
    assert rows[p("c001")]["sis_id_pseudonym"] == p("1001")
    assert rows[p("c003")]["sis_id_pseudonym"] is None  # blank stays null
    assert rows[p("c001")]["active"] is True and rows[p("c002")]["active"] is False
    assert {r["role"] for r in rows.values()} == {"students"}
    assert str(t["date"][0]) == "2022-01-03"

    # equal pseudonyms across reports
    ru = read_table(lake, "resource_usage")
    assert set(ru["clever_user_id_pseudonym"].to_pylist()) <= set(rows)

    # stage2np: one row per identity, under the protected root, with the key id
    lk = read_lookup(lake, "clever", "sis_id")
    assert sorted(lk["value"].to_pylist()) == ["1001", "1002", "1004"]
    assert set(lk["key_id"].to_pylist()) == {KEY.key_id}
    assert lake.fs_path(Zone.STAGE2NP).startswith(str(tmp_path / "np"))
    assert processed.lookups == {"clever_user_id": 4, "sis_id": 3}


def test_no_raw_identifier_in_stage2p(tmp_path, lake, pseudonymizer):
    src = str(tmp_path / "src")
    write(
        src,
        "daily-participation/2022-01-03-daily-participation-students.csv",
        dp_rows("2022-01-03", USERS),
    )
    write(
        src,
        "daily-participation/2022-01-03-daily-participation-staff.csv",
        dp_rows("2022-01-03", [("S900", "c900")]).replace("sis_id", "staff_id"),
    )
    run(lake, src, pseudonymizer)
    raw_ids = {v for pair in USERS + [("S900", "c900")] for v in pair if v}
    files = glob.glob(lake.fs_path(Zone.STAGE2P) + "/**/*.parquet", recursive=True)
    assert files
    for f in files:
        blob = open(f, "rb").read()
        values = {str(v) for col in pq.read_table(f).columns for v in col.to_pylist()}
        for raw in raw_ids:
            assert raw.encode() not in blob, f"{raw} in {f}"
            assert raw not in values
    staff = read_table(lake, "daily_participation").filter(ds.field("role") == "staff").to_pylist()
    assert staff[0]["sis_id_pseudonym"] == p("S900")  # staff_id maps to the same column


def test_rerun_is_idempotent(tmp_path, lake, pseudonymizer):
    src = str(tmp_path / "src")
    write(
        src,
        "daily-participation/2022-01-03-daily-participation-students.csv",
        dp_rows("2022-01-03", USERS),
    )
    run(lake, src, pseudonymizer)
    before = read_table(lake, "daily_participation").sort_by("clever_user_id_pseudonym")
    lookup_before = read_lookup(lake, "clever", "clever_user_id")
    _, landed, processed = run(lake, src, pseudonymizer)
    assert [r.outcome for r in landed] == ["unchanged"]
    assert processed.files == []
    # a forced reprocess of the same version yields the same table, no duplicates
    entries = (
        list(pipeline.Ledger(lake, "clever").latest().values())
        if hasattr(pipeline, "Ledger")
        else None
    )
    from edulake.core.landing import Ledger

    entries = list(Ledger(lake, "clever").latest().values())
    pipeline.process_pending(lake, entries, pseudonymizer)
    after = read_table(lake, "daily_participation").sort_by("clever_user_id_pseudonym")
    assert after.equals(before)
    assert read_lookup(lake, "clever", "clever_user_id").equals(lookup_before)


def test_changed_file_relanded_and_replaces_its_rows(tmp_path, lake, pseudonymizer):
    src = str(tmp_path / "src")
    name = "daily-participation/2022-01-03-daily-participation-students.csv"
    multi = (
        DP_HEADER
        + "\n"
        + "\n".join(
            [
                "2022-01-03,1001,c001,s1,A,True,1,1",
                "2022-01-04,1001,c001,s1,A,True,2,1",
            ]
        )
        + "\n"
    )
    path = write(src, name, multi)
    run(lake, src, pseudonymizer)
    assert {o.key.split("/")[2] for o in lake.list(Zone.STAGE2P, "clever/daily_participation")} == {
        "date=2022-01-03",
        "date=2022-01-04",
    }
    # the same file comes back changed: one date only, other values
    write(src, name, DP_HEADER + "\n2022-01-03,1001,c001,s1,A,True,9,9\n")
    import os

    os.utime(path, (1e9, 1e9))
    _, landed, processed = run(lake, src, pseudonymizer)
    assert [r.outcome for r in landed] == ["new-version"]
    assert processed.stale_removed == 1
    t = read_table(lake, "daily_participation")
    assert t.num_rows == 1 and t["num_logins"].to_pylist() == [9]
    assert processed.changed["daily_participation"] == ["2022-01-03", "2022-01-04"]
    # the first version is still in stage1np, beside the new one
    assert len(lake.list(Zone.STAGE1NP, "clever/daily-participation")) == 2


def test_bad_rows_quarantined_with_file_line_reason(tmp_path, lake, pseudonymizer):
    src = str(tmp_path / "src")
    text = (
        DP_HEADER
        + "\n"
        + "\n".join(
            [
                "2022-01-03,1001,c001,s1,A,True,1,1",
                "2022-01-03,1002,c002,s1,A,True,notanint,1",  # line 3: bad integer
                "2022-13-45,1003,c003,s1,A,True,1,1",  # line 4: bad date
                "2022-01-03,1004,c004,s1,A,True,1",  # line 5: field count
                "2022-01-1,1005,c005,s1,A,FALSE,0,0",  # unpadded date: fine
                "2022-01-03,1006,c006,s1,A,maybe,0,0",  # line 7: bad boolean
            ]
        )
        + "\n"
    )
    write(src, "daily-participation/2022-01-03-daily-participation-students.csv", text)
    _, _, processed = run(lake, src, pseudonymizer, share=0.9)
    res = processed.files[0]
    assert (res.rows_read, res.rows_written, res.rows_quarantined) == (6, 2, 4)
    assert res.mode == "exact"
    q = lake.read_bytes(Zone.QUARANTINE, res.quarantine_file).decode()
    import csv
    import io

    rows = list(csv.DictReader(io.StringIO(q)))
    assert [(r["line"], r["reason"]) for r in rows] == [
        ("3", "num_logins: not a valid int64"),
        ("4", "date: not a valid date"),
        ("5", "expected 8 fields, got 7"),
        ("7", "active: not a valid bool"),
    ]
    assert all(r["source_file"].endswith("students.csv") for r in rows)
    # quarantine lives under the protected root, never beside stage2p
    assert lake.store(Zone.QUARANTINE) is lake.protected
    dates = sorted(str(d) for d in read_table(lake, "daily_participation")["date"].to_pylist())
    assert dates == ["2022-01-01", "2022-01-03"]


def test_too_many_bad_rows_fails_the_file_only(tmp_path, lake, pseudonymizer):
    src = str(tmp_path / "src")
    bad = DP_HEADER + "\n2022-01-03,1,c1,s1,A,True,x,1\n2022-01-03,2,c2,s1,A,True,1,1\n"
    write(src, "daily-participation/2022-01-03-daily-participation-students.csv", bad)
    write(
        src,
        "daily-participation/2022-01-03-daily-participation-teachers.csv",
        dp_rows("2022-01-03", USERS),
    )
    _, _, processed = run(lake, src, pseudonymizer, share=0.1)
    failed = processed.failed
    assert [f.name.split("/")[1] for f in failed] == ["2022-01-03-daily-participation-students.csv"]
    assert "50.0%" in failed[0].error and "above the limit" in failed[0].error
    keys = [o.key for o in lake.list(Zone.STAGE2P)]
    assert keys and all("teachers" in k for k in keys)
    # not recorded as processed: it is reported again next run
    assert len(pipeline.pending(lake)) == 1


def test_header_mismatch_is_a_clear_error_and_nothing_reaches_stage2(tmp_path, lake, pseudonymizer):
    src = str(tmp_path / "src")
    drift = "date,sis_id,clever_user_id,school_name,active,num_logins,num_resources_accessed,favourite_color\n"
    write(
        src,
        "daily-participation/2022-01-03-daily-participation-students.csv",
        drift + "2022-01-03,1,c,s,True,1,1,red\n",
    )
    _, _, processed = run(lake, src, pseudonymizer)
    (res,) = processed.files
    assert res.status == "header-mismatch"
    assert "missing columns: clever_school_id" in res.error
    assert "unknown columns: favourite_color" in res.error
    assert lake.list(Zone.STAGE2P) == []


@pytest.mark.parametrize(
    ("content", "status", "rows"),
    [
        (b"", "empty", 0),
        ((DP_HEADER + "\n").encode(), "processed", 0),
        (("\ufeff" + DP_HEADER + "\n2022-01-03,1,c1,s1,A,True,1,1\n").encode(), "processed", 1),
        (
            (
                DP_HEADER.replace(",", '","').join('""')
                + '\n"2022-01-03","1","c1","s1","A, B","TRUE","1","1"\n'
            ).encode(),
            "processed",
            1,
        ),
    ],
    ids=["empty", "header-only", "bom", "all-quoted"],
)
def test_edge_files(tmp_path, lake, pseudonymizer, content, status, rows):
    src = str(tmp_path / "src")
    write(src, "daily-participation/2022-01-03-daily-participation-students.csv", content)
    _, _, processed = run(lake, src, pseudonymizer)
    (res,) = processed.files
    assert (res.status, res.rows_written) == (status, rows)


def test_non_utf8_row_quarantined(tmp_path, lake, pseudonymizer):
    src = str(tmp_path / "src")
    content = (
        DP_HEADER + "\n2022-01-03,1,c1,s1,A,True,1,1\n"
    ).encode() + b"2022-01-03,2,c2,s1,\xff\xfeX,True,1,1\n"
    write(src, "daily-participation/2022-01-03-daily-participation-students.csv", content)
    _, _, processed = run(lake, src, pseudonymizer, share=0.9)
    (res,) = processed.files
    assert (res.rows_written, res.rows_quarantined, res.mode) == (1, 1, "exact")
    q = lake.read_bytes(Zone.QUARANTINE, res.quarantine_file).decode()
    assert ",3,bytes that are not UTF-8," in q


def test_one_failing_file_does_not_stop_the_others(tmp_path, lake):
    from contextlib import contextmanager

    from edulake.sources.clever.pipeline import LandingFailed

    src_dir = str(tmp_path / "src")
    for day in ("2022-01-03", "2022-01-04", "2022-01-05"):
        write(
            src_dir,
            f"daily-participation/{day}-daily-participation-students.csv",
            dp_rows(day, USERS),
        )

    class Flaky(FolderSource):
        @contextmanager
        def _open(self, file):
            if "01-04" in file.name:
                raise ConnectionError("dropped")
            if "01-05" in file.name:
                raise FileNotFoundError(file.name)
            with super()._open(file) as f:
                yield f

    src = Flaky(src_dir)
    found = pipeline.discover(src)
    with pytest.raises(LandingFailed, match="1 of 3 files could not be landed") as info:
        pipeline.land_reports(lake, src, found.reports, concurrency=1)
    assert isinstance(info.value.__cause__, ConnectionError)
    assert [o.key.rsplit("/", 1)[1] for o in lake.list(Zone.STAGE1NP)] == [
        "2022-01-03-daily-participation-students.csv"
    ]


def test_retry_condition_looks_through_landing_failures():
    from edulake.connectors.sftp import SftpAuthError, SftpTransientError
    from edulake.sources.clever.pipeline import LandingFailed
    from tasks.clever import retry_if_transient

    class State:
        def __init__(self, data):
            self.data = data

    def wrapped(cause):
        try:
            raise LandingFailed("x") from cause
        except LandingFailed as exc:
            return exc

    assert retry_if_transient(None, None, State(wrapped(SftpTransientError("drop"))))
    assert not retry_if_transient(None, None, State(wrapped(SftpAuthError("bad key"))))


def test_signed_and_oversized_integers(tmp_path, lake, pseudonymizer):
    src = str(tmp_path / "src")
    text = (
        DP_HEADER
        + "\n"
        + "\n".join(
            [
                "2022-01-03,1001,c001,s1,A,True,+2,1",  # explicit plus: fine
                "2022-01-03,1002,c002,s1,A,True,99999999999999999999,1",  # line 3: overflows int64
                "2022-01-03,1003,c003,s1,A,True, 7 ,1",  # padded: fine
            ]
        )
        + "\n"
    )
    write(src, "daily-participation/2022-01-03-daily-participation-students.csv", text)
    _, _, processed = run(lake, src, pseudonymizer, share=0.9)
    (res,) = processed.files
    assert (res.status, res.rows_written, res.rows_quarantined) == ("processed", 2, 1)
    assert sorted(read_table(lake, "daily_participation")["num_logins"].to_pylist()) == [2, 7]
    q = lake.read_bytes(Zone.QUARANTINE, res.quarantine_file).decode()
    assert ",3,num_logins: not a valid int64," in q
