"""Overlapping writing runs end as if they ran one after the other (issue: many writers).

Each pair runs twice on fresh lakes: one after the other (the reference), then overlapped
with the first run held at a pause point while it holds the lake lease and the second
waiting for it. Both must succeed and the lake (stage2p, stage2np lookups) and the
catalog (every table, content checksums) must equal the reference. With one side
SIGKILLed while it holds the lease, the other takes over and a re-run of the killed one
ends equal to the reference too.
"""

from __future__ import annotations

import csv
import glob
import os
import time

import duckdb
import pyarrow.dataset as ds
import pytest

from edulake.core.lake import Lake, Zone
from edulake.core.lease import read_holder
from edulake.demo.clever_testdata import TestDataSource
from edulake.privacy.lookup import read_lookup
from tests.reliability.helpers import checksum, lake_fingerprint, read_table

from .conftest import NEW_KEY_TEXT

pytestmark = pytest.mark.slow

PARAMS = {"days": 4, "students": 150, "teachers": 10, "staff": 3, "schools": 2}
FIRST_HALF = ("2022-01-03", "2022-01-04")
SECOND_HALF = ("2022-01-05", "2022-01-06")


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> str:
    folder = str(tmp_path_factory.mktemp("clever-src") / "src")
    path = TestDataSource(**PARAMS, cache_dir=folder).ensure_generated()
    days = sorted({os.path.basename(p)[:10] for p in glob.glob(f"{path}/*/*.csv")})
    assert days[:4] == ["2022-01-03", "2022-01-04", "2022-01-05", "2022-01-06"], days
    return path


def roots(base) -> tuple[str, str]:
    os.makedirs(base, exist_ok=True)
    return str(base / "lake"), str(base / "np")


def catalog_fingerprint(lake_root: str, np_root: str) -> dict[str, tuple[int, str]]:
    """Row count and content checksum of every table in the catalog files."""
    out: dict[str, tuple[int, str]] = {}
    files = [os.path.join(lake_root, "catalog", "edulake.duckdb")]
    files += sorted(glob.glob(os.path.join(np_root, "catalog", "*_np.duckdb")))
    for path in files:
        con = duckdb.connect(path, read_only=True)
        try:
            tables = con.execute(
                "SELECT table_schema, table_name FROM information_schema.tables "
                "WHERE table_type = 'BASE TABLE' AND table_schema NOT IN ('edulake') "
                "ORDER BY 1, 2"
            ).fetchall()
            for schema, name in tables:
                if name.startswith("manifest") or name == "publish_log":
                    continue
                t = con.sql(f'SELECT * FROM "{schema}"."{name}"').to_arrow_table()
                out[f"{os.path.basename(path)}:{schema}.{name}"] = checksum(t)
        finally:
            con.close()
    return out


def everything(lake_root: str, np_root: str) -> dict[str, tuple[int, str]]:
    lake = Lake(lake_root, np_root)
    return {**lake_fingerprint(lake), **catalog_fingerprint(lake_root, np_root)}


def overlap(launcher, first: tuple[str, ...], second: tuple[str, ...], pause: str, **kw):
    """Start ``first`` held at ``pause`` (lease held), start ``second``, see it wait, release."""
    a = launcher.start(*first, pause=pause, env=kw.get("env_a"))
    a.wait_reached(pause)
    b = launcher.start(*second, env=kw.get("env_b"))
    b.wait_reached("lease.waiting")
    assert a.proc.poll() is None and b.proc.poll() is None
    a.release(pause)
    code_a, code_b = a.finish(), b.finish()
    assert code_a == 0, a.err[-4000:]
    assert code_b == 0, b.err[-4000:]
    return a, b


@pytest.fixture(scope="module")
def clever_reference(tmp_path_factory, source, prefect_api):
    """Both halves, one after the other: the state every overlap must end in."""
    from .conftest import Launcher

    base = tmp_path_factory.mktemp("reference")
    lake, np_root = roots(base / "ref")
    launcher = Launcher(base, env={"PREFECT_API_URL": prefect_api})
    launcher.run("clever", lake, np_root, source, *FIRST_HALF)
    launcher.run("clever", lake, np_root, source, *SECOND_HALF)
    return everything(lake, np_root)


