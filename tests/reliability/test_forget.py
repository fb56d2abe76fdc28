"""Erasure: a forgotten person leaves stage2np, stage2p, quarantine and the catalog, and
never comes back (reprocessing, re-delivery, key rotation)."""

from __future__ import annotations

import hashlib
import hmac
import os

import pytest

from edulake.catalog import open_catalog, publish_all
from edulake.catalog.duckdb import connect as connect_catalog
from edulake.core.lake import Lake, Zone
from edulake.privacy.forget import forget, read_suppressed
from edulake.privacy.lookup import read_lookup
from edulake.privacy.pseudonym import Pseudonymizer
from edulake.privacy.rotation import finish_rotation, rotate_key
from edulake.sources.clever import pipeline

from ..clever.helpers import DP_HEADER, dp_rows, ru_rows, write
from .helpers import DP, KEY, OTHER_KEY, RU, read_table, run
from .test_keys import _publish

USERS = [("1001", "c001"), ("1002", "c002"), ("", "c003"), ("1004", "c004")]
SPECS = list(pipeline.specs().values())


def p(value: str, key=KEY) -> str:
    return hmac.new(key.secret, value.encode(), hashlib.sha256).hexdigest()


def _build(tmp_path, lake, pseudonymizer) -> str:
    src = str(tmp_path / "src")
    dp = dp_rows("2022-01-03", USERS)
    # 1001 also appears with a blank sis_id (same clever_user_id) and in a bad row
    dp += "2022-01-04,,c001,s1,A,True,1,1\n2022-01-04,1001,c001,s1,A,True,bad,1\n"
    write(src, DP, dp)
    write(src, RU, ru_rows("2022-01-03", USERS[:2]))
    run(lake, src, pseudonymizer, share=0.5)
    _publish(lake, KEY.key_id)
    return src


def _pseudonyms_in_stage2p(lake) -> set[str]:
    out: set[str] = set()
    for name in ("daily_participation", "resource_usage"):
        t = read_table(lake, name)
        for col in ("sis_id_pseudonym", "clever_user_id_pseudonym"):
            out |= set(t[col].to_pylist())
    return out


def test_forget_by_sis_id_removes_the_person_everywhere(tmp_path, lake, pseudonymizer):
    _build(tmp_path, lake, pseudonymizer)
    dp_before = read_table(lake, "daily_participation").num_rows
    result = forget(lake, "clever", ["1001"], pseudonymizer, SPECS)

    # linked identity: the clever_user_id on their rows is forgotten too
    assert result.identities == {"sis_id": 1, "clever_user_id": 1}
    assert result.stage2p_rows == {"daily_participation": 2, "resource_usage": 1}
    assert result.lookup_rows == {"sis_id": 1, "clever_user_id": 1}
    assert result.quarantine_rows == 1 and result.not_found == 0
    present = _pseudonyms_in_stage2p(lake)
    assert p("1001") not in present and p("c001") not in present
    assert p("1002") in present  # nobody else is touched
    assert read_table(lake, "daily_participation").num_rows == dp_before - 2
    assert "1001" not in read_lookup(lake, "clever", "sis_id")["value"].to_pylist()
    assert "c001" not in read_lookup(lake, "clever", "clever_user_id")["value"].to_pylist()
    assert lake.list(Zone.QUARANTINE) == []  # its only bad row was theirs
    # the catalog follows once republished: the partitions whose files changed
    assert result.changed == {
        "daily_participation": ["2022-01-03", "2022-01-04"],
        "resource_usage": ["2022-01-03"],
    }
    cat = open_catalog("duckdb", lake)
    try:
        published, _ = publish_all(cat, pipeline.catalog_tables(lake, KEY.key_id))
    finally:
        cat.close()
    replaced = {r.table: (r.action, r.partitions) for r in published}
    assert replaced["daily_participation"] == ("replaced-partitions", 2)
    assert replaced["resource_usage"] == ("replaced-partitions", 1)
    con = connect_catalog(
        str(tmp_path / "lake/catalog/edulake.duckdb"), np_dir=str(tmp_path / "np/catalog")
    )
    try:
        for t, col in [
            ("clever.daily_participation", "clever_user_id_pseudonym"),
            ("clever.resource_usage", "clever_user_id_pseudonym"),
            ("clever_np.clever_user_id_lookup", "pseudonym"),
        ]:
            n = con.execute(f"SELECT COUNT(*) FROM {t} WHERE {col} = ?", [p("c001")]).fetchone()
            assert n[0] == 0, t
    finally:
        con.close()


