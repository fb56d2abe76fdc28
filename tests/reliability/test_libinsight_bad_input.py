"""The bad input catalogue, LibInsight half: every bad API response has one clear outcome.

Outcomes: *processed* (rows in stage2p, anything odd reported), *quarantined* (the record,
raw, with the reason, as JSON lines under the protected quarantine zone), or *a clear
error* that names the dataset, window and page and says what is wrong, without quoting a
byte of the body. An error stops the run before processing: nothing of the fetch reaches
stage2p and the watermark stays, so the next good run fetches the range again and repairs
everything. Every case drives real HTTP against the local LibInsight server.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from edulake.connectors.http.client import BadBodyError, HttpError, RetryPolicy
from edulake.connectors.http.paging import PageFormatError, PagesChangedError
from edulake.core.lake import Lake, Zone
from edulake.demo.libinsight_server import (
    DEMO_CLIENT_ID,
    DEMO_CLIENT_SECRET,
    LibInsightServer,
)
from edulake.sources.libinsight.api import LibInsightClient
from edulake.sources.libinsight.config import load_dataset_config
from edulake.sources.libinsight.pipeline import fetch_and_land, process_range
from edulake.sources.libinsight.store import read_table, read_watermark
from edulake.sources.libinsight.windows import Window
from tests.servers.libinsight import libinsight_server

pytestmark = pytest.mark.slow  # a real HTTP server on 127.0.0.1

D = dt.date
CFG = load_dataset_config("reference_desk")
FAST = RetryPolicy(base_delay=0.01, max_delay=0.05, max_attempts=3)
W = Window(D(2022, 1, 1), D(2022, 3, 31))  # about 5 pages of 100
WHERE = "dataset 12345 window 2022-01-01..2022-03-31"
STAFF = ("Maria Lopez", "Jamal Carter", "Anne O'Neil", "Wei Zhang", "Priya Natarajan")


@contextmanager
def client_for(srv: LibInsightServer) -> Iterator[LibInsightClient]:
    client = LibInsightClient(srv.base_url, DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, retry=FAST)
    try:
        yield client
    finally:
        client.close()


def assert_clean_message(msg: str, srv: LibInsightServer) -> None:
    """An error message quotes no body, no record data, no secret; it is no bare traceback."""
    for leak in (*STAFF, "_entered_by", "Scheduled maintenance", "<html", DEMO_CLIENT_SECRET):
        assert leak not in msg, f"the message quotes {leak!r}"
    for token in srv.issued_tokens:
        assert token not in msg
    assert not msg.startswith(("Expecting", "KeyError", "'")), msg


def expected_ids(srv: LibInsightServer, window: Window) -> set[int]:
    return {r["_id"] for r in srv.records(window.start, window.end) if r["_start_date"]}


# -- clear errors ------------------------------------------------------------------------

ERRORS = [
    # (bad body, page, exception, what the message says)
    ("html", 2, BadBodyError, r"HTTP 200 but the body is not JSON \(text/html, \d+ bytes; an HTML"),
    ("html", 1, BadBodyError, r"not JSON \(text/html, \d+ bytes; an HTML/XML page: a login"),
    ("html-as-json", 2, BadBodyError, r"not JSON \(application/json, \d+ bytes; an HTML"),
    ("truncated", 2, BadBodyError, r"not JSON \(application/json, \d+ bytes; JSON cut off"),
    ("empty-body", 2, BadBodyError, r"not JSON \(application/json, 0 bytes; an empty body"),
    ("not-envelope", 2, PageFormatError, r"the body is a list, not a LibInsight envelope"),
    ("no-type", 2, PageFormatError, r"the envelope's type is missing"),
    ("no-payload", 2, PageFormatError, r"payload is missing"),
    ("payload-not-object", 2, PageFormatError, r"payload is a list, not an object"),
    ("records-missing", 2, PageFormatError, r"payload\.records is missing"),
    ("records-not-list", 2, PageFormatError, r"payload\.records is an object, not a list"),
    ("total-missing", 1, PageFormatError, r"payload\.total_pages is missing"),
    ("total-missing", 3, PageFormatError, r"payload\.total_pages is missing"),
    ("total-text", 2, PageFormatError, r"payload\.total_pages is a string, not a count"),
    ("total-negative", 1, PageFormatError, r"payload\.total_pages is negative, not a count"),
]


@pytest.mark.parametrize(("mode", "page", "exc", "says"), ERRORS)
def test_bad_body_fails_clearly_naming_dataset_window_and_page(mode, page, exc, says):
    with libinsight_server(bad_pages={page: mode}) as srv, client_for(srv) as client:
        with pytest.raises(exc, match=says) as info:
            client.data_grid(12345, W, concurrency=3)
        msg = str(info.value)
        assert msg.startswith(f"{WHERE} page {page}: "), msg
        assert_clean_message(msg, srv)
        if isinstance(info.value, HttpError):
            assert "/v1.0/custom-dataset/12345/data-grid" in msg and "page=" in msg
        # not retried by the client: a bad body is not a network hiccup
        assert srv.count("data") <= 6


@pytest.mark.parametrize(
    ("mode", "says"),
    [
        ("totals-grown", r"page 1 said \d+ pages/\d+ records, page 2 says \d+/\d+"),
        ("repeat-first", r"records announced but \d+ distinct arrived: 100 missing \(100 records"),
        ("empty", r"announced but \d+ distinct arrived: \d+ missing \(empty page\(s\) 2\)"),
    ],
)
def test_pages_that_keep_contradicting_each_other_fail_after_fetching_again(mode, says):
    with libinsight_server(bad_pages={2: mode}) as srv, client_for(srv) as client:
        with pytest.raises(PagesChangedError, match=says) as info:
            client.data_grid(12345, W, concurrency=3)
        msg = str(info.value)
        assert msg.startswith(WHERE) and "still so after 2 new fetch(es)" in msg
        assert "Nothing of this fetch was processed" in msg
        assert_clean_message(msg, srv)
        # three whole fetches: the first and two new ones
        assert sum(1 for e in srv.log if e["kind"] == "data" and e["page"] == 1) == 3


@pytest.mark.parametrize("mode", ["totals-grown", "repeat-first", "empty"])
def test_pages_that_changed_once_are_fetched_again_and_processed(mode, lake, pseudonymizer):
    with libinsight_server(bad_pages={2: mode}, bad_times=1) as srv, client_for(srv) as client:
        fetched = fetch_and_land(client, lake, 12345, [W])
        assert fetched.restarts == 1
        # only the pages of the consistent fetch are processed: one per page number
        assert [p.page for p in fetched.pages] == list(range(1, len(fetched.pages) + 1))
        result = process_range(lake, CFG, fetched.keys, W, pseudonymizer)
        ids = read_table(lake, result.spec)["id"].to_pylist()
        assert sorted(ids) == sorted(expected_ids(srv, W))
        assert result.drift.duplicate_records == 0


# -- processed, and reported -------------------------------------------------------------


def _drop_page_two(total: dict[str, int]):
    """A server that serves page 2 empty and counts only what it serves (nothing missing)."""

    def rewrite(page: int, body: dict[str, Any]) -> dict[str, Any]:
        p = body["payload"]
        if page == 2:
            total["dropped"] = len(p["records"])
            p["records"] = []
        p["total_records"] -= 100  # page 2 of a full range holds 100 records
        return body

    return rewrite


def test_empty_page_in_the_middle_with_consistent_totals_is_processed_and_reported(
    lake, pseudonymizer
):
    seen: dict[str, int] = {}
    with libinsight_server(rewrite=_drop_page_two(seen)) as srv, client_for(srv) as client:
        _, stats = client.data_grid(12345, W)
        assert stats.empty_pages == [2] and stats.restarts == 0
        assert stats.records == stats.announced_records
        fetched = fetch_and_land(client, lake, 12345, [W])
        assert fetched.empty_pages == [f"{W} page 2"]
        assert fetched.summary()["empty pages"] == 1
        result = process_range(lake, CFG, fetched.keys, W, pseudonymizer)
        page_two = {r["_id"] for r in srv.records(W.start, W.end)[100:200]}
        assert seen["dropped"] == 100
        assert set(read_table(lake, result.spec)["id"].to_pylist()) == expected_ids(srv, W) - (
            page_two
        )


def test_total_pages_one_too_many_gives_an_empty_last_page_processed_and_reported(
    lake, pseudonymizer
):
    def one_more(page: int, body: dict[str, Any]) -> dict[str, Any]:
        body["payload"]["total_pages"] += 1
        return body

    with libinsight_server(rewrite=one_more) as srv, client_for(srv) as client:
        fetched = fetch_and_land(client, lake, 12345, [W])
        last = len(fetched.pages)
        assert fetched.empty_pages == [f"{W} page {last}"] and fetched.restarts == 0
        result = process_range(lake, CFG, fetched.keys, W, pseudonymizer)
        assert set(read_table(lake, result.spec)["id"].to_pylist()) == expected_ids(srv, W)


def test_duplicate_id_with_other_content_on_a_later_page_wins_and_is_reported(lake, pseudonymizer):
    first: dict[str, Any] = {}

    def repeat_one(page: int, body: dict[str, Any]) -> dict[str, Any]:
        recs = body["payload"]["records"]
        if page == 1:
            first.update(recs[0])
        if page == 3:
            # the same record again, edited: with totals that stay right (nothing missing)
            recs.append({**first, "Comments/Notes": "edited on page 3"})
        return body

    with libinsight_server(rewrite=repeat_one) as srv, client_for(srv) as client:
        fetched = fetch_and_land(client, lake, 12345, [W])
        assert fetched.duplicate_ids == 1 and fetched.restarts == 0
        result = process_range(lake, CFG, fetched.keys, W, pseudonymizer)
    assert result.drift.duplicate_records == 1
    assert any(r["kind"] == "duplicate ids" for r in result.drift.rows())
    table = read_table(lake, result.spec).to_pylist()
    ids = [r["id"] for r in table]
    assert len(ids) == len(set(ids))  # one row per _id
    (row,) = [r for r in table if r["id"] == first["_id"]]
    assert row["comments_notes"] == "edited on page 3"  # the later page wins


# -- quarantined -------------------------------------------------------------------------


def _damage_records(page: int, body: dict[str, Any]) -> dict[str, Any]:
    """Page 1 gets every kind of bad record; the other pages stay good."""
    if page != 1:
        return body
    r = body["payload"]["records"]
    r[0].pop("_id")
    r[1]["_id"] = None
    r[2]["_id"] = "   "
    r[3]["_id"] = "abc"
    r[4]["_id"] = 2**70  # beyond int64
    r[5]["_start_date"] = "last Tuesday"
    r[6]["_start_date"] = 20220105  # a number, not a date text
    r[7]["_entered_by"] = {"name": "Maria Lopez"}  # personal data of the wrong type
    r[8]["Duration (in minutes)"] = "abc"
    r[9]["Duration (in minutes)"] = [5, 10]  # a list where a number is expected
    r[10]["Comments/Notes"] = {"text": "an object"}  # an object where text is expected
    r[11]["Question Type"] = ["Reference", "Directional"]  # several values, single choice
    r[12]["_start_date"] = r[12]["_start_date"] or "2022-01-03 10:00:00"
    r[12]["Duration (in minutes)"] = 10**30  # beyond int64, not an id
    r.extend(["a string", [1, 2], 42, None])  # entries that are not records
    return body


QUARANTINE_REASONS = {
    0: "no _id",
    1: "no _id",
    2: "no _id",
    3: "bad _id",
    4: "bad _id",
    5: "bad _start_date",
    6: "bad _start_date",
    7: "bad _entered_by (personal data that does not fit its type)",
}


def test_bad_records_are_quarantined_with_reasons_and_bad_values_kept_and_reported(
    tmp_path, lake, pseudonymizer
):
    with libinsight_server(rewrite=_damage_records) as srv, client_for(srv) as client:
        page_one = srv.records(W.start, W.end)[:100]
        fetched = fetch_and_land(client, lake, 12345, [W])
        result = process_range(lake, CFG, fetched.keys, W, pseudonymizer)

    # every entry of every page is accounted for: a row, a quarantined record or a duplicate
    assert result.records == result.rows + result.quarantined + result.drift.duplicate_records
    lines = lake.read_bytes(Zone.QUARANTINE, result.quarantine_key or "").decode().splitlines()
    quarantined = [json.loads(x) for x in lines]
    assert (tmp_path / "np" / "quarantine" / (result.quarantine_key or "")).exists()
    reasons = [q["reason"] for q in quarantined]
    damaged = _damage_records(1, {"payload": {"records": copy.deepcopy(page_one)}})
    for i, reason in QUARANTINE_REASONS.items():
        # the record as received, whole, with the reason
        assert {"reason": reason, "record": damaged["payload"]["records"][i]} in quarantined
    for kind in ("a string", "a list", "a number", "null"):
        assert f"not a JSON object ({kind})" in reasons
    # the server's own records without a date are quarantined too, and nothing else is
    assert set(reasons) <= {*QUARANTINE_REASONS.values(), "no _start_date"} | {
        f"not a JSON object ({k})" for k in ("a string", "a list", "a number", "null")
    }
    assert sum(result.drift.dropped_rows.values()) == result.quarantined

    rows = {r["id"]: r for r in read_table(lake, result.spec).to_pylist()}
    assert not {page_one[i].get("_id") for i in (5, 6, 7)} & set(rows)
    # a value that does not fit a non-personal column: the row stays, the value is kept
    # as text in <column>_as_string and reported as a type change, never silently nulled
    assert rows[page_one[8]["_id"]]["duration_in_minutes"] is None
    assert rows[page_one[8]["_id"]]["duration_in_minutes_as_string"] == "abc"
    assert rows[page_one[9]["_id"]]["duration_in_minutes_as_string"] == "[5, 10]"
    assert rows[page_one[12]["_id"]]["duration_in_minutes_as_string"] == str(10**30)
    assert rows[page_one[10]["_id"]]["comments_notes"] is None
    assert rows[page_one[10]["_id"]]["comments_notes_as_string"] == '{"text": "an object"}'
    assert rows[page_one[11]["_id"]]["question_type"] == "Reference; Directional"
    changes = {t["column"]: t["count"] for t in result.drift.type_changes}
    assert changes == {"duration_in_minutes": 3, "comments_notes": 1}
    assert result.drift.multi_in_single["question_type"] >= 1
    # personal data of the wrong type never reaches stage2p in the clear
    assert "entered_by_as_string" not in result.spec.arrow_schema().names
    for obj in lake.list(Zone.STAGE2P, "libinsight"):
        assert b"Maria Lopez" not in lake.read_bytes(Zone.STAGE2P, obj.key)


def test_a_later_good_run_repairs_the_quarantined_records(lake, pseudonymizer):
    with libinsight_server(rewrite=_damage_records) as srv, client_for(srv) as client:
        fetched = fetch_and_land(client, lake, 12345, [W])
        first = process_range(lake, CFG, fetched.keys, W, pseudonymizer)
        assert first.quarantined > 4
        srv.settings.rewrite = None  # fixed upstream
        fetched = fetch_and_land(client, lake, 12345, [W])
        again = process_range(lake, CFG, fetched.keys, W, pseudonymizer)
        ids = read_table(lake, again.spec)["id"].to_pylist()
        assert len(ids) == len(set(ids))
        assert set(ids) == expected_ids(srv, W)
    # the quarantine file of the range now holds only what is still bad upstream
    lines = lake.read_bytes(Zone.QUARANTINE, again.quarantine_key or "").decode().splitlines()
    assert {json.loads(x)["reason"] for x in lines} == {"no _start_date"}
    assert again.drift.type_changes == []


def test_a_clean_rerun_removes_the_ranges_quarantine_file(lake, pseudonymizer):
    w = Window(D(2022, 1, 3), D(2022, 1, 4))  # no record without a date in these days
    with libinsight_server(rewrite=_damage_records) as srv, client_for(srv) as client:
        first = process_range(
            lake, CFG, fetch_and_land(client, lake, 12345, [w]).keys, w, pseudonymizer
        )
        assert first.quarantine_key and lake.exists(Zone.QUARANTINE, first.quarantine_key)
        srv.settings.rewrite = None
        again = process_range(
            lake, CFG, fetch_and_land(client, lake, 12345, [w]).keys, w, pseudonymizer
        )
    assert again.quarantine_key is None
    assert not lake.exists(Zone.QUARANTINE, first.quarantine_key)


# -- the whole flow: the watermark stays, the next good run repairs --------------------


FLOW_ERRORS = [
    ("html", r"page 2: GET .* not JSON \(text/html"),
    ("truncated", r"page 2: GET .* not JSON \(application/json, \d+ bytes; JSON cut off"),
    ("no-payload", r"page 2: payload is missing"),
    ("records-not-list", r"page 2: payload\.records is an object, not a list"),
    ("total-missing", r"page 2: payload\.total_pages is missing"),
    ("repeat-first", r"records announced but \d+ distinct arrived"),
    ("totals-grown", r"the totals changed during the fetch"),
]


@pytest.mark.usefixtures("prefect_harness")
def test_flow_fails_clearly_keeps_the_watermark_and_a_good_run_repairs(tmp_path, monkeypatch):
    from flows.libinsight_dataset import libinsight_dataset

    monkeypatch.setenv("EDULAKE_LIBINSIGHT_CLIENT_SECRET", DEMO_CLIENT_SECRET)
    root = str(tmp_path / "lake")
    lake = Lake(root)
    with libinsight_server() as srv:
        common = {
            "base_url": srv.base_url,
            "dataset_id": 12345,
            "client_id": DEMO_CLIENT_ID,
            "client_secret_block": None,
            "lake_root": root,
            "demo": True,
            "concurrency": 3,
        }
        libinsight_dataset(**common, from_date=D(2023, 1, 1), to_date=D(2023, 1, 31))
        spec = CFG.table_spec(table=CFG.table_name(12345))
        before = read_table(lake, spec)
        for mode, says in FLOW_ERRORS:
            srv.settings.bad_pages = {2: mode}
            with pytest.raises(Exception, match=says) as info:
                libinsight_dataset(**common, to_date=D(2023, 3, 31))
            assert "dataset 12345 window 2023-01-18..2023-03-31" in str(info.value), mode
            assert_clean_message(str(info.value), srv)
            assert read_watermark(lake, spec.name, 12345) == D(2023, 1, 31), mode
            assert read_table(lake, spec).equals(before), mode  # nothing of it processed
        srv.settings.bad_pages = {}
        summary = libinsight_dataset(**common, to_date=D(2023, 3, 31))
        assert summary["watermark_after"] == "2023-03-31"
        assert summary["duplicate_ids"] == 0 and summary["fetches_started_over"] == 0
        ids = read_table(lake, spec)["id"].to_pylist()
        assert len(ids) == len(set(ids))
        assert set(ids) == expected_ids(srv, Window(D(2023, 1, 1), D(2023, 3, 31)))


@pytest.mark.usefixtures("prefect_harness")
def test_flow_reports_a_fetch_started_over_and_quarantined_records(tmp_path, monkeypatch):
    from flows.libinsight_dataset import libinsight_dataset

    monkeypatch.setenv("EDULAKE_LIBINSIGHT_CLIENT_SECRET", DEMO_CLIENT_SECRET)
    root = str(tmp_path / "lake")
    with libinsight_server(
        bad_pages={2: "totals-grown"}, bad_times=1, rewrite=_damage_records
    ) as srv:
        summary = libinsight_dataset(
            base_url=srv.base_url,
            dataset_id=12345,
            client_id=DEMO_CLIENT_ID,
            client_secret_block=None,
            lake_root=root,
            demo=True,
            from_date=W.start,
            to_date=W.end,
        )
    assert summary["fetches_started_over"] == 1
    assert summary["quarantined"] >= len(QUARANTINE_REASONS) + 4
    assert summary["quarantine"] == "libinsight/reference_desk_12345/2022-01-01_to_2022-03-31.jsonl"
    assert summary["drift"]["dropped_rows"]["bad _id"] == 2
    # quarantined records are not a failure: the range is committed
    assert summary["watermark_after"] == "2022-03-31"
    ids = read_table(Lake(root), CFG.table_spec())["id"].to_pylist()
    assert len(ids) == len(set(ids))
