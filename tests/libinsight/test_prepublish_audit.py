"""LibInsight's audit before publishing (the one Clever has, through the source registry).

The attacks: a staff name reaches stage2p in clear, (a) smuggled into a kept free-text
field by the server (a note that quotes who recorded it), (b) through a config that
wrongly keeps ``_entered_by`` with an ``allow_identifier`` override. Either run fails
before publishing: the catalog is what the last clean run published, the watermark
does not move, the export that leaked is withdrawn, and the partitions stay held until
a clean run.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Any

import duckdb
import pytest
import yaml

from edulake.core.lake import Lake, Zone
from edulake.demo.libinsight_server import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET
from edulake.sources.libinsight.store import read_watermark
from flows.libinsight_dataset import libinsight_dataset
from tests.servers.libinsight import libinsight_server

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]
D = dt.date
STAFF = ["Maria Lopez", "Jamal Carter", "Anne O'Neil", "Wei Zhang", "Priya Natarajan", "Tom Berg"]
TABLE = "reference_desk_12345"
HELD = "audit/libinsight/held.json"


@pytest.fixture
def secret_env(monkeypatch):
    monkeypatch.setenv("EDULAKE_LIBINSIGHT_CLIENT_SECRET", DEMO_CLIENT_SECRET)


def _run(srv: Any, root: str, **kw: Any) -> Any:
    return libinsight_dataset(
        base_url=srv.base_url,
        dataset_id=12345,
        client_id=DEMO_CLIENT_ID,
        client_secret_block=None,
        lake_root=root,
        demo=True,
        from_date=D(2023, 3, 1),
        to_date=D(2023, 3, 31),
        return_state=True,
        **kw,
    )


def _catalog(root: str) -> tuple[int, set[str]]:
    """Rows of the published table and every text value in it."""
    con = duckdb.connect(os.path.join(root, "catalog", "edulake.duckdb"), read_only=True)
    try:
        rows = con.execute(f"SELECT * FROM libinsight.{TABLE}").fetchall()
    finally:
        con.close()
    return len(rows), {str(v) for r in rows for v in r if isinstance(v, str)}


def _smuggle(_page: int, body: dict[str, Any]) -> dict[str, Any]:
    for rec in body["payload"]["records"]:
        rec["Comments/Notes"] = rec["_entered_by"]  # "recorded by ...", in a kept field
    return body


def _assert_failed_unpublished(state: Any, root: str, before: tuple[int, set[str]]) -> None:
    from tasks.audit import LeakFound

    assert state.is_failed()
    assert isinstance(state.result(raise_on_failure=False), LeakFound), state.message
    assert "pre-publish PII audit found" in (state.message or "")
    assert not any(name in (state.message or "") for name in STAFF)
    after = _catalog(root)
    assert after == before  # the catalog is what the clean run published
    assert not any(name in v for v in after[1] for name in STAFF)
    lake = Lake(root, f"{root}-protected")
    assert read_watermark(lake, TABLE, 12345) == D(2023, 3, 31)  # from the clean run
    assert lake.exists(Zone.SYSTEM, HELD)
    assert not lake.exists(Zone.EXPORTS, f"libinsight/{TABLE}.csv")  # withdrawn


def test_a_name_smuggled_into_a_kept_field_fails_the_run_unpublished(tmp_path, secret_env):
    root = str(tmp_path / "lake")
    with libinsight_server() as srv:
        clean = _run(srv, root)
        assert clean.is_completed(), clean.message
        before = _catalog(root)
        assert before[0] > 0
        srv.settings.rewrite = _smuggle
        _assert_failed_unpublished(_run(srv, root), root, before)
        # the server stops quoting names: the next run rewrites the months clean, the
        # audit passes and publishes, and nothing is held any more
        srv.settings.rewrite = None
        repaired = _run(srv, root)
        assert repaired.is_completed(), repaired.message
    lake = Lake(root, f"{root}-protected")
    assert not lake.exists(Zone.SYSTEM, HELD)
    rows, values = _catalog(root)
    assert rows > 0 and not any(name in v for v in values for name in STAFF)
    assert lake.exists(Zone.EXPORTS, f"libinsight/{TABLE}.csv")


def test_a_config_that_keeps_the_staff_name_fails_the_run_unpublished(tmp_path, secret_env):
    root = str(tmp_path / "lake")
    cfg = yaml.safe_load(
        (Path(__file__).parents[2] / "edulake/specs/libinsight/reference_desk.yaml").read_text()
    )
    for f in cfg["fields"]:
        if f["label"] == "_entered_by":  # wrongly: a staff name is personal data
            f.update(op="keep", allow_identifier=True, name="entered_by")
    (tmp_path / "desk.yaml").write_text(yaml.safe_dump(cfg))
    with libinsight_server() as srv:
        clean = _run(srv, root)  # the bundled config: names hashed, lookup in stage2np
        assert clean.is_completed(), clean.message
        before = _catalog(root)
        state = _run(srv, root, dataset_config=str(tmp_path / "desk.yaml"))
        # the config's name is the table's only when bound; same table, same dataset
        _assert_failed_unpublished(state, root, before)
