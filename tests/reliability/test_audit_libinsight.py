"""The PII audit on a lake with LibInsight and Clever: staff names are raw identifiers.

The LibInsight part is built by the real flow against the bundled local server; the
Clever part by the real pipeline. ``_entered_by`` (a staff member's name, with spaces and
apostrophes) is what the reference-desk config pseudonymizes.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from edulake.cli import main
from edulake.core.lake import Lake, Zone
from edulake.demo.libinsight_server import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, DEMO_DATASET_ID
from edulake.privacy.audit import Auditor, audit, libinsight_configs, raw_identifiers
from edulake.privacy.pseudonym import Pseudonymizer
from edulake.sources.libinsight.config import load_dataset_config
from tests.logs import all_log_lines
from tests.servers.libinsight import libinsight_server

from .helpers import KEY
from .test_audit import _demo_lake

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]
STAFF = ["Maria Lopez", "Jamal Carter", "Anne O'Neil", "Wei Zhang", "Priya Natarajan", "Tom Berg"]
NAME = "Anne O'Neil"  # a phrase with a separator inside: token matching alone misses it
EXPORT = "libinsight/reference_desk_12345.csv"  # the demo dataset's own table


@dataclass
class MixedLake:
    """A lake holding both sources, and what the LibInsight flow logged and returned."""

    lake: Lake
    logs: list[str]
    flow_run_id: str


def _build(base: Path, separate_np: bool) -> MixedLake:
    from flows.libinsight_dataset import libinsight_dataset

    np_root = str(base / "np") if separate_np else None
    lake = _demo_lake(base, Pseudonymizer(KEY), np_root)  # Clever, published
    with all_log_lines() as handler, libinsight_server(revision=1) as srv:
        state = libinsight_dataset(
            base_url=srv.base_url,
            dataset_id=DEMO_DATASET_ID,
            client_id=DEMO_CLIENT_ID,
            client_secret_block=None,
            lake_root=lake.main.base,
            np_root=np_root or lake.main.base,  # np root = root: the one-root layout
            from_date=dt.date(2022, 1, 1),
            to_date=dt.date(2022, 3, 31),
            demo=True,
            return_state=True,
        )
    assert state.is_completed()
    return MixedLake(lake, handler.lines, str(state.state_details.flow_run_id))


@pytest.fixture(scope="module")
def mixed(tmp_path_factory) -> Iterator[dict[bool, MixedLake]]:
    """Two lakes (with and without a separate np root), each built once for the module."""
    mp = pytest.MonkeyPatch()
    mp.setenv("EDULAKE_LIBINSIGHT_CLIENT_SECRET", DEMO_CLIENT_SECRET)
    try:
        yield {sep: _build(tmp_path_factory.mktemp(f"np{sep}"), sep) for sep in (True, False)}
    finally:
        mp.undo()


@pytest.fixture
def fresh(mixed, tmp_path) -> Lake:
    """A copy of the np-root lake that a test may plant things in."""
    src = mixed[True].lake
    shutil.copytree(src.main.base, tmp_path / "lake")
    shutil.copytree(src.protected.base, tmp_path / "np")
    return Lake(str(tmp_path / "lake"), str(tmp_path / "np"))


@pytest.mark.parametrize("separate_np", [True, False], ids=["np-root", "one-root"])
def test_mixed_lake_has_no_findings(mixed, separate_np):
    lake = mixed[separate_np].lake
    ids = raw_identifiers(lake)
    assert set(STAFF) <= ids  # the staff names are collected from the raw pages
    assert "S77778" in ids  # and Clever's ids still are
    report = audit(lake)
    assert report.findings == [], [json.dumps(f.__dict__) for f in report.findings]
    assert (
        report.scanned["catalog tables"] == 3 + 3
    )  # two Clever tables, reference_desk, the manifest
    # the protected side holds the names, so the audit is not blind
    lookups = [o.key for o in lake.list(Zone.STAGE2NP, "libinsight")]
    assert any("entered_by_lookup" in k for k in lookups)
    # the Tableau export carries pseudonyms, never names
    text = lake.read_bytes(Zone.EXPORTS, EXPORT).decode()
    rows = list(csv.DictReader(io.StringIO(text)))
    assert rows and "entered_by" not in rows[0]
    assert all(re.fullmatch(r"[0-9a-f]{64}", r["entered_by_pseudonym"]) for r in rows)
    assert not any(name in text for name in STAFF)


def test_dataset_is_read_with_the_config_its_watermark_names(mixed):
    lake = mixed[True].lake
    configs = libinsight_configs(lake)
    assert [c.name for c in configs[DEMO_DATASET_ID]] == ["reference_desk"]
    unmapped = [c.name for c in configs[None]]
    assert unmapped == ["instruction_log", "reference_desk"]  # unmapped: every config


def test_flow_logs_and_artifacts_hold_no_staff_name(mixed):
    from tasks.audit import prefect_texts

    m = mixed[True]
    assert any("records" in line for line in m.logs)  # the handler did hear the flow
    texts = prefect_texts([m.flow_run_id])
    assert any("artifact" in loc for loc, _ in texts) and any("log" in loc for loc, _ in texts)
    report = audit(m.lake, texts=[("flow logs", "\n".join(m.logs)), *texts])
    assert report.findings == [], [json.dumps(f.__dict__) for f in report.findings]


def _plant_month(lake: Lake) -> None:
    t = pa.table(
        {
            "comments_notes": ["fine", f"ask {NAME} (desk)"],
            "topics_covered": [["Databases"], ["Catalog", "Printing"]],
        }
    )
    with lake.atomic_write(Zone.STAGE2P, "libinsight/reference_desk/month=2099-01/x.parquet") as f:
        pq.write_table(t, f)


def _plant_list(lake: Lake) -> None:
    t = pa.table({"topics_covered": [["Databases", NAME]]})
    with lake.atomic_write(Zone.STAGE2P, "libinsight/reference_desk/month=2099-02/x.parquet") as f:
        pq.write_table(t, f)


def _plant_export(lake: Lake) -> None:
    rows = list(csv.DictReader(io.StringIO(lake.read_bytes(Zone.EXPORTS, EXPORT).decode())))
    rows.append({**rows[0], "entered_by_pseudonym": NAME})  # as if the export forgot to hash
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    lake.write_bytes(Zone.EXPORTS, EXPORT, out.getvalue().encode())


def _plant_catalog(lake: Lake) -> None:
    con = duckdb.connect(f"{lake.main.base}/catalog/edulake.duckdb")
    con.execute("CREATE TABLE libinsight.leak AS SELECT 'x' AS a, [?] AS who", [NAME])
    con.close()


@pytest.mark.parametrize("where", ["stage2p-value", "stage2p-list", "export", "catalog", "log"])
def test_planted_staff_name_is_found_without_printing_it(fresh, tmp_path, capsys, where):
    extra: list[str] = []
    if where == "stage2p-value":
        _plant_month(fresh)
    elif where == "stage2p-list":
        _plant_list(fresh)
    elif where == "export":
        _plant_export(fresh)
    elif where == "catalog":
        _plant_catalog(fresh)
    elif where == "log":
        log = tmp_path / "run.log"
        log.write_text(f"12:00 INFO record 42 entered by {NAME}; retrying\n")
        extra = ["--log", str(log)]
    rc = main(["audit", "--lake-root", fresh.main.base, "--np-root", fresh.protected.base, *extra])
    out = capsys.readouterr().out
    assert rc == 1
    assert "1 finding(s)" in out and "FOUND raw identifier #" in out
    assert NAME not in out and "O'Neil" not in out


def test_phrases_match_whole_and_bounded():
    """A name is found as a whole (any separators around it), never inside a longer word,
    and a name made of two neighbouring values is not a finding."""
    auditor = Auditor({"Tom Berg", "Anne O'Neil", "S77778"})
    assert auditor.matches(b'{"by": "Tom Berg", "id": "S77778"}') == {"Tom Berg", "S77778"}
    assert auditor.matches(b"(Anne O'Neil)\n") == {"Anne O'Neil"}
    assert auditor.matches(b"Tom Bergman, Anne O'Neill, xTom Berg, S777789") == set()
    assert auditor.matches("Tom Bergé".encode()) == set()  # a letter, even multi-byte
    auditor.scan_values("t", "c", pa.array(["Tom", "Berg", "Tom Berg", None]))
    assert [f.detail for f in auditor.report.findings] == ["value in column c"]


def test_a_config_given_by_path_is_used(mixed, tmp_path):
    """A config that is not bundled (a YAML path given to the flow) adds its protected
    fields, for the dataset it declares."""
    cfg = load_dataset_config("reference_desk").model_copy(update={"name": "desk_two"})
    cfg = cfg.model_copy(update={"dataset_id": 777})
    configs = libinsight_configs(mixed[True].lake, [cfg])
    assert [c.name for c in configs[777]] == ["desk_two"]
    assert {c.name for c in configs[None]} == {"instruction_log", "reference_desk", "desk_two"}
