"""The audit stops trusting the specs, reads every Prefect record of a run, and runs
before every Clever publish.

* identifiers come from identifier-named columns and from header cells too, not only
  from the columns a spec hashes;
* `edulake audit --flow-run ID` reads the run's logs, flow and task state messages,
  artifacts, events and Prefect's result storage (pickles in base64);
* `clever_participation` fails, unpublished, when what it wrote holds a raw id.
"""

from __future__ import annotations

import os

import duckdb
import pytest

from edulake.cli import main
from edulake.core.lake import Lake, Zone
from edulake.privacy.audit import audit_run, raw_identifiers
from edulake.privacy.identifiers import IDENTIFIER_PATTERNS, is_identifier_name
from edulake.sources.registry import clever_scope
from edulake.specs import PiiOp

from ..clever.helpers import DP_HEADER, write
from ..keys import KEY_TEXT
from .helpers import DP, run

GOOD = "2022-01-03,1001,c001,s1,Lincoln Elementary,True,1,1"
GLUED = DP_HEADER + "2022-01-03,LEAKSIS0002,LEAK-UUID-0002,s1,Lincoln Elementary,True,1,1\n"


def test_identifier_names():
    assert IDENTIFIER_PATTERNS
    for name in (
        "sis_id",
        "staff_id",
        "student_id",
        "clever_user_id",
        "email",
        "_entered_by",
        "Entered By",
        "created_by",
        "name",
        "first_name",
        "Last Name",
    ):
        assert is_identifier_name(name), name
    for name in (
        "school_name",
        "resource_name",
        "clever_school_id",
        "resource_id",
        "date",
        "num_logins",
        "active",
    ):
        assert not is_identifier_name(name), name


def test_ids_come_from_headers_and_identifier_columns_not_only_from_the_specs(
    tmp_path, pseudonymizer, monkeypatch
):
    src = str(tmp_path / "src")
    write(src, DP, GLUED + GOOD + "\n")  # (b): the first row glued onto the header
    headerless = DP.replace("01-03", "01-04")
    write(src, headerless, "2022-01-04,HDRLESS0001,HDRLESS-UID-1,s1,A,True,1,1\n")
    lake = Lake(str(tmp_path / "lake"), str(tmp_path / "np"))
    run(lake, src, pseudonymizer)
    # any other CSV landed in stage1np: identifier-named columns, whatever they are
    lake.write_bytes(Zone.STAGE1NP, "other/roster.csv", b"email,grade\nana@example.org,5\n")
    import edulake.sources.registry as registry_mod

    real = registry_mod._clever_specs

    def forgetful(lake):  # specs that no longer say sis_id is personal
        specs = [s.model_copy(deep=True) for s in real(lake)]
        for spec in specs:
            for c in spec.columns:
                c.op = PiiOp.KEEP
        return specs

    monkeypatch.setattr(registry_mod, "_clever_specs", forgetful)
    ids = raw_identifiers(lake)
    assert {"LEAKSIS0002", "LEAK-UUID-0002"} <= ids  # header cells
    assert {"1001", "c001"} <= ids  # identifier-named columns (no spec says hash)
    assert {"HDRLESS0001", "HDRLESS-UID-1"} <= ids  # headerless: the spec's column order
    assert "ana@example.org" in ids
    # values the file carries in its published columns are not ids, nor booleans, numbers
    assert not {"Lincoln Elementary", "True", "2022-01-03", "1"} & ids


@pytest.fixture
def glued_lake(tmp_path, pseudonymizer) -> Lake:
    src = str(tmp_path / "src")
    write(src, DP, GLUED + GOOD + "\n")
    lake = Lake(str(tmp_path / "lake"), str(tmp_path / "np"))
    run(lake, src, pseudonymizer)
    return lake


