"""The PII audit: zero findings on a real lake, and it finds ids planted anywhere readable."""

from __future__ import annotations

import json
import os

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from edulake.cli import main
from edulake.core.lake import Lake, Zone
from edulake.demo.clever_testdata import TestDataSource
from edulake.privacy.audit import audit, raw_identifiers

from ..clever.helpers import DP_HEADER, write
from .helpers import DP, KEY, KEY_TEXT, run
from .test_keys import _publish

PARAMS = {"days": 2, "students": 150, "teachers": 10, "staff": 4, "schools": 3}


def _demo_lake(tmp_path, pseudonymizer, np_root: str | None) -> Lake:
    src = TestDataSource(**PARAMS, cache_dir=str(tmp_path / "src")).ensure_generated()
    # plus bad rows and a headerless file: quarantine and error messages are exercised
    bad = (
        DP_HEADER
        + "\n2022-01-05,S77777,c77777,s1,A,True,bad,1\n"
        + "2022-01-05,S77778,c77778,s1,A,True,1,1\n" * 5
    )
    write(src, DP.replace("01-03", "01-05"), bad)
    write(src, DP.replace("01-03", "01-06"), "2022-01-06,S88888,c88888,s1,A,True,1,1\n")
    lake = Lake(str(tmp_path / "lake"), np_root)
    run(lake, src, pseudonymizer, share=0.5)
    _publish(lake, KEY.key_id)
    return lake


@pytest.fixture
def demo_lake(tmp_path, pseudonymizer) -> Lake:
    return _demo_lake(tmp_path, pseudonymizer, str(tmp_path / "np"))


def test_one_root_lake_skips_its_protected_files_and_says_so(tmp_path, pseudonymizer, capsys):
    """The default layout (no np root): stage2np, quarantine and catalog/clever_np.duckdb
    sit on the main root; they are the protected side, not findings, and the report warns.
    The analysts' catalog file beside them is still scanned."""
    lake = _demo_lake(tmp_path, pseudonymizer, None)
    assert os.path.exists(f"{lake.main.base}/catalog/clever_np.duckdb")
    report = audit(lake)
    assert report.findings == []
    assert (
        report.scanned["catalog tables"] == 2 + 3
    )  # the two tables and the catalog manifest's three
    assert any("np root" in w for w in report.warnings)
    con = duckdb.connect(f"{lake.main.base}/catalog/edulake.duckdb")
    con.execute("CREATE TABLE clever.leak AS SELECT ? AS who", ["S77778"])
    con.close()
    # the one-root layout is explicit (np root = root), as for the flows
    assert main(["audit", "--lake-root", lake.main.base, "--np-root", lake.main.base]) == 1
    out = capsys.readouterr().out
    assert "1 finding(s)" in out and "WARNING: stage1np, stage2np, quarantine" in out


def test_demo_lake_has_no_findings(demo_lake, capsys):
    ids = raw_identifiers(demo_lake)
    assert {"S77777", "c77777"} <= ids and len(ids) > 300
    report = audit(demo_lake)
    assert report.findings == []
    assert (
        report.scanned["parquet files"] >= 8 and report.scanned["catalog tables"] == 2 + 3
    )  # + manifest
    # the protected zones hold them (so the audit is not blind): quarantine and lookups
    assert demo_lake.list(Zone.QUARANTINE) and demo_lake.list(Zone.STAGE2NP)
    root = demo_lake.main.base
    assert main(["audit", "--lake-root", root, "--np-root", demo_lake.protected.base]) == 0
    assert "0 finding(s)" in capsys.readouterr().out


def _plant_parquet(lake: Lake, key: str, value: str) -> None:
    t = pa.table({"note": ["fine", f"call {value} back"], "x": [1, 2]})
    with lake.atomic_write(Zone.STAGE2P, key) as out:
        pq.write_table(t, out)