def test_forget_by_clever_user_id_of_a_user_without_sis_id(tmp_path, lake, pseudonymizer):
    _build(tmp_path, lake, pseudonymizer)
    result = forget(lake, "clever", ["c003"], pseudonymizer, SPECS)
    assert result.identities == {"clever_user_id": 1}
    assert result.stage2p_rows == {"daily_participation": 1}
    assert p("c003") not in _pseudonyms_in_stage2p(lake)


def test_unknown_id_removes_nothing(tmp_path, lake, pseudonymizer):
    _build(tmp_path, lake, pseudonymizer)
    before = {o.key: o.size for o in lake.list(Zone.STAGE2P)}
    result = forget(lake, "clever", ["no-such-person"], pseudonymizer, SPECS)
    assert result.not_found == 1 and result.stage2p_rows == {} and result.identities == {}
    assert {o.key: o.size for o in lake.list(Zone.STAGE2P)} == before
    assert read_suppressed(lake, "clever").num_rows == 0


def test_reprocessing_and_redelivery_never_resurrect(tmp_path, lake, pseudonymizer):
    src = _build(tmp_path, lake, pseudonymizer)
    forget(lake, "clever", ["1001"], pseudonymizer, SPECS)
    rows = read_table(lake, "daily_participation").num_rows
    # 1. every landed file reprocessed from stage1np
    lake.delete_prefix(Zone.SYSTEM, "processed/clever")
    res = pipeline.process_pending(
        lake, pipeline.pending(lake), pseudonymizer, max_quarantine_share=0.5
    )
    assert sum(f.rows_suppressed for f in res.files) == 3
    assert p("c001") not in _pseudonyms_in_stage2p(lake)
    assert read_table(lake, "daily_participation").num_rows == rows
    assert "c001" not in read_lookup(lake, "clever", "clever_user_id")["value"].to_pylist()
    # 2. Clever re-delivers a changed file with them in it
    write(
        src,
        DP,
        DP_HEADER + "\n2022-01-05,1001,c001,s1,A,True,1,1\n2022-01-05,1002,c002,s1,A,True,1,1\n",
    )
    os.utime(os.path.join(src, DP), (2e9, 2e9))
    _, _, res = run(lake, src, pseudonymizer)
    assert [f.rows_suppressed for f in res.files] == [1]
    assert p("1001") not in _pseudonyms_in_stage2p(lake)
    # 3. a key rotation rebuilds from stage1np: still suppressed
    new = Pseudonymizer(OTHER_KEY)
    rotate_key(lake, new)
    finish_rotation(lake, new)
    present = _pseudonyms_in_stage2p(lake)
    assert p("1001", OTHER_KEY) not in present and p("c001", OTHER_KEY) not in present
    assert p("1002", OTHER_KEY) in present


def test_forget_is_idempotent_and_repaired_by_rerun(tmp_path, lake, pseudonymizer, monkeypatch):
    _build(tmp_path, lake, pseudonymizer)
    import edulake.privacy.forget as forget_mod

    def die(name: str) -> None:
        if name == "forget.suppressed":
            raise KeyboardInterrupt  # stands in for a crash after the suppression list

    monkeypatch.setattr(forget_mod, "crashpoint", die)
    with pytest.raises(KeyboardInterrupt):
        forget(lake, "clever", ["1001"], pseudonymizer, SPECS)
    monkeypatch.undo()
    assert p("c001") in _pseudonyms_in_stage2p(lake)  # nothing removed yet
    # re-run with no ids at all: the saved suppression list finishes the job
    again = forget(lake, "clever", [], pseudonymizer, SPECS)
    assert again.stage2p_rows == {"daily_participation": 2, "resource_usage": 1}
    assert p("c001") not in _pseudonyms_in_stage2p(lake)
    third = forget(lake, "clever", ["1001"], pseudonymizer, SPECS)
    assert third.stage2p_rows == {} and third.files_rewritten == 0
    assert read_suppressed(lake, "clever").num_rows == 2
    assert isinstance(lake, Lake)