def test_daily_and_backfill_overlapping_end_as_serial(tmp_path, launcher, source, clever_reference):
    lake, np_root = roots(tmp_path / "x")
    overlap(
        launcher,
        ("clever", lake, np_root, source, *SECOND_HALF),  # the daily, held before publishing
        ("clever", lake, np_root, source, *FIRST_HALF),  # a backfill of other days
        pause="clever.processed",
    )
    got = everything(lake, np_root)
    assert got == clever_reference
    # disjoint dates: every identity of both halves is in the lookup
    ids = read_lookup(Lake(lake, np_root), "clever", "clever_user_id")
    assert ids.num_rows == clever_reference["stage2np.clever_user_id"][0]


def test_a_cli_run_during_a_flow_run_on_a_server_waits(
    tmp_path, launcher, source, clever_reference
):
    """The second run is the CLI with its own temporary Prefect server: the lease alone guards."""
    lake, np_root = roots(tmp_path / "x")
    cli = (
        sys_python(),
        "-m",
        "edulake",
        "clever",
        "--source",
        "folder",
        "--source-path",
        source,
        "--lake-root",
        lake,
        "--np-root",
        np_root,
        "--report-from",
        FIRST_HALF[0],
        "--report-to",
        FIRST_HALF[1],
    )
    a = launcher.start("clever", lake, np_root, source, *SECOND_HALF, pause="lease.acquired")
    a.wait_reached("lease.acquired")
    cli_env = {
        "PREFECT_API_URL": "",  # a temporary server of its own, as `edulake clever` on a laptop
        "PREFECT_HOME": str(tmp_path / "cli-prefect-home"),
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
        "EDULAKE_MAX_QUARANTINE_SHARE": "0.5",
    }
    b = launcher.start(*cli, module="", env=cli_env)
    b.wait_reached("lease.waiting")
    assert read_holder(Lake(lake, np_root)).purpose == "clever-participation"
    a.release("lease.acquired")
    assert a.finish() == 0, a.err[-3000:]
    assert b.finish() == 0, b.err[-3000:]
    assert everything(lake, np_root) == clever_reference


def sys_python() -> str:
    import sys

    return sys.executable


def test_killed_while_holding_the_lease_then_rerun_equals_serial(
    tmp_path, launcher, source, clever_reference
):
    lake, np_root = roots(tmp_path / "x")
    a = launcher.start("clever", lake, np_root, source, *SECOND_HALF, pause="clever.processed")
    a.wait_reached("clever.processed")
    b = launcher.start("clever", lake, np_root, source, *FIRST_HALF)
    b.wait_reached("lease.waiting")
    a.kill()  # holding the lease, processed but not published
    assert b.finish() == 0, b.err[-3000:]  # took over as soon as the kernel dropped the lock
    launcher.run("clever", lake, np_root, source, *SECOND_HALF)  # the killed run, again
    assert everything(lake, np_root) == clever_reference
    assert not [p for p in glob.glob(f"{lake}/_tmp/**/*", recursive=True) if os.path.isfile(p)]


