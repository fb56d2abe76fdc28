"""The libinsight_dataset flow under Prefect's test harness, against the local server."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from pathlib import Path

import pytest
import yaml
from prefect.blocks.system import Secret
from prefect.client.orchestration import get_client

from edulake.catalog.duckdb import connect as connect_catalog
from edulake.core.lake import Lake
from edulake.demo.libinsight_server import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET
from edulake.sources.libinsight.store import read_watermark
from flows.libinsight_dataset import libinsight_dataset
from tests.logs import all_log_lines
from tests.servers.libinsight import libinsight_server

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]
D = dt.date
KEYS = ["libinsight-pages", "libinsight-months", "libinsight-drift", "libinsight-summary"]


async def _artifacts(keys: list[str]):
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    async with get_client() as client:
        return await client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=keys))
        )


@pytest.fixture
def all_logs():
    with all_log_lines() as handler:
        yield handler


def test_backfill_then_incremental_with_drift(tmp_path, all_logs, caplog):
    caplog.set_level(logging.DEBUG)
    root = str(tmp_path / "lake")
    # Discovery as an explicit choice (the bundled config holds unknown fields back and
    # fails on a rename: tests/libinsight/test_flow_safety.py).
    cfg = yaml.safe_load(
        (Path(__file__).parents[2] / "edulake/specs/libinsight/reference_desk.yaml").read_text()
    )
    cfg.update(unknown_fields="add", on_drift="warn")
    (tmp_path / "desk.yaml").write_text(yaml.safe_dump(cfg))
    Secret(value=DEMO_CLIENT_SECRET).save("test-libinsight-secret", overwrite=True)
    with libinsight_server(token_max_uses=7) as srv:
        common = {
            "base_url": srv.base_url,
            "dataset_id": 12345,
            "client_id": DEMO_CLIENT_ID,
            "client_secret_block": "test-libinsight-secret",
            "lake_root": root,
            "demo": True,
            "concurrency": 4,
            "dataset_config": str(tmp_path / "desk.yaml"),
        }
        first = libinsight_dataset(**common, from_date=D(2021, 12, 1), to_date=D(2023, 1, 31))
        assert first["windows"] == 2
        assert first["watermark_before"] is None and first["watermark_after"] == "2023-01-31"
        assert first["token_fetches"] > 1  # tokens expired mid-run and were renewed
        served = srv.served_pages()
        assert set(served.values()) == {1} and len(served) == first["pages"]

        srv.settings.rename = {"Patron Type": "Patron Category"}
        srv.settings.revision = 1
        second = libinsight_dataset(**common, lookback_days=10, to_date=D(2023, 2, 28))
        assert second["range"] == "2023-01-22..2023-02-28"
        assert second["mode"] == "incremental"
        assert second["watermark_before"] == "2023-01-31"
        assert second["watermark_after"] == "2023-02-28"
        assert second["months_rewritten"] == 2
        assert second["drift"]["possible_renames"] == [
            {"from": "Patron Type", "to": "Patron Category"}
        ]
        secrets = [DEMO_CLIENT_SECRET, *srv.issued_tokens]
        expected = {
            r["_id"] for r in srv.records(D(2021, 12, 1), D(2023, 2, 28)) if r["_start_date"]
        }

    con = connect_catalog(f"{root}/catalog/edulake.duckdb")
    try:
        n, distinct = con.execute(
            "SELECT COUNT(*), COUNT(DISTINCT id) FROM libinsight.reference_desk_12345"
        ).fetchone()
        cols = [r[0] for r in con.execute("DESCRIBE libinsight.reference_desk_12345").fetchall()]
        months = con.execute(
            "SELECT COUNT(DISTINCT month) FROM libinsight.reference_desk_12345"
        ).fetchone()[0]
    finally:
        con.close()
    assert n == distinct == len(expected)  # overlap added no duplicates
    assert "patron_category" in cols and "month" in cols and "entered_by" not in cols
    assert months == 15
    assert read_watermark(Lake(root), "reference_desk_12345", 12345) == D(2023, 2, 28)

    arts = asyncio.run(_artifacts(KEYS))
    assert {a.key for a in arts} >= set(KEYS)
    drift = [a for a in arts if a.key == "libinsight-drift"]
    assert any("Patron Category" in str(a.data) for a in drift)
    texts = all_logs.lines + [r.getMessage() for r in caplog.records] + [str(a.data) for a in arts]
    assert any("fetch" in t or "pages" in t for t in texts)
    for s in secrets:
        assert not any(s in t for t in texts), "a secret or token leaked into logs/artifacts"


def test_error_envelope_fails_the_flow_and_keeps_the_watermark(tmp_path, monkeypatch):
    monkeypatch.setenv("EDULAKE_LIBINSIGHT_CLIENT_SECRET", DEMO_CLIENT_SECRET)
    root = str(tmp_path / "lake")
    with libinsight_server() as srv:
        common = {
            "base_url": srv.base_url,
            "dataset_id": 12345,
            "client_id": DEMO_CLIENT_ID,
            "client_secret_block": None,
            "lake_root": root,
            "demo": True,
        }
        libinsight_dataset(**common, from_date=D(2023, 1, 1), to_date=D(2023, 1, 31))
        srv.settings.error_200 = 1
        with pytest.raises(Exception, match="Report could not be generated"):
            libinsight_dataset(**common, to_date=D(2023, 2, 28))
    assert read_watermark(Lake(root), "reference_desk_12345", 12345) == D(2023, 1, 31)


def test_missing_secret_fails_clearly(tmp_path, monkeypatch):
    monkeypatch.delenv("EDULAKE_LIBINSIGHT_CLIENT_SECRET", raising=False)
    with pytest.raises(Exception, match="no LibInsight client secret"):
        libinsight_dataset(
            base_url="http://127.0.0.1:9",
            dataset_id=1,
            client_id=DEMO_CLIENT_ID,
            client_secret_block="no-such-block",
            lake_root=str(tmp_path),
            demo=True,
            from_date=D(2023, 1, 1),
            to_date=D(2023, 1, 2),
        )
