"""The lake lease on a local lake: one holder, bounded waits, a killed holder never blocks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading

import pytest

from edulake.core.lake import TMP_DIR, Lake, Zone
from edulake.core.lease import LakeLease, LeaseBusy, LeaseConfig, LeaseLost, lake_lease, read_holder

FAST = LeaseConfig(wait_s=0.3, ttl_s=5, poll_s=0.02)


def test_second_taker_waits_then_fails_naming_the_holder(tmp_path):
    a, b = Lake(str(tmp_path / "lake")), Lake(str(tmp_path / "lake"))
    with lake_lease(a, "clever-backfill", owner="run-a"), pytest.raises(LeaseBusy) as err:
        LakeLease(b, "clever-daily", config=FAST).acquire()
    msg = str(err.value)
    assert "clever-backfill" in msg and "run-a" in msg and "since" in msg
    assert "EDULAKE_LEASE__WAIT_S" in msg and "Nothing was changed" in msg
    # released: the next taker gets it at once
    with lake_lease(b, "clever-daily", config=FAST) as lease:
        assert lease.waited_s < FAST.wait_s


def test_a_waiting_run_logs_who_holds_it_and_gets_it_when_released(tmp_path):
    a, b = Lake(str(tmp_path / "lake")), Lake(str(tmp_path / "lake"))
    holder = LakeLease(a, "forget", owner="run-forget").acquire()
    told = threading.Event()
    messages: list[str] = []

    def on_wait(msg: str) -> None:
        messages.append(msg)
        told.set()

    got: list[LakeLease] = []
    waiter = threading.Thread(
        target=lambda: got.append(
            LakeLease(
                b, "clever-daily", config=LeaseConfig(wait_s=60, poll_s=0.02), on_wait=on_wait
            ).acquire()
        )
    )
    waiter.start()
    assert told.wait(30)
    assert not got  # still waiting while forget holds it
    holder.release()
    waiter.join(30)
    assert got and got[0].waited_s > 0
    assert "forget" in messages[0] and "run-forget" in messages[0]
    assert read_holder(b).purpose == "clever-daily"
    got[0].release()
    assert read_holder(b).released


RUNNER = textwrap.dedent(
    """
    import sys, time
    from edulake.core.lake import Lake, Zone
    from edulake.core.lease import LakeLease
    lake = Lake(sys.argv[1])
    LakeLease(lake, "clever-participation", owner="doomed").acquire()
    staged = lake.staged()
    with staged.open(Zone.STAGE1NP, "clever/raw.csv") as out:
        out.write(b"sis_id\\nRAWSIS0001\\n")  # raw bytes, staged, never committed
    print(lake.session, flush=True)
    time.sleep(600)
    """
)


def test_a_killed_holder_never_blocks_and_its_staging_is_swept_at_once(tmp_path):
    root = str(tmp_path / "lake")
    proc = subprocess.Popen(
        [sys.executable, "-c", RUNNER, root], stdout=subprocess.PIPE, text=True, cwd=os.getcwd()
    )
    session = proc.stdout.readline().strip()
    staging = os.path.join(root, TMP_DIR, session)
    assert os.listdir(staging)  # the raw bytes sit in the holder's staging folder
    with pytest.raises(LeaseBusy):
        LakeLease(Lake(root), "clever-daily", config=FAST).acquire()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with lake_lease(Lake(root), "clever-daily", config=FAST) as lease:
        assert lease.waited_s < FAST.wait_s
        assert not os.path.exists(staging) or not os.listdir(staging)


def test_a_lost_lease_stops_every_commit(tmp_path):
    lake = Lake(str(tmp_path / "lake"))
    lease = LakeLease(lake, "clever-participation").acquire()
    lake.write_bytes(Zone.SYSTEM, "ok.json", b"{}")  # holder commits
    lease._lost = "simulated"
    with pytest.raises(LeaseLost):
        lake.write_bytes(Zone.SYSTEM, "late.json", b"{}")
    assert not lake.exists(Zone.SYSTEM, "late.json")
    lease.release()
    assert lake.commit_guard is None


def test_same_process_other_lake_object_is_excluded_too(tmp_path):
    """Two flows in one process (threads of a worker) exclude each other: flock is per open file."""
    root = str(tmp_path / "lake")
    with lake_lease(Lake(root), "a"), pytest.raises(LeaseBusy):
        LakeLease(Lake(root), "b", config=FAST).acquire()
