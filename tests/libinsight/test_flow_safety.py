"""Issues 13 and 16 through the real flow (Prefect harness, the local LibInsight server)."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import yaml
from prefect.client.orchestration import get_client
from prefect.events.clients import AssertingEventsClient

from edulake.catalog.duckdb import connect as connect_catalog
from edulake.core import clock
from edulake.core.lake import Lake, Zone
from edulake.demo.libinsight_server import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET
from edulake.sources.libinsight.store import read_watermark
from flows.libinsight_dataset import libinsight_dataset
from tasks.events import SOURCE_STALE
from tests.servers.libinsight import libinsight_server

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]
D = dt.date
STAFF = ["Maria Lopez", "Jamal Carter", "Anne O'Neil", "Wei Zhang", "Priya Natarajan", "Tom Berg"]
INSTRUCTION = {
    "name": "instruction_log",
    "dataset_id": 28366,
    "description": "Instruction sessions (another dataset of the same instance).",
    "backfill_from": "2023-01-01",
    "fields": [
        {"label": "_id", "name": "id", "type": "int64"},
        {"label": "_start_date", "name": "start_date", "type": "timestamp"},
        {"label": "_entered_by", "name": "entered_by", "op": "hash"},
        {"label": "Session Type", "choice": "single"},
        {"label": "Attendees", "type": "int64"},
        {"label": "Course"},
        {"label": "Librarian Notes"},
    ],
}


@pytest.fixture
def secret_env(monkeypatch):
    monkeypatch.setenv("EDULAKE_LIBINSIGHT_CLIENT_SECRET", DEMO_CLIENT_SECRET)


def common(srv: Any, root: str, dataset_id: int) -> dict[str, Any]:
    return {
        "base_url": srv.base_url,
        "dataset_id": dataset_id,
        "client_id": DEMO_CLIENT_ID,
        "client_secret_block": None,
        "lake_root": root,
        "demo": True,
        "concurrency": 4,
    }


def query(root: str, sql: str) -> list[tuple[Any, ...]]:
    con = connect_catalog(f"{root}/catalog/edulake.duckdb")
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def test_two_datasets_side_by_side_never_wipe_each_other(tmp_path, secret_env):
    root = str(tmp_path / "lake")
    instruction = tmp_path / "instruction_log.yaml"
    instruction.write_text(yaml.safe_dump(INSTRUCTION))
    span = {"from_date": D(2023, 1, 1), "to_date": D(2023, 3, 31)}
    with libinsight_server(dataset_ids=(28364, 28365, 28366), profiles={28366: "instruction"}) as s:
        # The bug: both schedules use the default config; 28365's backfill deleted 28364's rows.
        libinsight_dataset(**common(s, root, 28364), **span)
        libinsight_dataset(**common(s, root, 28365), **span)
        libinsight_dataset(**common(s, root, 28366), dataset_config=str(instruction), **span)
        expected = {
            d: {r["_id"] for r in s.records(D(2023, 1, 1), D(2023, 3, 31), d) if r["_start_date"]}
            for d in (28364, 28365, 28366)
        }
        before = files(tmp_path / "lake")
        # A config bound to 28366 refuses another dataset before anything is written.
        with pytest.raises(Exception, match=r"bound to dataset 28366.*28364"):
            libinsight_dataset(**common(s, root, 28364), dataset_config=str(instruction), **span)
        # A copy bound to another dataset but left with the same name: refused too.
        copy = tmp_path / "copy.yaml"
        copy.write_text(yaml.safe_dump({**INSTRUCTION, "dataset_id": 28365}))
        with pytest.raises(Exception, match=r"instruction_log already holds dataset 28366"):
            libinsight_dataset(**common(s, root, 28365), dataset_config=str(copy), **span)
        assert files(tmp_path / "lake") == before

    assert expected[28364] != expected[28365]
    for table, d in [
        ("reference_desk_28364", 28364),
        ("reference_desk_28365", 28365),
        ("instruction_log", 28366),
    ]:
        (ids,) = zip(*query(root, f"SELECT id FROM libinsight.{table}"), strict=True)
        assert set(ids) == expected[d], table
    cols = {r[0] for r in query(root, "DESCRIBE libinsight.instruction_log")}
    assert {"session_type", "attendees", "entered_by_pseudonym"} <= cols
    assert read_watermark(Lake(root), "reference_desk_28364", 28364) == D(2023, 3, 31)
    assert read_watermark(Lake(root), "instruction_log", 28366) == D(2023, 3, 31)


def test_a_future_to_date_is_capped_at_yesterday(tmp_path, secret_env, caplog):
    caplog.set_level(logging.INFO)
    root = str(tmp_path / "lake")
    yesterday = clock.today() - dt.timedelta(days=1)
    with libinsight_server() as srv:
        out = libinsight_dataset(
            **common(srv, root, 12345),
            from_date=yesterday - dt.timedelta(days=6),
            to_date=yesterday + dt.timedelta(days=200),
        )
    assert out["watermark_after"] == yesterday.isoformat()
    assert out["range"].endswith(yesterday.isoformat())
    assert any("capped at yesterday" in r.getMessage() for r in caplog.records)


def test_a_renamed_personal_field_is_held_back(tmp_path, secret_env, caplog):
    """Issue 16 #1: `_entered_by` renamed `Entered By` never reaches stage2p, catalog or CSV."""
    caplog.set_level(logging.INFO)
    root = str(tmp_path / "lake")
    span = {"from_date": D(2023, 1, 1), "to_date": D(2023, 1, 31)}
    with libinsight_server(rename={"_entered_by": "Entered By"}) as srv:
        # By default a column that stops while a new field appears fails the run.
        with pytest.raises(Exception, match=r"_entered_by.*Entered By"):
            libinsight_dataset(**common(srv, root, 12345), **span)
        assert read_watermark(Lake(root), "reference_desk_12345", 12345) is None
        assert not Lake(root).list(Zone.STAGE2P, "libinsight")
        # Downgraded to a warning: the run commits, and the field is still held back.
        cfg = yaml.safe_load(
            (Path(__file__).parents[2] / "edulake/specs/libinsight/reference_desk.yaml").read_text()
        )
        cfg["on_drift"] = "warn"
        path = tmp_path / "desk.yaml"
        path.write_text(yaml.safe_dump(cfg))
        state = libinsight_dataset(
            **common(srv, root, 12345), dataset_config=str(path), **span, return_state=True
        )
        out = state.result()
    assert out["held_fields"] == {"Entered By": out["rows_written"] + out["quarantined"]}
    held = [r.getMessage() for r in caplog.records if "held back" in r.getMessage()]
    assert held and "Entered By" in held[0] and "op:" in held[0]
    lake = Lake(root)
    texts = [lake.read_bytes(Zone.EXPORTS, "libinsight/reference_desk_12345.csv").decode()]
    for obj in lake.list(Zone.STAGE2P, "libinsight"):
        with lake.open_input_file(Zone.STAGE2P, obj.key) as f:
            texts.append(str(pq.read_table(f).to_pylist()))
    texts.append(str(query(root, "SELECT * FROM libinsight.reference_desk_12345")))
    for name in STAFF:
        assert not any(name in t for t in texts), "a raw staff name reached the analysts"
    art = asyncio.run(_artifact("libinsight-held-fields", state.state_details.flow_run_id))
    assert "Entered By" in str(art.data) and not any(n in str(art.data) for n in STAFF)


