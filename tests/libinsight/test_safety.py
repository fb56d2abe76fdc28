"""Issues 13 and 16 as plain functions: datasets apart, sane dates, loud drift, closed default."""

from __future__ import annotations

import datetime as dt
import json
from importlib import resources

import pytest
import yaml

from edulake.cli import main as cli_main
from edulake.core import clock
from edulake.core.lake import Lake, Zone
from edulake.privacy.identifiers import is_identifier
from edulake.sources.libinsight.config import DatasetConfig, load_dataset_config
from edulake.sources.libinsight.pipeline import DriftError, process_range
from edulake.sources.libinsight.store import read_watermark, write_watermark
from edulake.sources.libinsight.transform import transform
from edulake.sources.libinsight.windows import Window, plan_range
from edulake.specs import IdentifierPolicyError, load_spec, spec_from_dict
from tasks.libinsight import (
    FutureWatermarkError,
    LegacyTableError,
    TableOwnedError,
    check_legacy_table,
    check_table_owner,
    plan_run,
)

D = dt.date
CFG = load_dataset_config("reference_desk")
STAFF = "Maria Lopez"
KEYS = ["libinsight/dataset-1/p.json"]


def rec(i: int, **kw):
    base = {
        "_id": i,
        "_start_date": "2023-01-05 10:15:00",
        "_entered_by": STAFF,
        "Question Type": ["Reference"],
        "Patron Type": ["Faculty"],
        "Format": ["Chat"],
        "Topics Covered": ["Databases"],
        "Duration (in minutes)": "15",
        "Comments/Notes": "Helped with JSTOR search.",
        "research": "History",
        "topic": "primary sources",
        "walkins": "2",
        "scans": 1,
        "reformat": "",
    }
    base.update(kw)
    return base


def renamed(i: int, old: str, new: str, *, omit: tuple[str, ...] = ()) -> dict:
    r = rec(i)
    r[new] = r.pop(old)
    for label in omit:
        r.pop(label)
    return r


def bundled(*parts: str) -> dict:
    return yaml.safe_load(resources.files("edulake.specs").joinpath(*parts).read_text("utf-8"))


def config(**changes) -> DatasetConfig:
    data = bundled("libinsight", "reference_desk.yaml")
    data.update(changes)
    return DatasetConfig.model_validate(data)


# -- 1. datasets apart ----------------------------------------------------------------------


def test_the_table_identity_includes_the_dataset():
    assert CFG.dataset_id is None
    assert CFG.table_name(28364) == "reference_desk_28364"
    assert CFG.table_name(28365) == "reference_desk_28365"
    bound = config(name="main_desk", dataset_id=28364)
    assert bound.table_name(28364) == "main_desk"


def test_a_bound_config_refuses_another_dataset():
    bound = config(name="main_desk", dataset_id=28364)
    with pytest.raises(ValueError, match=r"bound to dataset 28364.*28365"):
        bound.table_name(28365)


def test_a_dataset_left_in_the_shared_table_is_not_silently_moved(lake):
    """Lakes written before tables were per dataset: refuse the incremental run, say how."""
    write_watermark(lake, "reference_desk", 28364, D(2026, 11, 1), "old-run")
    with pytest.raises(LegacyTableError, match=r"libinsight.reference_desk .*dataset_id: 28364"):
        check_legacy_table(lake, CFG, "reference_desk_28364", 28364, backfill=False)
    check_legacy_table(lake, CFG, "reference_desk_28364", 28364, backfill=True)  # a choice
    check_legacy_table(lake, CFG, "reference_desk_28365", 28365, backfill=False)  # not there
    bound = config(dataset_id=28364)  # bound, named reference_desk: the old table goes on
    check_legacy_table(lake, bound, bound.table_name(28364), 28364, backfill=False)


def test_two_configs_with_one_name_cannot_share_a_table(tmp_path):
    """Two copies of a config bound to different datasets, the name left unchanged."""
    root = str(tmp_path / "lake")
    lake = Lake(root)
    write_watermark(lake, "main_desk", 28364, D(2026, 11, 1), "run-1")
    check_table_owner(lake, "main_desk", 28364)  # its own table
    with pytest.raises(TableOwnedError, match=r"main_desk already holds dataset 28364.*28365"):
        check_table_owner(lake, "main_desk", 28365)
    # The repair, when it happened anyway: the other dataset's watermark in that table.
    write_watermark(lake, "main_desk", 28365, D(2026, 11, 1), "run-2")
    argv = ["libinsight-watermark", "--lake-root", root, "--dataset-id", "28365"]
    assert cli_main([*argv, "--table", "main_desk", "--clear"]) == 0
    assert read_watermark(lake, "main_desk", 28365) is None
    check_table_owner(lake, "main_desk", 28364)


# -- 2. dates -------------------------------------------------------------------------------


