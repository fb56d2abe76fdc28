"""The lake lease on S3 (SeaweedFS): conditional writes decide, exactly one taker wins."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter

import pytest
from botocore.exceptions import ClientError

from edulake.core.lake import Lake, Zone
from edulake.core.lease import LakeLease, LeaseBusy, LeaseConfig, LeaseLost, read_holder
from tests.aws.conftest import LAKE_BUCKET

pytestmark = pytest.mark.slow


def _lake(s3_options, prefix: str) -> Lake:
    return Lake(f"s3://{LAKE_BUCKET}/{prefix}", s3=s3_options)


def test_barrier_conditional_put_exactly_one_winner(s3_server):
    """32 concurrent If-None-Match PUTs: one 200, 31 x 412 (the suite's S3 honours them)."""
    clients = [s3_server.client() for _ in range(32)]
    for trial in range(3):
        barrier = threading.Barrier(32)
        out: list[int] = []

        def take(i: int, trial: int = trial) -> None:
            barrier.wait()
            try:
                clients[i].put_object(
                    Bucket=LAKE_BUCKET, Key=f"barrier/{trial}", Body=b"%d" % i, IfNoneMatch="*"
                )
                out.append(200)
            except ClientError as exc:
                out.append(exc.response["ResponseMetadata"]["HTTPStatusCode"])

        threads = [threading.Thread(target=take, args=(i,)) for i in range(32)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert Counter(out) == {200: 1, 412: 31}


def test_barrier_conditional_renew_exactly_one_winner(s3_server):
    """16 concurrent If-Match PUTs on one ETag: one wins (a takeover race has one winner)."""
    c = s3_server.client()
    etag = c.put_object(Bucket=LAKE_BUCKET, Key="barrier/renew", Body=b"0")["ETag"]
    clients = [s3_server.client() for _ in range(16)]
    barrier = threading.Barrier(16)
    out: list[int] = []

    def renew(i: int) -> None:
        barrier.wait()
        try:
            clients[i].put_object(Bucket=LAKE_BUCKET, Key="barrier/renew", Body=b"x", IfMatch=etag)
            out.append(200)
        except ClientError as exc:
            out.append(exc.response["ResponseMetadata"]["HTTPStatusCode"])

    threads = [threading.Thread(target=renew, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert Counter(out) == {200: 1, 412: 15}


def test_16_lake_leases_race_one_holds(s3_options):
    lakes = [_lake(s3_options, "race") for _ in range(16)]
    barrier = threading.Barrier(16)
    won: list[LakeLease] = []
    busy: list[str] = []

    def take(i: int) -> None:
        lease = LakeLease(lakes[i], f"run-{i}", config=LeaseConfig(wait_s=0, ttl_s=30, poll_s=0.05))
        barrier.wait()
        try:
            won.append(lease.acquire())
        except LeaseBusy as exc:
            busy.append(str(exc))

    threads = [threading.Thread(target=take, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1 and len(busy) == 15
    assert won[0].me.purpose in busy[0]
    won[0].release()
    assert read_holder(lakes[0]).released


def test_heartbeat_keeps_a_live_holder(s3_options):
    a, b = _lake(s3_options, "beat"), _lake(s3_options, "beat")
    cfg = LeaseConfig(wait_s=0, ttl_s=0.8, poll_s=0.05)
    holder = LakeLease(a, "long-backfill", config=cfg).acquire()
    deadline = read_holder(a).expires_at
    while read_holder(a).expires_at <= deadline:  # renewed by the heartbeat
        time.sleep(0.05)
    with pytest.raises(LeaseBusy):
        LakeLease(b, "daily", config=cfg).acquire()
    holder.check()
    holder.release()


RUNNER = textwrap.dedent(
    """
    import sys, time
    from edulake.core.lake import Lake, S3Options, Zone
    from edulake.core.lease import LakeLease, LeaseConfig
    root, endpoint, key, secret = sys.argv[1:5]
    lake = Lake(root, s3=S3Options(endpoint_url=endpoint, access_key_id=key, secret_access_key=secret, region="us-east-1"))
    LakeLease(lake, "doomed-run", config=LeaseConfig(ttl_s=1.0)).acquire()
    staged = lake.staged()
    with staged.open(Zone.STAGE1NP, "clever/raw.csv") as out:
        out.write(b"sis_id\\nRAWSIS0001\\n")
    print(lake.session, flush=True)
    time.sleep(600)
    """
)


def test_a_killed_holder_is_taken_over_after_expiry_and_its_staging_swept(s3_server, s3_options):
    root = f"s3://{LAKE_BUCKET}/killed"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            RUNNER,
            root,
            s3_server.endpoint_url,
            s3_server.access_key,
            s3_server.secret_key,
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=os.getcwd(),
    )
    session = proc.stdout.readline().strip()
    c = s3_server.client()
    staged = c.list_objects_v2(Bucket=LAKE_BUCKET, Prefix=f"killed/_tmp/{session}/")
    assert staged.get("KeyCount", 0) == 1
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    lake = Lake(root, s3=s3_options)
    with LakeLease(lake, "daily", config=LeaseConfig(wait_s=60, ttl_s=30, poll_s=0.1)) as lease:
        assert lease.waited_s > 0  # it had to wait for the expiry
        left = c.list_objects_v2(Bucket=LAKE_BUCKET, Prefix=f"killed/_tmp/{session}/")
        assert left.get("KeyCount", 0) == 0
        assert read_holder(lake).purpose == "daily"


def test_a_holder_that_cannot_renew_stops_committing(s3_options):
    a, b = _lake(s3_options, "lost"), _lake(s3_options, "lost")
    cfg = LeaseConfig(wait_s=30, ttl_s=0.6, poll_s=0.05)
    stalled = LakeLease(a, "stalled", config=cfg).acquire()
    stalled._stop.set()  # its heartbeat dies (a frozen process, a network partition)
    stalled._beat.join()
    taker = LakeLease(b, "daily", config=cfg).acquire()
    with pytest.raises(LeaseLost):
        a.write_bytes(Zone.SYSTEM, "late.json", b"{}")
    assert not b.exists(Zone.SYSTEM, "late.json")
    stalled.release()  # does not release the taker's lease
    assert read_holder(b).purpose == "daily" and not read_holder(b).released
    taker.release()
