"""The public demo key only on demo sources; a lake that held it takes no real key.

Attacks: ``--demo`` on real ``--source folder`` data ran with only a WARNING, leaving a
lake anyone can reverse; a demo lake could then be continued (or rotated) with a real key,
mixing data made with a public key into a "protected" lake."""

from __future__ import annotations

import os

import pytest

from edulake.core.lake import Lake, Zone
from edulake.privacy.keys import (
    DemoKeyError,
    demo_history,
    demo_refusal,
    ensure_key,
    key_record_key,
)
from edulake.privacy.pseudonym import Pseudonymizer, PseudonymKey
from edulake.privacy.rotation import rotate_key
from tasks.common import resolve_key

from ..clever.helpers import dp_rows, write
from .helpers import DP, KEY, KEY_TEXT, run

DEMO = PseudonymKey.resolve(None, demo=True)


def _files(root: str) -> list[str]:
    return [os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs]


@pytest.mark.parametrize(
    ("source", "kw", "allowed"),
    [
        ("testdata", {}, True),
        ("folder", {}, False),
        ("sftp", {}, False),
        (
            "libinsight",
            {"base_url": "http://127.0.0.1:8765", "client_id": "edulake-demo-client"},
            True,
        ),
        (
            "libinsight",
            {"base_url": "http://localhost:1/", "client_id": "edulake-demo-client"},
            True,
        ),
        (
            "libinsight",
            {"base_url": "https://lib.example.com", "client_id": "edulake-demo-client"},
            False,
        ),
        (
            "libinsight",
            {"base_url": "http://127.0.0.1:8765", "client_id": "district-client"},
            False,
        ),
        ("libinsight", {"base_url": "http://10.0.0.5", "client_id": "edulake-demo-client"}, False),
    ],
)
def test_demo_is_allowed_only_on_demo_sources(source, kw, allowed):
    assert (demo_refusal(source, **kw) is None) is allowed


@pytest.mark.usefixtures("prefect_harness")
def test_demo_on_folder_data_is_refused_before_anything_is_written(tmp_path):
    from flows.clever_participation import clever_participation

    src = str(tmp_path / "src")
    write(src, DP, dp_rows("2022-01-03", [("1001", "c001")]))
    root = str(tmp_path / "lake")
    with pytest.raises(DemoKeyError, match="source=folder"):
        clever_participation(source="folder", source_path=src, lake_root=root, demo=True)
    assert _files(root) == [] and _files(str(tmp_path / "lake-protected")) == []


@pytest.mark.usefixtures("prefect_harness")
def test_demo_against_a_real_libinsight_is_refused_before_any_request(tmp_path):
    from flows.libinsight_dataset import libinsight_dataset

    root = str(tmp_path / "lake")
    with pytest.raises(DemoKeyError, match="LibInsight"):
        libinsight_dataset(
            base_url="https://yourlib.libinsight.com",
            dataset_id=1,
            client_id="district",
            client_secret_block=None,
            lake_root=root,
            demo=True,
        )
    assert _files(root) == []


def _demo_lake(tmp_path) -> tuple[Lake, str]:
    src = str(tmp_path / "src")
    write(src, DP, dp_rows("2022-01-03", [("1001", "c001"), ("1002", "c002")]))
    lake = Lake(str(tmp_path / "lake"), np_root=str(tmp_path / "np"))
    run(lake, src, Pseudonymizer(DEMO))
    return lake, src


def test_a_lake_that_held_the_demo_key_refuses_a_real_key(tmp_path):
    lake, src = _demo_lake(tmp_path)
    assert demo_history(lake, "clever")
    record = lake.read_json(Zone.SYSTEM, key_record_key("clever"))
    assert record["demo_history"] is True and record["key_id"] == DEMO.key_id
    before = sorted(o.key for o in lake.list(Zone.STAGE2P))
    with pytest.raises(DemoKeyError, match="fresh lake") as info:
        ensure_key(lake, "clever", KEY.key_id)
    assert "stage2p/clever/" in str(info.value) and "stage2np/clever/" in str(info.value)
    with pytest.raises(DemoKeyError):
        run(lake, src, Pseudonymizer(KEY))
    with pytest.raises(DemoKeyError):  # a rotation does not launder it either
        rotate_key(lake, Pseudonymizer(KEY))
    assert lake.read_json(Zone.SYSTEM, key_record_key("clever")) == record
    assert sorted(o.key for o in lake.list(Zone.STAGE2P)) == before
    ensure_key(lake, "clever", DEMO.key_id)  # the demo lake itself still runs


def test_demo_history_is_found_without_the_key_record(tmp_path):
    lake, _ = _demo_lake(tmp_path)
    lake.delete(Zone.SYSTEM, key_record_key("clever"))  # deleting the record is not enough
    with pytest.raises(DemoKeyError):
        ensure_key(lake, "clever", KEY.key_id)


def test_resolve_key_refuses_a_real_key_on_a_demo_lake(tmp_path, monkeypatch):
    lake, _ = _demo_lake(tmp_path)
    monkeypatch.setenv("EDULAKE_HMAC_KEY", KEY_TEXT)
    with pytest.raises(DemoKeyError):
        resolve_key(None, demo=False, lake=lake, source="clever")
    assert resolve_key(None, demo=False).key_id == KEY.key_id  # no lake: just the key


def test_rebuilding_as_the_message_says_accepts_the_real_key(tmp_path):
    lake, src = _demo_lake(tmp_path)
    for zone in (Zone.STAGE2P, Zone.STAGE2NP):
        lake.delete_prefix(zone, "clever")
    lake.delete(Zone.SYSTEM, key_record_key("clever"))
    for prefix in ("ledger/clever", "processed/clever", "publish/clever"):
        lake.delete_prefix(Zone.SYSTEM, prefix)
    run(lake, src, Pseudonymizer(KEY))
    assert not demo_history(lake, "clever")
    assert lake.read_json(Zone.SYSTEM, key_record_key("clever"))["key_id"] == KEY.key_id
