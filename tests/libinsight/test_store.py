"""Landing and the incremental month-partitioned table, end to end without Prefect."""

from __future__ import annotations

import csv
import datetime as dt
import io

import pyarrow as pa
import pytest

from edulake.core.lake import Zone
from edulake.core.landing import Ledger
from edulake.privacy.lookup import read_lookup
from edulake.sources.libinsight.config import load_dataset_config
from edulake.sources.libinsight.pipeline import fetch_and_land, process_range
from edulake.sources.libinsight.store import (
    read_table,
    read_watermark,
    write_months,
    write_watermark,
)
from edulake.sources.libinsight.transform import transform
from edulake.sources.libinsight.windows import Window, split_windows

D = dt.date
CFG = load_dataset_config("reference_desk")


def run(client, lake, pseudonymizer, window):
    fetched = fetch_and_land(client, lake, 12345, split_windows(window.start, window.end))
    return fetched, process_range(lake, CFG, fetched.keys, window, pseudonymizer)


@pytest.mark.slow
def test_backfill_then_overlapping_incremental_adds_no_duplicates(
    server, make_client, lake, pseudonymizer
):
    client = make_client(server)
    fetched, first = run(client, lake, pseudonymizer, Window(D(2022, 11, 1), D(2023, 2, 28)))
    expected = {
        r["_id"] for r in server.records(D(2022, 11, 1), D(2023, 2, 28)) if r["_start_date"]
    }
    assert sorted(first.months) == ["2022-11", "2022-12", "2023-01", "2023-02"]
    assert [o.key for o in lake.list(Zone.STAGE2P, "libinsight/reference_desk")] == [
        f"libinsight/reference_desk/month={m}/part-0.parquet"
        for m in ["2022-11", "2022-12", "2023-01", "2023-02"]
    ]
    # raw pages landed unchanged, one ledger entry each
    raw = lake.read_bytes(Zone.STAGE1NP, fetched.pages[0].key)
    assert b'"type": "success"' in raw
    assert len(Ledger(lake, "libinsight").entries()) == len(fetched.pages)

    server.settings.revision = 1  # late edits inside the overlap
    again, second = run(client, lake, pseudonymizer, Window(D(2023, 2, 1), D(2023, 3, 31)))
    assert sorted(second.months) == ["2023-02", "2023-03"]  # history untouched
    table = read_table(lake, second.spec)
    ids = table["id"].to_pylist()
    expected |= {
        r["_id"] for r in server.records(D(2023, 3, 1), D(2023, 3, 31)) if r["_start_date"]
    }
    assert len(ids) == len(set(ids)) == len(expected)
    assert set(ids) == expected
    edited = {r["id"]: r["comments_notes"] for r in table.to_pylist() if r["id"] % 7 == 0}
    feb = [
        i
        for i in edited
        if dt.date(2023, 2, 1) <= dt.date(2000, 1, 1) + dt.timedelta(days=i // 1000)
    ]
    assert feb and all("(edited r1)" in (edited[i] or "") for i in feb)
    # pages of January (outside the overlap) were not fetched again
    assert all("2023-02-01_2023-03-31" in p.key for p in again.pages)

    # the same run again lands nothing new and changes nothing
    before = read_table(lake, second.spec)
    third, _ = run(client, lake, pseudonymizer, Window(D(2023, 2, 1), D(2023, 3, 31)))
    assert {p.outcome for p in third.pages} == {"same-content"}
    assert read_table(lake, second.spec).equals(before)

    lookup = read_lookup(lake, "libinsight", "entered_by")
    assert lookup.num_rows == 6  # one row per staff member, not per record
    assert lake.exists(Zone.STAGE2NP, "libinsight/entered_by_lookup/lookup.parquet")

    text = lake.read_bytes(Zone.EXPORTS, "libinsight/reference_desk.csv").decode()
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == len(expected)
    assert "entered_by_pseudonym" in rows[0] and "entered_by" not in rows[0]
    assert "Maria Lopez" not in text


def test_record_moved_to_another_month_and_deleted_record(lake, pseudonymizer):
    def rows(*recs):
        return transform(
            [{"_id": i, "_start_date": d, "_entered_by": "A B"} for i, d in recs],
            CFG,
            None,
            pseudonymizer,
        )

    first = rows((1, "2023-01-10 09:00:00"), (2, "2023-01-11 09:00:00"), (3, "2023-02-01 09:00:00"))
    write_months(
        lake, first.spec, first.table, Window(D(2023, 1, 1), D(2023, 2, 28)), "id", "start_date"
    )
    # record 1 moved to March, seen by an incremental run over March only
    second = rows((1, "2023-03-02 09:00:00"))
    written = write_months(
        lake, second.spec, second.table, Window(D(2023, 3, 1), D(2023, 3, 31)), "id", "start_date"
    )
    assert written == {"2023-01": 1, "2023-03": 1}  # February untouched
    # record 2 deleted upstream: a refetch of January returns nothing
    empty = rows()
    written = write_months(
        lake, empty.spec, empty.table, Window(D(2023, 1, 1), D(2023, 1, 31)), "id", "start_date"
    )
    assert written == {"2023-01": 0}
    table = read_table(lake, second.spec)
    assert sorted(zip(table["id"].to_pylist(), table["start_date"].to_pylist(), strict=True)) == [
        (1, dt.datetime(2023, 3, 2, 9)),
        (3, dt.datetime(2023, 2, 1, 9)),
    ]
    assert not lake.exists(Zone.STAGE2P, "libinsight/reference_desk/month=2023-01/part-0.parquet")


def test_older_month_files_gain_new_columns_as_nulls(lake, pseudonymizer):
    first = transform([{"_id": 1, "_start_date": "2023-01-10 09:00:00"}], CFG, None, pseudonymizer)
    write_months(
        lake, first.spec, first.table, Window(D(2023, 1, 1), D(2023, 1, 31)), "id", "start_date"
    )
    second = transform(
        [{"_id": 2, "_start_date": "2023-02-10 09:00:00", "Room": "B2"}],
        CFG.model_copy(update={"unknown_fields": "add"}),  # the default holds Room back
        first.state,
        pseudonymizer,
    )
    write_months(
        lake, second.spec, second.table, Window(D(2023, 2, 1), D(2023, 2, 28)), "id", "start_date"
    )
    table = read_table(lake, second.spec)
    assert table.schema.field("room").type == pa.string()
    assert table.select(["id", "room"]).to_pylist() == [
        {"id": 1, "room": None},
        {"id": 2, "room": "B2"},
    ]


def test_watermark_round_trip(lake):
    assert read_watermark(lake, "reference_desk", 12345) is None
    write_watermark(lake, "reference_desk", 12345, D(2024, 3, 1), "run-1")
    assert read_watermark(lake, "reference_desk", 12345) == D(2024, 3, 1)
    assert lake.exists(Zone.SYSTEM, "libinsight/reference_desk/watermark-12345.json")
