"""The transform, config, windows and plan as plain functions (no Prefect, no HTTP)."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

from edulake.demo.libinsight_server import LibInsightServer
from edulake.sources.libinsight.auth import ClientCredentials
from edulake.sources.libinsight.config import (
    DatasetConfig,
    load_dataset_config,
    snake_case,
    unique_name,
)
from edulake.sources.libinsight.transform import SchemaState, coerce, fix_mojibake, transform
from edulake.sources.libinsight.windows import NoStartError, Window, plan_range, split_windows

D = dt.date
CFG = load_dataset_config("reference_desk")
# The discovery path: unknown fields become columns (an explicit choice; the default holds them).
ADD = CFG.model_copy(update={"unknown_fields": "add", "on_drift": "warn"})


def rec(i: int, **kw):
    base = {
        "_id": i,
        "_start_date": "2023-01-05 10:15:00",
        "_entered_by": "Maria Lopez",
        "Question Type": ["Reference"],
        "Patron Type": ["Faculty"],
        "Format": ["Chat"],
        "Topics Covered": ["Databases", "Citations"],
        "Duration (in minutes)": "15",
        "Comments/Notes": "line one\r\nline two",
        "research": "History",
        "topic": "primary sources",
        "walkins": "2",
        "scans": 1,
        "reformat": "",
    }
    base.update(kw)
    return base


def test_snake_case_and_collisions():
    assert snake_case("Duration (in minutes)") == "duration_in_minutes"
    assert snake_case("Comments/Notes") == "comments_notes"
    assert snake_case("_entered_by") == "entered_by"
    assert snake_case("Caf\u00e9 Visits") == "cafe_visits"
    assert snake_case("2nd Contact") == "f_2nd_contact"
    assert snake_case("???") == "field"
    assert unique_name("topic", {"topic", "topic_2"}) == "topic_3"


def test_reference_desk_types_and_quirks(pseudonymizer):
    r = transform([rec(1), rec(2, **{"Duration (in minutes)": 30})], CFG, None, pseudonymizer)
    t = r.table
    assert t.schema.field("start_date").type == pa.timestamp("ms")
    assert t.schema.field("topics_covered").type == pa.list_(pa.string())
    row = t.to_pylist()[0]
    assert row["id"] == 1
    assert row["start_date"] == dt.datetime(2023, 1, 5, 10, 15)
    assert row["question_type"] == "Reference"  # single choice flattened
    assert row["topics_covered"] == ["Databases", "Citations"]  # multi-select stays a list
    assert row["duration_in_minutes"] == 15  # number sent as a string
    assert t.to_pylist()[1]["duration_in_minutes"] == 30
    assert row["comments_notes"] == "line one line two"  # newlines replaced
    assert row["research_topic"] == "History primary sources"  # derived like the seed's
    assert "walkins" not in t.column_names and "scans" not in t.column_names
    assert "entered_by" not in t.column_names
    assert row["entered_by_pseudonym"] == pseudonymizer.pseudonym("Maria Lopez")
    assert r.identities["entered_by"].to_pylist()[0]["value"] == "Maria Lopez"
    assert not r.drift.has_drift


def test_rows_without_start_date_dropped_and_duplicates_collapsed(pseudonymizer):
    records = [rec(1), rec(2, _start_date=""), rec(1, **{"Comments/Notes": "edited"})]
    r = transform(records, CFG, None, pseudonymizer)
    assert r.table["id"].to_pylist() == [1]
    assert r.table["comments_notes"].to_pylist() == ["edited"]  # last occurrence wins
    assert r.drift.dropped_rows == {"no _start_date": 1}
    # nothing is lost: the raw record goes to the protected quarantine with its reason
    assert [(q["reason"], q["record"]["_id"]) for q in r.rejected] == [("no _start_date", 2)]


def test_rejected_records_quarantined_under_the_protected_root(tmp_path):
    import json

    from edulake.core.lake import Lake, Zone
    from edulake.sources.libinsight.pipeline import quarantine_records
    from edulake.sources.libinsight.windows import Window

    lake = Lake(str(tmp_path / "lake"), np_root=str(tmp_path / "np"))
    window = Window(dt.date(2025, 1, 1), dt.date(2025, 12, 31))
    rejected = [{"reason": "no _id", "record": {"_start_date": "2025-02-01 10:00:00"}}]
    key = quarantine_records(lake, "libinsight", "reference_desk", window, rejected)
    assert key == "libinsight/reference_desk/2025-01-01_to_2025-12-31.jsonl"
    line = lake.read_bytes(Zone.QUARANTINE, key).decode().strip()
    assert json.loads(line) == rejected[0]
    assert (tmp_path / "np" / "quarantine" / key).exists()
    assert quarantine_records(lake, "libinsight", "reference_desk", window, []) is None


def test_blank_pii_stays_null_and_multi_value_single_choice_is_reported(pseudonymizer):
    r = transform(
        [rec(1, _entered_by="  ", **{"Question Type": ["Reference", "Technical"]})],
        CFG,
        None,
        pseudonymizer,
    )
    row = r.table.to_pylist()[0]
    assert row["entered_by_pseudonym"] is None
    assert row["question_type"] == "Reference; Technical"
    assert r.drift.multi_in_single == {"question_type": 1}


def test_mojibake_and_coercions():
    assert fix_mojibake("didn\u00e2\u20ac\u2122t") == "didn\u2019t"
    assert fix_mojibake("Caf\u00e9") == "Caf\u00e9"
    assert coerce("1,234", "int64", CFG, [0]) == 1234
    assert coerce(["7"], "int64", CFG, [0]) == 7
    assert coerce("", "int64", CFG, [0]) is None
    assert coerce("2.5", "float64", CFG, [0]) == 2.5
    assert coerce("yes", "bool", CFG, [0]) is True
    assert coerce("2023-02-03", "date", CFG, [0]) == D(2023, 2, 3)


def test_renamed_field_is_a_new_column_and_reported(pseudonymizer):
    renamed = rec(1)
    renamed["Type of Question"] = renamed.pop("Question Type")
    r = transform([renamed], ADD, None, pseudonymizer, today=D(2024, 5, 6))
    assert r.drift.new_fields == [
        {"label": "Type of Question", "column": "type_of_question", "type": "list<string>"}
    ]
    assert r.drift.missing_fields == ["Question Type"]
    assert r.drift.possible_renames == [{"from": "Question Type", "to": "Type of Question"}]
    assert r.table.to_pylist()[0]["type_of_question"] == ["Reference"]
    assert r.table.to_pylist()[0]["question_type"] is None
    assert [c.name for c in r.state.columns] == ["type_of_question"]
    # the next run knows the column: no longer new, still in the table
    again = transform([renamed], ADD, r.state, pseudonymizer)
    assert again.drift.new_fields == []
    assert "type_of_question" in again.table.column_names
    assert any(c.name == "type_of_question" for c in again.spec.output_columns())


def test_alias_maps_a_renamed_label_back_to_its_column(pseudonymizer):
    data = CFG.model_dump()
    for f in data["fields"]:
        if f["label"] == "Question Type":
            f["aliases"] = ["Type of Question"]
    cfg = DatasetConfig.model_validate(data)
    renamed = rec(1)
    renamed["Type of Question"] = renamed.pop("Question Type")
    r = transform([renamed], cfg, None, pseudonymizer)
    assert r.table.to_pylist()[0]["question_type"] == "Reference"
    assert not r.drift.has_drift


def test_new_field_colliding_with_an_existing_column_gets_a_suffix(pseudonymizer):
    r = transform([rec(1, **{"Research": "Law", "ID": "x"})], ADD, None, pseudonymizer)
    cols = {f["label"]: f["column"] for f in r.drift.new_fields}
    assert cols == {"Research": "research_2", "ID": "id_2"}
    row = r.table.to_pylist()[0]
    assert row["research"] == "History" and row["research_2"] == "Law"


def test_type_change_is_reported_and_values_kept_not_nulled(pseudonymizer):
    r = transform(
        [rec(1), rec(2, **{"Duration (in minutes)": "about ten"})], CFG, None, pseudonymizer
    )
    assert r.drift.type_changes == [
        {
            "column": "duration_in_minutes",
            "expected": "int64",
            "count": 1,
            "kept_in": "duration_in_minutes_as_string",
        }
    ]
    rows = r.table.to_pylist()
    assert rows[1]["duration_in_minutes"] is None
    assert rows[1]["duration_in_minutes_as_string"] == "about ten"
    assert r.drift.has_drift


def test_server_records_transform_cleanly(pseudonymizer):
    records = LibInsightServer().records(D(2023, 1, 1), D(2023, 3, 31))
    r = transform(records, CFG, SchemaState(), pseudonymizer)
    assert r.table.num_rows == len({x["_id"] for x in records if x["_start_date"]})
    assert not r.drift.has_drift
    notes = [n for n in r.table["comments_notes"].to_pylist() if n]
    assert not any("\n" in n or "\u00e2\u20ac" in n for n in notes)


def test_split_windows_at_most_one_year():
    ws = split_windows(D(2020, 2, 29), D(2022, 3, 1))
    assert ws == [
        Window(D(2020, 2, 29), D(2021, 2, 27)),
        Window(D(2021, 2, 28), D(2022, 2, 27)),
        Window(D(2022, 2, 28), D(2022, 3, 1)),
    ]
    assert all(w.days <= 366 for w in ws)
    assert split_windows(D(2022, 1, 1), D(2021, 1, 1)) == []
    assert split_windows(D(2022, 1, 1), D(2022, 12, 31)) == [Window(D(2022, 1, 1), D(2022, 12, 31))]


def test_plan_range():
    today = D(2024, 6, 10)
    assert plan_range(today=today, watermark=D(2024, 6, 2), lookback_days=7) == Window(
        D(2024, 5, 27), D(2024, 6, 9)
    )
    assert plan_range(
        today=today,
        watermark=None,
        lookback_days=7,
        from_date=D(2020, 1, 1),
        to_date=D(2020, 12, 31),
    ) == Window(D(2020, 1, 1), D(2020, 12, 31))
    assert plan_range(today=today, watermark=None, lookback_days=7, initial_from=D(2024, 1, 1)) == (
        Window(D(2024, 1, 1), D(2024, 6, 9))
    )
    assert plan_range(today=today, watermark=D(2024, 6, 20), lookback_days=0) is None
    with pytest.raises(NoStartError, match="backfill"):
        plan_range(today=today, watermark=None, lookback_days=7)


def test_token_renewed_before_expiry_by_the_clock():
    now = [0.0]

    class FakeHttp:
        calls = 0

        def request(self, *a, **kw):
            FakeHttp.calls += 1

            class R:
                def json(self):
                    return {"access_token": f"tok-{FakeHttp.calls}-abcdef", "expires_in": 100}

            return R()

    creds = ClientCredentials("/t", "id", "secret-123456", clock=lambda: now[0])
    creds.http = FakeHttp()  # type: ignore[assignment]
    assert creds.headers()["Authorization"] == "Bearer tok-1-abcdef"
    now[0] = 50
    assert creds.headers()["Authorization"] == "Bearer tok-1-abcdef"
    now[0] = 95  # within the renewal margin (10% of 100 s)
    assert creds.headers()["Authorization"] == "Bearer tok-2-abcdef"
    creds.refresh({"Authorization": "Bearer tok-1-abcdef"})  # stale rejection: no new token
    assert FakeHttp.calls == 2
    assert "secret-123456" not in repr(creds)
    assert creds.scrubber.scrub("x tok-2-abcdef secret-123456") == "x *** ***"