def one_person(source: str) -> str:
    """A sis_id that is in the data (first daily-participation students file)."""
    path = sorted(glob.glob(f"{source}/daily-participation/*students.csv"))[0]
    with open(path, encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            if row.get("sis_id"):
                return row["sis_id"]
    raise AssertionError("no sis_id")


def person_rows(lake_root: str, np_root: str, sis_id: str) -> dict[str, int]:
    """Where a person is: stage2p rows, lookup rows, catalog rows (by pseudonym)."""
    from edulake.privacy.pseudonym import Pseudonymizer
    from tests.keys import KEY

    p = Pseudonymizer(KEY).pseudonym(sis_id)
    lake = Lake(lake_root, np_root)
    out = {}
    for table in ("daily_participation", "resource_usage"):
        t = read_table(lake, table)  # the live table version
        out[f"stage2p.{table}"] = sum(1 for v in t["sis_id_pseudonym"].to_pylist() if v == p)
    look = read_lookup(lake, "clever", "sis_id")
    out["lookup"] = sum(1 for v in look["value"].to_pylist() if v == sis_id)
    con = duckdb.connect(os.path.join(lake_root, "catalog", "edulake.duckdb"), read_only=True)
    for table in ("daily_participation", "resource_usage"):
        n = con.execute(
            f"SELECT COUNT(*) FROM clever.{table} WHERE sis_id_pseudonym = ?", [p]
        ).fetchone()[0]
        out[f"catalog.{table}"] = int(n)
    con.close()
    return out


def test_daily_and_forget_overlapping_end_as_serial(tmp_path, launcher, source, prefect_api):
    sis = one_person(source)
    ids = tmp_path / "ids.txt"
    ids.write_text(sis + "\n")
    # reference: the first half, then the second half, then forget
    ref_lake, ref_np = roots(tmp_path / "ref")
    launcher.run("clever", ref_lake, ref_np, source, *FIRST_HALF)
    launcher.run("clever", ref_lake, ref_np, source, *SECOND_HALF)
    launcher.run("forget", ref_lake, ref_np, str(ids))
    reference = everything(ref_lake, ref_np)
    assert set(person_rows(ref_lake, ref_np, sis).values()) == {0}
    # overlap: the daily (second half) is processing when the forget request comes in
    lake, np_root = roots(tmp_path / "x")
    launcher.run("clever", lake, np_root, source, *FIRST_HALF)
    overlap(
        launcher,
        ("clever", lake, np_root, source, *SECOND_HALF),
        ("forget", lake, np_root, str(ids)),
        pause="clever.processed",
    )
    assert set(person_rows(lake, np_root, sis).values()) == {0}
    assert everything(lake, np_root) == reference
    # a later daily re-delivery never brings the person back
    launcher.run("clever", lake, np_root, source)
    assert set(person_rows(lake, np_root, sis).values()) == {0}


def test_forget_rerun_finishes_when_the_catalog_still_serves_the_person(tmp_path, launcher, source):
    """Forget killed after the lake was cleaned but before the catalog was: the re-run repairs."""
    sis = one_person(source)
    ids = tmp_path / "ids.txt"
    ids.write_text(sis + "\n")
    lake, np_root = roots(tmp_path / "x")
    launcher.run("clever", lake, np_root, source)
    killed = launcher.start(
        "forget", lake, np_root, str(ids), env={"EDULAKE_CRASH_AT": "publish.transaction:1"}
    )
    killed.finish()
    assert killed.proc.returncode != 0
    rows = person_rows(lake, np_root, sis)
    assert rows["stage2p.daily_participation"] == 0 and rows["catalog.daily_participation"] > 0
    launcher.run("clever", lake, np_root, source)  # a daily in between (nothing new)
    launcher.run("forget", lake, np_root, str(ids))  # the re-run
    assert set(person_rows(lake, np_root, sis).values()) == {0}


def test_daily_and_rotate_key_overlapping_end_as_serial(tmp_path, launcher, source, prefect_api):
    new_key = {"EDULAKE_HMAC_KEY": NEW_KEY_TEXT}
    ref_lake, ref_np = roots(tmp_path / "ref")
    launcher.run("clever", ref_lake, ref_np, source, *FIRST_HALF)
    launcher.run("clever", ref_lake, ref_np, source, *SECOND_HALF)
    launcher.run("rotate", ref_lake, ref_np, env=new_key)
    reference = everything(ref_lake, ref_np)
    lake, np_root = roots(tmp_path / "x")
    launcher.run("clever", lake, np_root, source, *FIRST_HALF)
    overlap(
        launcher,
        ("clever", lake, np_root, source, *SECOND_HALF),
        ("rotate", lake, np_root),
        pause="clever.processed",
        env_b=new_key,
    )
    assert everything(lake, np_root) == reference


@pytest.fixture
def libinsight(prefect_api):
    from tests.servers.libinsight import libinsight_server

    with libinsight_server() as srv:
        yield srv


def libinsight_state(lake_root: str, np_root: str) -> dict[str, object]:
    from edulake.sources.libinsight.store import read_watermark

    lake = Lake(lake_root, np_root)
    root = lake.fs_path(Zone.STAGE2P, "libinsight")
    tables = {}
    for folder in sorted(glob.glob(f"{root}/*")):
        t = ds.dataset(folder, format="parquet", partitioning="hive").to_table()
        tables[os.path.basename(folder)] = checksum(t)
    return {
        "tables": tables,
        "catalog": catalog_fingerprint(lake_root, np_root),
        "watermark": read_watermark(lake, "reference_desk_12345", 12345),
    }


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (("2023-01-01", "2023-01-15"), ("2023-01-16", "2023-01-31")),  # halves of one month
        (("2022-12-10", "2023-01-20"), ("2023-01-05", "2023-02-10")),  # overlapping ranges
    ],
    ids=["disjoint-halves", "overlapping"],
)
def test_two_libinsight_runs_end_as_serial(tmp_path, launcher, libinsight, first, second):
    env = {"EDULAKE_LIBINSIGHT_CLIENT_SECRET": _secret()}
    url = libinsight.base_url
    ref_lake, ref_np = roots(tmp_path / "ref")
    launcher.run("libinsight", ref_lake, ref_np, url, *first, env=env)
    launcher.run("libinsight", ref_lake, ref_np, url, *second, env=env)
    reference = libinsight_state(ref_lake, ref_np)
    lake, np_root = roots(tmp_path / "x")
    overlap(
        launcher,
        ("libinsight", lake, np_root, url, *first),
        ("libinsight", lake, np_root, url, *second),
        pause="lease.acquired",
        env_a=env,
        env_b=env,
    )
    got = libinsight_state(lake, np_root)
    assert got == reference
    assert str(got["watermark"]) == max(first[1], second[1])


