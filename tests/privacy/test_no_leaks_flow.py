"""The two attacks of issue 16 (item 2), end to end through ``clever_participation``.

(a) a row with the wrong field count AND a byte that is not UTF-8: pyarrow's message
quotes the row; (b) a header whose line break was lost, so the first data row is glued
onto it. The planted ids must not appear in the console or the log records, the flow
run's and task runs' state messages, the artifacts, the events, nor in Prefect's result
storage (pickled exceptions and results: raw bytes, hex, base64, compressed).
"""

from __future__ import annotations

import json

import pytest

from edulake.core.lake import Lake, Zone
from edulake.privacy.audit import audit, raw_identifiers
from tests.keys import KEY_TEXT
from tests.logs import all_log_lines

from ..clever.helpers import DP_HEADER, write
from ..reliability.helpers import DP, RU
from .leaks import leaked, leaked_in_tree

GOOD = "2022-01-03,1001,c001,s1,A,True,1,1"
RU_GOOD = "2022-01-03,1001,c001,s1,A,app,Math,r1,3"
SIS_A, UID_A = "LEAKSIS0001", "LEAK-UUID-0001"
SIS_B, UID_B = "LEAKSIS0002", "LEAK-UUID-0002"

ATTACKS = {
    # (a) 9 fields and a Windows-1252 byte (0xe9) in the same row
    "malformed-and-not-utf8": (DP_HEADER + f"\n{GOOD}\n").encode()
    + f"2022-01-03,{SIS_A},{UID_A},s1,Caf".encode()
    + b"\xe9,True,1,1,9\n"
    + (GOOD.replace("1001", "1003") + "\n").encode(),
    # (b) the header's line break is lost: the first row is glued onto the header
    "glued-header": (
        DP_HEADER + f"2022-01-03,{SIS_B},{UID_B},s1,A,True,1,1\n" + GOOD + "\n"
    ).encode(),
}


def _run_flow(tmp_path, monkeypatch, content: bytes):
    from flows.clever_participation import clever_participation

    src = str(tmp_path / "src")
    write(src, DP, content)
    write(
        src,
        RU,
        f"date,sis_id,clever_user_id,clever_school_id,school_name,resource_type,resource_name,resource_id,num_access\n{RU_GOOD}\n",
    )
    monkeypatch.setenv("EDULAKE_HMAC_KEY", KEY_TEXT)
    monkeypatch.setenv("PREFECT_LOGGING_EXTRA_LOGGERS", "edulake")
    root, np_root = str(tmp_path / "lake"), str(tmp_path / "np")
    with all_log_lines() as logs:
        state = clever_participation(
            source="folder",
            source_path=src,
            lake_root=root,
            np_root=np_root,
            fail_report_age_days=100_000,  # the test files' dates are old on purpose
            return_state=True,
        )
    return state, logs.lines, Lake(root, np_root)


def _prefect_texts_with_terminal_event(
    run_id: str, events: tuple[str, ...] = ()
) -> list[tuple[str, str]]:
    """The run's Prefect texts, once the events of its final state, and the client-side
    `events` named, are stored.

    Events are written asynchronously, by two paths: the server emits the state events
    itself, while an event the run emitted goes through this process's events worker and
    can reach the server after the run's terminal one. So: send what the worker still
    holds, then wait for each expected event (never for a time)."""
    import time

    from prefect.events.worker import EventsWorker

    from tasks.audit import prefect_texts

    EventsWorker.drain_all(timeout=30, at_exit=False)
    for _ in range(300):
        texts = prefect_texts([run_id])
        stored = [(loc, t) for loc, t in texts if loc.startswith("prefect event ")]
        terminal = any(
            '"prefect.flow-run.Failed"' in t or '"prefect.flow-run.Completed"' in t
            for loc, t in stored
            if "prefect event prefect.flow-run." in loc
        )
        if terminal and all(any(f"prefect event {e}" in loc for loc, _ in stored) for e in events):
            return texts
        time.sleep(0.1)
    raise AssertionError(f"the flow run's events never all arrived: terminal and {events}")


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_harness")
@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_attack_leaves_no_id_in_any_prefect_record(tmp_path, monkeypatch, capfd, attack):
    from flows.clever_participation import FilesFailed
    from tasks.audit import prefect_storage_dir

    planted = [SIS_A, UID_A] if attack.startswith("malformed") else [SIS_B, UID_B]
    state, lines, lake = _run_flow(tmp_path, monkeypatch, ATTACKS[attack])
    run_id = str(state.state_details.flow_run_id)
    result = state.result(raise_on_failure=False)

    if attack.startswith("malformed"):
        # the bad row is quarantined, the other rows of the file are processed
        assert state.is_completed(), state.message
        (dp,) = [f for f in lake.list(Zone.QUARANTINE) if "daily" in f.key]
        text = lake.read_bytes(Zone.QUARANTINE, dp.key).decode()
        assert "expected 8 fields, got 9; bytes that are not UTF-8" in text
        assert SIS_A in text  # kept where it belongs: the protected quarantine zone
        assert result["rows_written"] == 3 and result["rows_quarantined"] == 1
    else:
        assert isinstance(result, FilesFailed)
        assert "column 9 (unrecognised, 11 chars)" in state.message
        assert "column 10 (unrecognised, 14 chars)" in state.message
        assert "missing columns: num_resources_accessed" in state.message

    console = capfd.readouterr()
    assert lines, "the log capture saw nothing"
    texts = _prefect_texts_with_terminal_event(run_id)
    kinds = {loc.split(" of ")[0].split(" ")[1] for loc, _ in texts}
    assert {"artifact", "log", "state", "event", "parameters"} <= kinds, kinds
    if not attack.startswith("malformed"):  # the failure is in the state records
        assert any("unrecognised" in t for loc, t in texts if "state of flow run" in loc)
    haystacks = {
        "console": console.out + console.err,
        "log records": "\n".join(lines),
        "state message": state.message or "",
        **{loc: t for loc, t in texts},
    }
    for where, text in haystacks.items():
        assert not leaked(text.encode(), planted), where
    storage = leaked_in_tree(prefect_storage_dir(), planted)
    assert storage == {}, sorted(storage)
    # and the audit agrees (it reads the same places plus the lake)
    assert set(planted) <= raw_identifiers(lake)
    from tasks.audit import prefect_storage_files

    report = audit(lake, texts=list(haystacks.items()), blobs=prefect_storage_files())
    assert report.findings == [], [json.dumps(f.__dict__) for f in report.findings]