def test_a_future_to_date_is_capped_at_yesterday():
    window = plan_range(
        today=D(2026, 12, 1), watermark=D(2026, 11, 20), lookback_days=0, to_date=D(2027, 6, 30)
    )
    assert window == Window(D(2026, 11, 21), D(2026, 11, 30))


def test_a_watermark_in_the_future_fails_the_run_and_names_the_fix(lake):
    """A lake whose watermark an older run moved to 2027: not 'up to date' for months."""
    write_watermark(lake, "reference_desk_28364", 28364, D(2027, 6, 30), "old-run")
    args = (lake, CFG, "reference_desk_28364", 28364, None, None, 14)
    with pytest.raises(FutureWatermarkError, match="libinsight-watermark --dataset-id 28364"):
        plan_run.fn(*args, today=D(2026, 12, 1))
    write_watermark(lake, "reference_desk_28364", 28364, D(2026, 11, 20), "cli")
    plan = plan_run.fn(*args, today=D(2026, 12, 1))
    assert plan.window == Window(D(2026, 11, 7), D(2026, 11, 30))


def test_the_watermark_command_sets_and_clears(tmp_path, capsys):
    root = str(tmp_path / "lake")
    lake = Lake(root)
    write_watermark(lake, "reference_desk_28364", 28364, D(2027, 6, 30), "run-1")
    base = ["libinsight-watermark", "--lake-root", root, "--dataset-id", "28364"]
    assert cli_main([*base, "--set", "2026-11-01"]) == 0
    assert read_watermark(lake, "reference_desk_28364", 28364) == D(2026, 11, 1)
    assert "2027-06-30 -> 2026-11-01" in capsys.readouterr().out
    assert cli_main([*base, "--clear"]) == 0
    assert read_watermark(lake, "reference_desk_28364", 28364) is None
    # The other dataset's watermark is another file: untouched.
    write_watermark(lake, "reference_desk_28365", 28365, D(2026, 11, 2), "run-2")
    assert cli_main([*base, "--set", "2026-10-01"]) == 0
    assert read_watermark(lake, "reference_desk_28365", 28365) == D(2026, 11, 2)


def test_the_watermark_command_waits_for_a_run_holding_the_lake(tmp_path, monkeypatch):
    """A watermark reset is a write to shared state: it takes the lake lease like a run."""
    from edulake.core.lease import lake_lease

    root = str(tmp_path / "lake")
    write_watermark(Lake(root), "reference_desk_28364", 28364, D(2026, 10, 1), "run-1")
    monkeypatch.setenv("EDULAKE_LEASE__WAIT_S", "0.2")
    monkeypatch.setenv("EDULAKE_LEASE__POLL_S", "0.05")
    base = ["libinsight-watermark", "--lake-root", root, "--dataset-id", "28364"]
    with lake_lease(Lake(root), "libinsight-dataset-28364", owner="run-2"):
        assert cli_main([*base, "--set", "2026-11-01"]) != 0
    assert read_watermark(Lake(root), "reference_desk_28364", 28364) == D(2026, 10, 1)
    assert cli_main([*base, "--set", "2026-11-01"]) == 0
    assert read_watermark(Lake(root), "reference_desk_28364", 28364) == D(2026, 11, 1)


def test_the_watermark_command_refuses_a_future_day(tmp_path):
    root = str(tmp_path / "lake")
    base = ["libinsight-watermark", "--lake-root", root, "--dataset-id", "1"]
    with pytest.raises(SystemExit, match="after yesterday"):
        cli_main([*base, "--set", (clock.today() + dt.timedelta(days=3)).isoformat()])


# -- 3. drift -------------------------------------------------------------------------------


def test_rename_hint_fires_when_other_fields_are_missing(pseudonymizer):
    cfg = config(unknown_fields="add", on_drift="warn")
    recs = [renamed(i, "Comments/Notes", "Notes", omit=("Patron Type", "Format")) for i in (1, 2)]
    drift = transform(recs, cfg, None, pseudonymizer).drift
    assert set(drift.missing_fields) == {"Comments/Notes", "Patron Type", "Format"}
    assert {"from": "Comments/Notes", "to": "Notes"} in drift.possible_renames


def test_optional_fields_do_not_warn(pseudonymizer):
    recs = [rec(i) for i in (1, 2)]
    for r in recs:
        for label in ("walkins", "scans", "reformat"):
            r.pop(label)
    drift = transform(recs, CFG, None, pseudonymizer).drift
    assert drift.missing_fields == []  # the bundled spec marks them expected: false
    assert not drift.has_drift