async def _artifact(key: str, flow_run_id: Any) -> Any:
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        ArtifactFilterKey,
    )

    async with get_client() as client:
        (art,) = await client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=[key]),
                flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]),
            )
        )
        return art


def _stale(worker: Any) -> list[Any]:
    worker.drain()
    assert AssertingEventsClient.last is not None
    return [e for e in AssertingEventsClient.last.events if e.event == SOURCE_STALE]


def test_a_quiet_dataset_is_announced_stale(tmp_path, secret_env, captured_events, caplog):
    caplog.set_level(logging.INFO)
    root = str(tmp_path / "lake")
    span = {"from_date": D(2023, 1, 1), "to_date": D(2023, 1, 31)}
    with libinsight_server(dataset_ids=(12345, 28364), quiet_after={28364: D(2023, 1, 10)}) as s:
        busy = libinsight_dataset(**common(s, root, 12345), **span)
        assert busy["stale"] is None
        state = libinsight_dataset(**common(s, root, 28364), **span, return_state=True)
        quiet = state.result()
        # The next (incremental) run finds no record at all: stale again, and an empty
        # range is not reported as "empty page(s)" any more.
        caplog.clear()
        later = libinsight_dataset(
            **common(s, root, 28364), lookback_days=0, to_date=D(2023, 2, 28)
        )
        assert later["range"] == "2023-02-01..2023-02-28" and later["rows_written"] == 0
        assert not any("empty page" in r.getMessage() for r in caplog.records)
        days = [
            dt.datetime.fromisoformat(r["_start_date"]).date()
            for r in s.records(D(2023, 1, 1), D(2023, 1, 31), 28364)
            if r["_start_date"]
        ]
    silent = (D(2023, 1, 31) - max(days)).days
    assert silent >= 21  # nothing after the 10th
    event, again = _stale(captured_events)  # the busy dataset announced nothing
    assert again.payload["days_since_last_record"] == (D(2023, 2, 28) - max(days)).days
    assert later["stale"]["days_since_last_record"] == again.payload["days_since_last_record"]
    assert event.resource.id == "edulake.source.libinsight.dataset-28364"
    assert event.payload["days_since_last_record"] == silent
    assert event.payload["last_record"] == max(days).isoformat()
    assert event.payload["threshold_days"] == 14
    assert quiet["stale"]["days_since_last_record"] == silent
    art = asyncio.run(_artifact("libinsight-summary", state.state_details.flow_run_id))
    first = art.data.splitlines()[0]
    assert f"no records for {silent} days" in first and "28364" in first


