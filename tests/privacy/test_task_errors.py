"""Whatever exception leaves a task or a flow carries no row data and no secret.

The attack: a logic function under a task (landing, publishing, the LibInsight transform)
or under a flow's own body raises an exception whose message quotes a raw identifier
and a secret, as a library quoting a row or an echoed request would. The run fails; the
planted strings must not be in the state messages, logs, artifacts or events Prefect
keeps, nor in its result storage (the pickled exception), and the PII audit of those
places (``edulake.privacy.audit.audit`` over ``tasks.audit.prefect_texts`` and the
result storage) finds nothing.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import pytest

from edulake.core.lake import Lake
from edulake.privacy.audit import audit, raw_identifiers
from tests.keys import KEY_TEXT
from tests.logs import all_log_lines

from ..clever.helpers import dp_rows, ru_rows, write
from ..reliability.helpers import DP, RU
from .leaks import leaked, leaked_in_tree
from .test_no_leaks_flow import _prefect_texts_with_terminal_event

SIS, UID = "LEAKSIS7101", "LEAK-UUID-7101"
STAFF = "Priya Natarajan"  # a staff name the LibInsight stand-in records in _entered_by
SECRET = "s3cr3t-Pl4nted-9f2b"  # planted, not a credential


def _raiser(planted: str):
    def boom(*_args: Any, **_kwargs: Any) -> Any:
        raise ValueError(
            f"cannot handle row '2022-01-03,{planted},s1' (Authorization: Bearer {SECRET})"
        )

    return boom


CLEVER_ATTACKS = {
    # a task's logic function
    "landing": "edulake.sources.clever.pipeline.land_reports",  # in land-files
    "publish": "tasks.publish.publish_all",  # in publish-tables
    # the flow's own body (outside any task)
    "flow-body": "edulake.sources.clever.pipeline.catalog_tables",
}


def _storage_since(started: float) -> list[tuple[str, bytes]]:
    from tasks.audit import prefect_storage_dir

    root = prefect_storage_dir()
    out = []
    for folder, _dirs, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            if os.path.getmtime(path) >= started - 1:
                with open(path, "rb") as f:
                    out.append((path, f.read()))
    return out


def _assert_nothing_leaked(
    state: Any, lines: list[str], console: str, lake: Lake, planted, started
):
    from tasks.audit import prefect_storage_dir

    run_id = str(state.state_details.flow_run_id)
    texts = _prefect_texts_with_terminal_event(run_id)
    kinds = {loc.split(" of ")[0].split(" ")[1] for loc, _ in texts}
    assert {"log", "state", "event"} <= kinds, kinds
    haystacks = {
        "console": console,
        "log records": "\n".join(lines),
        "state message": state.message or "",
        **{loc: t for loc, t in texts},
    }
    for where, text in haystacks.items():
        assert not leaked(text.encode(), [*planted, SECRET]), where
    storage = leaked_in_tree(prefect_storage_dir(), [*planted, SECRET])
    assert storage == {}, sorted(storage)
    # the audit reads the same places and agrees (the planted ids are real raw ids here)
    assert set(planted) <= raw_identifiers(lake)
    report = audit(lake, texts=list(haystacks.items()), blobs=_storage_since(started))
    assert report.findings == [], [json.dumps(f.__dict__) for f in report.findings]


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_harness")
@pytest.mark.parametrize("attack", sorted(CLEVER_ATTACKS))
def test_a_clever_failure_leaves_no_data_or_secret_in_prefect(tmp_path, monkeypatch, capfd, attack):
    import importlib

    from flows.clever_participation import clever_participation

    module, _, attr = CLEVER_ATTACKS[attack].rpartition(".")
    monkeypatch.setattr(importlib.import_module(module), attr, _raiser(f"{SIS},{UID}"))
    src = str(tmp_path / "src")
    write(src, DP, dp_rows("2022-01-03", [(SIS, UID)]))
    write(src, RU, ru_rows("2022-01-03", [(SIS, UID)]))
    monkeypatch.setenv("EDULAKE_HMAC_KEY", KEY_TEXT)
    monkeypatch.setenv("PREFECT_LOGGING_EXTRA_LOGGERS", "edulake")
    root, np_root = str(tmp_path / "lake"), str(tmp_path / "np")
    started = time.time()
    with all_log_lines() as logs:
        state = clever_participation(
            source="folder",
            source_path=src,
            lake_root=root,
            np_root=np_root,
            fail_report_age_days=100_000,  # the test files' dates are old on purpose
            return_state=True,
        )
    assert state.is_failed()
    # the failure still says what failed: the original type survives the scrubbing
    assert "ValueError" in (state.message or ""), state.message
    if attack == "landing":
        # nothing was landed: make the planted ids raw ids of the lake for the audit
        from edulake.connectors.files import FolderSource
        from edulake.sources.clever import pipeline

        monkeypatch.undo()
        pipeline.land_reports(
            Lake(root, np_root), FolderSource(src), pipeline.discover(FolderSource(src)).reports
        )
    console = capfd.readouterr()
    _assert_nothing_leaked(
        state, logs.lines, console.out + console.err, Lake(root, np_root), [SIS, UID], started
    )


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_harness")
def test_a_libinsight_transform_failure_leaves_no_name_or_secret_in_prefect(
    tmp_path, monkeypatch, capfd
):
    import datetime as dt

    import tasks.libinsight
    from edulake.demo.libinsight_server import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET
    from flows.libinsight_dataset import libinsight_dataset
    from tests.servers.libinsight import libinsight_server

    monkeypatch.setattr(tasks.libinsight, "process_range", _raiser(STAFF))
    monkeypatch.setenv("EDULAKE_LIBINSIGHT_CLIENT_SECRET", DEMO_CLIENT_SECRET)
    monkeypatch.setenv("PREFECT_LOGGING_EXTRA_LOGGERS", "edulake")
    root = str(tmp_path / "lake")
    started = time.time()
    with libinsight_server() as srv, all_log_lines() as logs:
        state = libinsight_dataset(
            base_url=srv.base_url,
            dataset_id=12345,
            client_id=DEMO_CLIENT_ID,
            client_secret_block=None,
            lake_root=root,
            demo=True,
            from_date=dt.date(2022, 3, 1),
            to_date=dt.date(2022, 3, 31),
            return_state=True,
        )
    assert state.is_failed()
    assert "ValueError" in (state.message or ""), state.message
    console = capfd.readouterr()
    lake = Lake(root, f"{root}-protected")
    _assert_nothing_leaked(state, logs.lines, console.out + console.err, lake, [STAFF], started)