def test_a_field_that_stops_while_a_new_one_appears_is_an_error(lake, pseudonymizer):
    recs = [renamed(i, "Comments/Notes", "Notes") for i in (1, 2, 3)]
    result = transform(recs, CFG, None, pseudonymizer)
    (error,) = result.drift.errors
    assert "Comments/Notes" in error and "Notes" in error and "classify" in error
    assert "JSTOR" not in json.dumps(result.drift.to_json())  # names, never values

    page = {"type": "success", "payload": {"records": recs, "total_records": 3}}
    lake.write_bytes(Zone.STAGE1NP, "libinsight/dataset-1/p.json", json.dumps(page).encode())
    window = Window(D(2023, 1, 1), D(2023, 1, 31))
    with pytest.raises(DriftError, match="Comments/Notes") as info:
        process_range(lake, CFG, KEYS, window, pseudonymizer, table="reference_desk_1")
    assert "JSTOR" not in str(info.value) and STAFF not in str(info.value)
    assert "aliases" in str(info.value)
    assert not lake.list(Zone.STAGE2P, "libinsight")  # nothing written
    # Downgraded by a setting: the run goes on and the finding stays a warning.
    warn = config(on_drift="warn")
    done = process_range(lake, warn, KEYS, window, pseudonymizer, table="reference_desk_1")
    assert done.rows == 3 and done.drift.errors


# -- 4. closed by default -------------------------------------------------------------------


def test_unknown_fields_are_held_back_by_default(pseudonymizer):
    recs = [renamed(i, "_entered_by", "Entered By") for i in (1, 2, 3)]
    recs[0]["Room"] = "B12"
    result = transform(recs, CFG, None, pseudonymizer)
    assert CFG.unknown_fields == "hold"
    assert result.held == {"Entered By": 3, "Room": 1}
    assert result.drift.held_since == {"Entered By": "2023-01-05", "Room": "2023-01-05"}
    assert "entered_by_2" not in result.table.column_names
    assert "room" not in result.table.column_names
    assert STAFF not in json.dumps(result.table.to_pylist(), default=str)
    assert not result.state.columns  # nothing remembered as a column
    (hint,) = [h for h in result.hints if h.startswith("Entered By")]
    assert "op: hash" in hint  # a one-line way to classify it


def test_add_never_adds_an_identifier(pseudonymizer):
    cfg = config(unknown_fields="add", on_drift="warn")
    recs = [renamed(i, "_entered_by", "Entered By") for i in (1, 2)]
    for r in recs:
        r["Room"] = "B12"
    result = transform(recs, cfg, None, pseudonymizer)
    assert "room" in result.table.column_names  # add: an explicit choice, still there
    assert result.held == {"Entered By": 2}
    assert STAFF not in json.dumps(result.table.to_pylist(), default=str)


@pytest.mark.parametrize(
    "name",
    [
        "sis_id",
        "Student ID",
        "staff_id",
        "clever_user_id",
        "Email",
        "Entered By",
        "created_by",
        "Name",
        "First Name",
        "last_name",
        "Patron",
    ],
)
def test_identifier_names(name):
    assert is_identifier(name)


@pytest.mark.parametrize("name", ["school_name", "Patron Type", "resource_id", "Format", "date"])
def test_not_identifier_names(name):
    assert not is_identifier(name)


def test_a_config_keeping_an_identifier_fails_to_load(tmp_path):
    data = {
        "name": "desk",
        "fields": [
            {"label": "_id", "type": "int64"},
            {"label": "_start_date", "type": "timestamp"},
            {"label": "Patron Email"},
        ],
    }
    path = tmp_path / "desk.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(IdentifierPolicyError, match=r"Patron Email.*allow_identifier"):
        load_dataset_config(str(path))
    data["fields"][2]["allow_identifier"] = True
    path.write_text(yaml.safe_dump(data))
    assert load_dataset_config(str(path)).fields[2].label == "Patron Email"


def test_a_clever_spec_keeping_an_identifier_fails_to_load():
    for name in ("daily_participation", "resource_usage"):
        load_spec("clever", name)  # the bundled specs hash their identifiers
    spec = bundled("clever", "daily_participation.yaml")
    for c in spec["columns"]:
        if c["name"] == "sis_id":
            c["op"] = "keep"
    with pytest.raises(IdentifierPolicyError, match="sis_id"):
        spec_from_dict(spec)


def test_the_audit_finds_names_an_older_add_wrote_from_a_renamed_field(tmp_path):
    """Lakes built under the old `unknown_fields: add` default: `Entered By` in clear."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from edulake.privacy.audit import audit

    lake = Lake(str(tmp_path / "lake"), np_root=str(tmp_path / "np"))
    page = {"type": "success", "payload": {"records": [renamed(1, "_entered_by", "Entered By")]}}
    key = "libinsight/dataset-12345/landed=2024-01-02/2024-01-01_2024-01-01/page-00001.json"
    lake.write_bytes(Zone.STAGE1NP, key, json.dumps(page).encode())
    assert audit(lake).findings == []
    old = pa.table({"id": [1], "entered_by_2": [STAFF]})
    month = "libinsight/reference_desk_12345/month=2024-01/part-0.parquet"
    with lake.atomic_write(Zone.STAGE2P, month) as f:
        pq.write_table(old, f)
    (hit,) = audit(lake).findings
    assert "reference_desk_12345" in hit.location and STAFF not in json.dumps(hit.__dict__)
