"""The lease holder record is shown to every waiting run: it must say who, never whom.

A forget request holds the lake lease (paused there) for a person whose raw id is
planted in the data and in the request file. The holder record on disk, the waiting
run's log lines and its failure (``LeaseBusy`` quotes the holder) name the purpose, the
flow run, host and pid only: never the forgotten id, nor the key or another secret in
the forget run's environment.
"""

from __future__ import annotations

import os

import pytest

from edulake.core.lease import LOCK_NAME, RECORD_NAME
from tests.keys import KEY_TEXT

from ..clever.helpers import dp_rows, ru_rows, write
from ..privacy.leaks import leaked
from ..reliability.helpers import DP, RU
from .test_pairs import roots

pytestmark = pytest.mark.slow
SIS, UID = "LEAKFGT8801", "LEAK-FGT-UID-8801"
OTHER = ("KEEPSIS8802", "KEEP-UID-8802")
SECRET = "s3cr3t-L34se-77c1"  # planted, not a credential


def test_the_holder_record_and_the_waiters_never_name_the_forgotten(tmp_path, launcher):
    src = str(tmp_path / "src")
    people = [(SIS, UID), OTHER]
    write(src, DP, dp_rows("2022-01-03", people))
    write(src, RU, ru_rows("2022-01-03", people))
    lake, np_root = roots(tmp_path / "x")
    launcher.run("clever", lake, np_root, src)
    ids = tmp_path / "request.txt"
    ids.write_text(f"{SIS}\n{UID}\n")
    planted = [SIS, UID, KEY_TEXT, SECRET]

    holder = launcher.start(
        "forget",
        lake,
        np_root,
        str(ids),
        pause="lease.acquired",
        env={"EDULAKE_LIBINSIGHT_CLIENT_SECRET": SECRET},
    )
    try:
        holder.wait_reached("lease.acquired")
        folder = os.path.join(lake, "_system", "lease")
        names = sorted(os.listdir(folder))
        assert RECORD_NAME in names and LOCK_NAME in names, names
        for name in names:
            with open(os.path.join(folder, name), "rb") as f:
                data = f.read()
            assert not leaked(data, planted), name
        with open(os.path.join(folder, RECORD_NAME), "rb") as f:
            assert b'"purpose": "forget"' in f.read()
        # a run that waits, says whom it waits for, gives up (LeaseBusy) and fails
        waiter = launcher.start(
            "clever",
            lake,
            np_root,
            src,
            env={
                "EDULAKE_LEASE__WAIT_S": "2",
                "PREFECT_LOGGING_LEVEL": "INFO",
                "PREFECT_LOGGING_EXTRA_LOGGERS": "edulake",
            },
        )
        assert waiter.finish() == 1
        said = waiter.out + waiter.err
        assert "waiting for the lake lease: held by forget" in said, said[-3000:]
        assert "LeaseBusy" in said and "is locked by forget" in said, said[-3000:]
        assert not leaked(said.encode(), planted)
    finally:
        holder.release("lease.acquired")
    assert holder.finish() == 0, holder.err[-4000:]
    assert not leaked((holder.out + holder.err).encode(), planted)