@pytest.fixture
def planted_storage():
    """Removes the result files a test planted in Prefect's storage: the suite shares it,
    and the leak tests scan all of it."""
    from tasks.audit import prefect_storage_dir

    root = prefect_storage_dir()
    before = set(os.listdir(root)) if os.path.isdir(root) else set()
    yield
    if os.path.isdir(root):
        for name in set(os.listdir(root)) - before:
            path = os.path.join(root, name)
            if os.path.isfile(path):
                os.remove(path)


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_harness")
@pytest.mark.parametrize(
    "where", ["log", "task-state", "flow-state", "artifact", "event", "storage"]
)
def test_audit_reads_every_prefect_record_of_a_run(glued_lake, capsys, where, planted_storage):
    """Each place a run leaves text, planted with the id of attack (b), is found."""
    from prefect import flow, get_run_logger, task
    from prefect.artifacts import create_markdown_artifact
    from prefect.events import emit_event

    raw = "LEAKSIS0002"

    @task(persist_result=True)
    def keep(value: str) -> dict[str, str]:
        return {"kept": value}

    @task
    def fail(value: str) -> None:
        raise ValueError(f"bad header cell {value}")

    @flow(name="planted", persist_result=where == "storage")
    def planted() -> None:
        if where == "log":
            get_run_logger().info("processed row for %s", raw)
        elif where == "task-state":
            fail(raw, return_state=True)
        elif where == "flow-state":
            raise ValueError(f"unknown columns: {raw}")
        elif where == "artifact":
            create_markdown_artifact(key="planted", markdown=f"- {raw}")
        elif where == "event":
            emit_event(
                event="edulake.planted", resource={"prefect.resource.id": "x"}, payload={"who": raw}
            )
        elif where == "storage":
            keep(raw)

    state = planted(return_state=True)
    run_id = str(state.state_details.flow_run_id)
    if where == "event":  # events are stored asynchronously: wait for ours, not for a time
        from tests.privacy.test_no_leaks_flow import _prefect_texts_with_terminal_event

        _prefect_texts_with_terminal_event(run_id, events=("edulake.planted",))
    lake = glued_lake
    capsys.readouterr()
    args = ["audit", "--lake-root", lake.main.base, "--np-root", lake.protected.base]
    rc = main([*args, "--flow-run", run_id])
    out = capsys.readouterr().out
    assert rc == 1, out
    assert "FOUND raw identifier #" in out and raw not in out
    expected = {
        "log": "prefect log",
        "task-state": "prefect state of task run",
        "flow-state": "prefect state of flow run",
        "artifact": "prefect artifact planted",
        "event": "prefect event edulake.planted",
        "storage": "prefect result storage",
    }[where]
    assert expected in out, out


def _forgetful_specs(monkeypatch):
    """The pipeline's specs with sis_id kept in clear (a spec bug the audit must catch)."""
    from edulake.sources.clever import pipeline

    real = pipeline.specs

    def specs():
        out = real()
        for spec in out.values():
            spec.column("sis_id").op = PiiOp.KEEP
        return out

    monkeypatch.setattr(pipeline, "specs", specs)


@pytest.mark.usefixtures("prefect_harness")
def test_a_run_that_wrote_a_raw_id_fails_unpublished(tmp_path, monkeypatch):
    from flows.clever_participation import clever_participation
    from tasks.audit import LeakFound

    src = str(tmp_path / "src")
    write(src, DP, DP_HEADER + "\n" + GOOD + "\n" + GOOD.replace("1001", "1002") + "\n")
    monkeypatch.setenv("EDULAKE_HMAC_KEY", KEY_TEXT)
    _forgetful_specs(monkeypatch)
    root, np_root = str(tmp_path / "lake"), str(tmp_path / "np")
    for _ in range(2):  # and the next run refuses too: the partitions stay unpublished
        state = clever_participation(
            source="folder",
            source_path=src,
            lake_root=root,
            np_root=np_root,
            fail_report_age_days=100_000,  # 2022 test data: stale by design, not the point
            return_state=True,
        )
        assert isinstance(state.result(raise_on_failure=False), LeakFound)
        assert "pre-publish PII audit found" in state.message and "1001" not in state.message
    db = os.path.join(root, "catalog", "edulake.duckdb")
    if os.path.exists(db):
        con = duckdb.connect(db, read_only=True)
        tables = con.execute("SELECT table_name FROM duckdb_tables() WHERE NOT internal").fetchall()
        con.close()
        assert tables == []
    # held back until an audit is clean: the catalog follows the lake, this keeps it out
    assert Lake(root, np_root).exists(Zone.SYSTEM, "audit/clever/held.json")


def test_the_scoped_audit_is_clean_on_a_clean_run(glued_lake, tmp_path, pseudonymizer):
    src = str(tmp_path / "src2")
    write(
        src, DP.replace("01-03", "01-05"), DP_HEADER + "\n" + GOOD.replace("01-03", "01-05") + "\n"
    )
    _, _, processed = run(glued_lake, src, pseudonymizer)
    report = audit_run(glued_lake, clever_scope(processed.files, processed.changed))
    assert report.findings == []
    assert report.scanned["parquet files"] == 1 and report.ids_checked >= 2


def test_the_scoped_audit_reads_the_run_messages_but_not_their_counts(glued_lake):
    from types import SimpleNamespace

    assert "1001" in raw_identifiers(glued_lake)  # a numeric sis_id
    from edulake.core.landing import Ledger

    ((name, entry),) = Ledger(glued_lake, "clever").latest().items()

    def result(error: str) -> SimpleNamespace:
        return SimpleNamespace(name=name, sha256=entry.sha256, status="failed", error=error)

    counts = result("3 of 1001 rows (0.3%) failed validation; column 9 (unrecognised, 11 chars)")
    assert audit_run(glued_lake, clever_scope([counts], {})).findings == []
    leak = result("unknown columns: LEAKSIS0002")
    (finding,) = audit_run(glued_lake, clever_scope([leak], {})).findings
    assert finding.location == f"result of {name}" and "LEAKSIS0002" not in str(finding)