def _secret() -> str:
    from edulake.demo.libinsight_server import DEMO_CLIENT_SECRET

    return DEMO_CLIENT_SECRET


def test_libinsight_killed_while_holding_the_lease(tmp_path, launcher, libinsight):
    env = {"EDULAKE_LIBINSIGHT_CLIENT_SECRET": _secret()}
    url = libinsight.base_url
    first, second = ("2023-01-01", "2023-01-15"), ("2023-01-16", "2023-01-31")
    ref_lake, ref_np = roots(tmp_path / "ref")
    launcher.run("libinsight", ref_lake, ref_np, url, *first, env=env)
    launcher.run("libinsight", ref_lake, ref_np, url, *second, env=env)
    reference = libinsight_state(ref_lake, ref_np)
    lake, np_root = roots(tmp_path / "x")
    a = launcher.start("libinsight", lake, np_root, url, *first, pause="lease.acquired", env=env)
    a.wait_reached("lease.acquired")
    b = launcher.start("libinsight", lake, np_root, url, *second, env=env)
    b.wait_reached("lease.waiting")
    a.kill()
    assert b.finish() == 0, b.err[-3000:]
    launcher.run("libinsight", lake, np_root, url, *first, env=env)
    assert libinsight_state(lake, np_root) == reference


def test_deployments_queue_on_prefect_s_limit_before_the_lease(
    tmp_path, launcher, source, prefect_api, clever_reference
):
    """With the global concurrency limit on the server, the second run waits for a slot
    (visible in Prefect) and never even finds the lake lease busy."""
    import subprocess

    import httpx

    from deployments.local.stack import prefect_executable

    limit = f"edulake-lake-{os.urandom(3).hex()}"
    env = {**os.environ, "PREFECT_API_URL": prefect_api}
    subprocess.run(
        [prefect_executable(), "gcl", "create", limit, "--limit", "1"],
        env=env,
        check=True,
        capture_output=True,
    )

    def active_slots() -> int:
        r = httpx.get(f"{prefect_api}/v2/concurrency_limits/{limit}", timeout=10)
        r.raise_for_status()
        return int(r.json()["active_slots"])

    lake, np_root = roots(tmp_path / "x")
    with_limit = {"EDULAKE_LEASE__PREFECT_LIMIT": limit}
    a = launcher.start(
        "clever", lake, np_root, source, *SECOND_HALF, pause="lease.acquired", env=with_limit
    )
    a.wait_reached("lease.acquired")
    assert active_slots() == 1  # the holder's slot, shown by Prefect
    b = launcher.start(
        "clever",
        lake,
        np_root,
        source,
        *FIRST_HALF,
        env=with_limit,
        note="lease.waiting,lease.queued",
    )
    b.wait_reached("lease.queued")
    time.sleep(2)  # let it ask for the slot (a faster release would only weaken the test)
    assert active_slots() == 1
    a.release("lease.acquired")
    assert a.finish() == 0, a.err[-3000:]
    assert b.finish() == 0, b.err[-3000:]
    assert not b.reached("lease.waiting")  # it queued at Prefect's limit, not at the lease
    assert active_slots() == 0
    assert everything(lake, np_root) == clever_reference