@pytest.mark.parametrize(
    "where",
    [
        "stage2p-value",
        "stage2p-metadata",
        "system-json",
        "exports-csv",
        "stray-quarantine",
        "catalog",
        "log",
    ],
)
def test_planted_raw_id_is_found_without_printing_it(demo_lake, tmp_path, capsys, where):
    raw = "S77778"  # a real sis_id from stage1np
    lake = demo_lake
    extra: list[str] = []
    if where == "stage2p-value":
        _plant_parquet(lake, "clever/daily_participation/date=2022-01-05/planted.parquet", raw)
    elif where == "stage2p-metadata":
        t = pa.table({"x": [1]}).replace_schema_metadata({"source_row": raw})
        with lake.atomic_write(Zone.STAGE2P, "clever/other/planted.parquet") as out:
            pq.write_table(t, out)
    elif where == "system-json":
        lake.write_json(Zone.SYSTEM, "runs/planted.json", {"error": f"bad id {raw}"})
    elif where == "exports-csv":
        lake.write_bytes(Zone.EXPORTS, "clever/export.csv", f"a,b\n1,{raw}\n".encode())
    elif where == "stray-quarantine":  # quarantine on the main root although np_root is set
        os.makedirs(f"{lake.main.base}/quarantine/clever", exist_ok=True)
        with open(f"{lake.main.base}/quarantine/clever/x.csv", "w") as f:
            f.write(f"line,raw\n2,{raw}\n")
    elif where == "catalog":
        con = duckdb.connect(f"{lake.main.base}/catalog/edulake.duckdb")
        con.execute("CREATE TABLE clever.leak AS SELECT ? AS who", [raw])
        con.close()
    elif where == "log":
        log = tmp_path / "run.log"
        log.write_text(f"12:00 INFO processed row for {raw}\n")
        extra = ["--log", str(log)]
    rc = main(["audit", "--lake-root", lake.main.base, "--np-root", lake.protected.base, *extra])
    out = capsys.readouterr().out
    assert rc == 1
    assert "1 finding(s)" in out and "FOUND raw identifier #" in out
    assert raw not in out  # location and a salted fingerprint, never the id


def test_short_or_embedded_ids_are_not_false_positives(tmp_path, pseudonymizer):
    src = str(tmp_path / "src")
    # sis_id 12 is too short to search; 1001 appears inside hex pseudonyms and numbers
    write(src, DP, DP_HEADER + "\n2022-01-03,12,c12345,s1,A,True,1001,12\n")
    lake = Lake(str(tmp_path / "lake"), str(tmp_path / "np"))
    run(lake, src, pseudonymizer)
    report = audit(lake)
    assert report.findings == [] and report.ids_too_short == 1 and report.ids_checked == 1


@pytest.mark.usefixtures("prefect_harness")
def test_flow_logs_and_artifacts_hold_no_raw_id(tmp_path, caplog, monkeypatch):
    """The real flow with bad rows, a headerless file and a forget request: no raw id in
    any log record or any artifact (read back from the Prefect API)."""
    import logging

    from flows.clever_participation import FilesFailed, clever_participation
    from flows.forget import forget_flow
    from tasks.audit import prefect_texts

    src = TestDataSource(**PARAMS, cache_dir=str(tmp_path / "src")).ensure_generated()
    bad = (
        DP_HEADER
        + "\n2022-01-05,S77777,c77777,s1,A,True,bad,1\n"
        + "2022-01-05,S77778,c77778,s1,A,True,1,1\n" * 5
    )
    write(src, DP.replace("01-03", "01-05"), bad)
    write(src, DP.replace("01-03", "01-06"), "2022-01-06,S88888,c88888,s1,A,True,1,1\n")
    root = str(tmp_path / "lake")
    monkeypatch.setenv("EDULAKE_HMAC_KEY", KEY_TEXT)
    caplog.set_level(logging.DEBUG)
    # Prefect's loggers do not propagate to the root logger: listen to them directly
    for name in ("prefect", "edulake"):
        logging.getLogger(name).addHandler(caplog.handler)
        monkeypatch.setattr(logging.getLogger(name), "level", logging.DEBUG)
    state = clever_participation(
        source="folder",
        source_path=src,
        lake_root=root,
        np_root=str(tmp_path / "np"),
        max_quarantine_share=0.5,
        return_state=True,
    )
    assert isinstance(state.result(raise_on_failure=False), FilesFailed)  # the headerless file
    ids_file = tmp_path / "forget.txt"
    ids_file.write_text("S77778\n")
    forget_state = forget_flow(
        ids_file=str(ids_file), lake_root=root, np_root=str(tmp_path / "np"), return_state=True
    )
    assert forget_state.is_completed()
    lake = Lake(root, str(tmp_path / "np"))
    ids = raw_identifiers(lake)
    assert "S77778" in ids
    messages = [r.getMessage() for r in caplog.records]
    assert any("forget:" in m for m in messages) and any("not-a-report" in m for m in messages)
    logs = [("caplog", "\n".join(messages))]
    runs = [str(state.state_details.flow_run_id), str(forget_state.state_details.flow_run_id)]
    texts = prefect_texts(runs)
    assert any("artifact" in loc for loc, _ in texts) and any("log" in loc for loc, _ in texts)
    report = audit(lake, texts=logs + texts)
    for name in ("prefect", "edulake"):
        logging.getLogger(name).removeHandler(caplog.handler)
    assert report.findings == [], [json.dumps(f.__dict__) for f in report.findings]