def test_a_rename_fails_loudly_and_classifying_it_repairs_the_range(tmp_path, secret_env):
    """Issue 13: `Comments/Notes` renamed `Notes` on an instance lacking two fields."""
    root = str(tmp_path / "lake")
    desk = Path(__file__).parents[2] / "edulake/specs/libinsight/reference_desk.yaml"
    span = {"from_date": D(2023, 1, 1), "to_date": D(2023, 1, 31)}
    with libinsight_server(omit_fields=("scans", "reformat")) as srv:
        first = libinsight_dataset(**common(srv, root, 12345), **span)
        assert first["drift"]["missing_fields"] == []  # expected: false, no weekly warning
        srv.settings.rename = {"Comments/Notes": "Notes"}
        with pytest.raises(Exception, match=r"Comments/Notes.*Notes.*aliases") as info:
            libinsight_dataset(**common(srv, root, 12345), to_date=D(2023, 2, 28))
        assert not any(n in str(info.value) for n in STAFF)
        assert "Helped with JSTOR" not in str(info.value)  # names, never values
        assert read_watermark(Lake(root), "reference_desk_12345", 12345) == D(2023, 1, 31)
        # What the message says: classify the new field (an alias of the old one).
        cfg = yaml.safe_load(desk.read_text())
        for f in cfg["fields"]:
            if f["label"] == "Comments/Notes":
                f["aliases"] = ["Notes"]
        path = tmp_path / "desk.yaml"
        path.write_text(yaml.safe_dump(cfg))
        fixed = libinsight_dataset(
            **common(srv, root, 12345), dataset_config=str(path), to_date=D(2023, 2, 28)
        )
        notes = {
            r["_id"]: r["Notes"]
            for r in srv.records(D(2023, 1, 18), D(2023, 2, 28))
            if r["_start_date"] and r["Notes"]
        }
    assert fixed["watermark_after"] == "2023-02-28" and not fixed["drift"]["errors"]
    got = dict(
        query(
            root,
            "SELECT id, comments_notes FROM libinsight.reference_desk_12345 "
            "WHERE start_date >= '2023-01-18' AND comments_notes IS NOT NULL",
        )
    )
    assert got.keys() == notes.keys()  # the renamed field fills its column again
