"""The Clever flow under Prefect's test harness: runs, artifacts, idempotency, key refusal."""

from __future__ import annotations

import pytest
from prefect.client.orchestration import get_client

from edulake.catalog.duckdb import connect as connect_catalog
from edulake.privacy.pseudonym import MissingKeyError
from flows.clever_participation import clever_participation

pytestmark = pytest.mark.usefixtures("prefect_harness")

SMALL = {"days": 2, "students": 200, "teachers": 20, "staff": 5, "schools": 3}


async def _artifacts(keys: list[str]):
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    async with get_client() as client:
        return await client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=keys))
        )


def _tables(db: str) -> dict[str, int]:
    # the default layout: the protected catalogs are under <lake>-protected (a steward view)
    np_dir = db.replace("/lake/catalog/edulake.duckdb", "/lake-protected/catalog")
    con = connect_catalog(db, np_dir=np_dir)
    try:
        return {
            t: con.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
            for t in [
                "clever.daily_participation",
                "clever.resource_usage",
                "clever_np.sis_id_lookup",
                "clever_np.clever_user_id_lookup",
            ]
        }
    finally:
        con.close()


def test_flow_demo_run_twice_and_artifacts(tmp_path):
    lake = str(tmp_path / "lake")
    first = clever_participation(source="testdata", lake_root=lake, demo=True, testdata=SMALL)
    assert first["landing"] == {"landed": 12}
    assert first["rows_written"] > 0
    assert first["failed_files"] == []
    db = f"{lake}/catalog/edulake.duckdb"
    counts = _tables(db)
    assert counts["clever.daily_participation"] == 2 * (200 + 20 + 5)

    second = clever_participation(source="testdata", lake_root=lake, demo=True, testdata=SMALL)
    assert second["landing"] == {"unchanged": 12}
    assert second["files_processed"] == 0
    assert _tables(db) == counts  # no duplicates, same tables

    import asyncio

    arts = asyncio.run(
        _artifacts(["clever-landing", "clever-processing", "clever-summary", "clever-published"])
    )
    assert {a.key for a in arts} == {
        "clever-landing",
        "clever-processing",
        "clever-summary",
        "clever-published",
    }
    summary = next(a for a in arts if a.key == "clever-summary")
    assert "DEMO MODE" in summary.data


def test_flow_refuses_without_key(tmp_path):
    with pytest.raises(MissingKeyError):
        clever_participation(source="testdata", lake_root=str(tmp_path), demo=False, testdata=SMALL)


def test_flow_announces_committed_tables_once(tmp_path, monkeypatch):
    import flows.clever_participation as module

    calls = []
    monkeypatch.setattr(module, "emit_data_committed", lambda *a: calls.append(a))
    lake = str(tmp_path / "lake")
    first = clever_participation(source="testdata", lake_root=lake, demo=True, testdata=SMALL)
    assert len(calls) == 1
    source, tables, rows = calls[0]
    assert (source, tables) == ("clever", ["daily_participation", "resource_usage"])
    assert sum(rows.values()) == first["rows_written"]
    clever_participation(source="testdata", lake_root=lake, demo=True, testdata=SMALL)
    assert len(calls) == 1  # nothing new committed: no event
