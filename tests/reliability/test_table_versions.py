"""Table versions: a key rotation is built beside the live tables and switched in one step.

Readers (the DuckDB catalog here; S3 + Glue in tests/aws/test_rotation_readers.py) see the
old key or the new one, never both in one answer; LibInsight rotates through the registry
like Clever and ends equal to a fresh run under the new key, also after a SIGKILL.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading

import pyarrow.parquet as pq
import pytest

from edulake.catalog import open_catalog, publish_all
from edulake.catalog.duckdb import connect as connect_catalog
from edulake.core import versions
from edulake.core.lake import Lake, Zone
from edulake.privacy.keys import recorded_key_id, rotation_in_progress
from edulake.privacy.pseudonym import Pseudonymizer
from edulake.privacy.rotation import finish_rotation, rotate_key, stage2p_key_ids
from edulake.sources.clever import pipeline
from tests.envs import without_edulake

from ..clever.helpers import dp_rows, ru_rows, write
from .helpers import KEY, OTHER_KEY, lake_fingerprint, run

USERS = [(f"{1000 + i}", f"c{i:03d}") for i in range(12)]
DAYS = [f"2022-01-{d:02d}" for d in range(3, 13)]


def _src(tmp_path, days: list[str] = DAYS) -> str:
    src = str(tmp_path / "src")
    for day in days:
        write(
            src, f"daily-participation/{day}-daily-participation-students.csv", dp_rows(day, USERS)
        )
        write(src, f"resource-usage/{day}-resource-usage-students.csv", ru_rows(day, USERS[:6]))
    return src


def _publish(lake: Lake, key_id: str, full: bool = True) -> None:
    cat = open_catalog("duckdb", lake)
    try:
        publish_all(cat, pipeline.catalog_tables(lake, key_id), rebuild=full)
    finally:
        cat.close()


# -- the pointer record ------------------------------------------------------------------


def test_writers_write_the_rewrite_readers_read_the_live_version(lake):
    assert versions.read_prefix(lake, "clever", "t") == "clever/t"
    lake.write_bytes(Zone.STAGE2P, "clever/t/date=2022-01-03/a.parquet", b"old")
    assert versions.begin_rewrite(lake, "clever", ["t"]) == {"t": 1}
    assert versions.write_prefix(lake, "clever", "t") == "clever/t/_v=1"
    assert versions.read_prefix(lake, "clever", "t") == "clever/t"
    lake.write_bytes(Zone.STAGE2P, "clever/t/_v=1/date=2022-01-03/a.parquet", b"new")
    # version 0's folder holds version 1's: its own files only
    assert versions.table_keys(lake, "clever", "t") == ["clever/t/date=2022-01-03/a.parquet"]
    # a killed rewrite restarted: same version, half-written files gone
    assert versions.begin_rewrite(lake, "clever", ["t"]) == {"t": 1}
    assert versions.table_keys(lake, "clever", "t", 1) == []
    lake.write_bytes(Zone.STAGE2P, "clever/t/_v=1/date=2022-01-03/a.parquet", b"new")
    assert versions.switch(lake, "clever") == {"t": 1}
    assert versions.read_prefix(lake, "clever", "t") == "clever/t/_v=1"
    assert versions.write_prefix(lake, "clever", "t") == "clever/t/_v=1"  # daily appends
    assert versions.purge_retired(lake, "clever", grace_s=3600) == 0  # within the grace
    assert lake.exists(Zone.STAGE2P, "clever/t/date=2022-01-03/a.parquet")
    assert versions.purge_retired(lake, "clever", grace_s=0) == 1
    assert not lake.exists(Zone.STAGE2P, "clever/t/date=2022-01-03/a.parquet")
    assert lake.read_bytes(Zone.STAGE2P, "clever/t/_v=1/date=2022-01-03/a.parquet") == b"new"
    # the next rewrite takes the next number
    assert versions.begin_rewrite(lake, "clever", ["t"]) == {"t": 2}


def test_rotation_switches_versions_and_daily_runs_append_to_the_new_one(
    tmp_path, lake, monkeypatch
):
    src = _src(tmp_path, DAYS[:2])
    run(lake, src, Pseudonymizer(KEY))
    new = Pseudonymizer(OTHER_KEY)
    result = rotate_key(lake, new, max_quarantine_share=0.5)
    assert result.versions == {"daily_participation": 1, "resource_usage": 1}
    _publish(lake, new.key_id)
    finish_rotation(lake, new, grace_s=3600)
    old_files = versions.table_keys(lake, "clever", "daily_participation", 0)
    assert old_files  # retired, kept for the grace period
    live = stage2p_key_ids(lake)
    assert live and all("/_v=1/" in k for k in live)
    assert {kid for kid, _ in live.values()} == {OTHER_KEY.key_id}
    # a new day lands in the live version, not in a copy of history
    write(
        src,
        f"daily-participation/{DAYS[2]}-daily-participation-students.csv",
        dp_rows(DAYS[2], USERS),
    )
    run(lake, src, new)
    day = [k for k in stage2p_key_ids(lake) if f"date={DAYS[2]}" in k]
    assert day and all(k.startswith("clever/daily_participation/_v=1/") for k in day)
    assert versions.table_keys(lake, "clever", "daily_participation", 0) == old_files
    # past the grace period, the next daily run deletes the retired version
    monkeypatch.setenv("EDULAKE_VERSIONS__GRACE_S", "0")
    run(lake, src, new)
    assert versions.table_keys(lake, "clever", "daily_participation", 0) == []
    assert lake_fingerprint(lake)["stage2p.daily_participation"][0] == 3 * len(USERS)


def test_erasure_deletes_retired_versions_at_once(tmp_path, lake):
    from edulake.sources import registry

    run(lake, _src(tmp_path, DAYS[:1]), Pseudonymizer(KEY))
    new = Pseudonymizer(OTHER_KEY)
    rotate_key(lake, new, max_quarantine_share=0.5)
    finish_rotation(lake, new, grace_s=3600)
    assert versions.table_keys(lake, "clever", "daily_participation", 0)
    pseudonym = new.pseudonym(USERS[0][0])

    def holders(version: int) -> list[str]:
        out = []
        for key in versions.table_keys(lake, "clever", "daily_participation", version):
            with lake.open_input_file(Zone.STAGE2P, key) as f:
                if pseudonym in pq.read_table(f)["sis_id_pseudonym"].to_pylist():
                    out.append(key)
        return out

    assert holders(1)
    result = registry.get("clever").forget(lake, [USERS[0][0]], new)
    # the erasure wrote version 2 beside 1, switched, and deleted 1 and the rotation's 0
    assert versions.read_pointer(lake, "clever")["tables"]["daily_participation"] == 2
    assert result.files_rewritten == 2  # one file per table held the person
    assert holders(2) == []
    for v in (0, 1):
        assert versions.table_keys(lake, "clever", "daily_participation", v) == []
    assert versions.read_pointer(lake, "clever").get("retired") is None


def _classes(raw_ids: list[str]) -> tuple[set[str], set[str]]:
    old, new = Pseudonymizer(KEY), Pseudonymizer(OTHER_KEY)
    return {old.pseudonym(v) for v in raw_ids}, {new.pseudonym(v) for v in raw_ids}


def _answer_keys(pseudonyms: list[str], old: set[str], new: set[str]) -> set[str]:
    """Which keys the pseudonyms of one answer were made with."""
    out = set()
    for p in pseudonyms:
        if p in old:
            out.add("old")
        elif p in new:
            out.add("new")
        else:
            out.add("unknown")
    return out


@pytest.mark.slow
def test_duckdb_reader_during_a_rotation_never_sees_two_keys(tmp_path):
    """A reader thread queries both tables in one statement, reconnecting each time,
    while the rotation rewrites, switches, publishes and finishes."""
    root, np_root = tmp_path / "lake", tmp_path / "np"
    lake = Lake(str(root), str(np_root))
    run(lake, _src(tmp_path), Pseudonymizer(KEY))
    _publish(lake, KEY.key_id)
    old, new = _classes([s for s, _ in USERS])
    db = str(root / "catalog" / "edulake.duckdb")
    sql = (
        "SELECT sis_id_pseudonym FROM clever.daily_participation "
        "UNION ALL SELECT sis_id_pseudonym FROM clever.resource_usage"
    )
    answers: list[set[str]] = []
    stop = threading.Event()
    errors: list[BaseException] = []

    def reader() -> None:
        try:
            while not stop.is_set():
                con = connect_catalog(db)
                try:
                    got = [r[0] for r in con.execute(sql).fetchall()]
                finally:
                    con.close()
                answers.append(_answer_keys(got, old, new))
        except BaseException as e:  # the test fails on any reader error
            errors.append(e)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        key = Pseudonymizer(OTHER_KEY)
        rotate_key(lake, key, max_quarantine_share=0.5)
        _publish(lake, key.key_id)
        finish_rotation(lake, key)
        n = len(answers)
        while len(answers) < n + 3:  # a few answers after the end too
            pass
    finally:
        stop.set()
        thread.join()
    assert not errors, errors
    assert answers and all(len(a) == 1 for a in answers), [a for a in answers if len(a) != 1]
    assert answers[0] == {"old"} and answers[-1] == {"new"}


# -- LibInsight ----------------------------------------------------------------------------

LI_ROTATE = """
import sys
from edulake.catalog import open_catalog, publish_all
from edulake.core.lake import Lake
from edulake.privacy.pseudonym import Pseudonymizer
from edulake.privacy.rotation import finish_rotation, rotate_key
from edulake.sources import registry
from tests.keys import OTHER_KEY
lake = Lake(sys.argv[1], sys.argv[2])
new = Pseudonymizer(OTHER_KEY)
result = rotate_key(lake, new, source="libinsight")
cat = open_catalog("duckdb", lake)
try:
    publish_all(cat, registry.get("libinsight").catalog_tables(lake, new.key_id), rebuild=True)
finally:
    cat.close()
finish_rotation(lake, new, source="libinsight")
"""


def _li_state(lake: Lake) -> dict[str, object]:
    """LibInsight's live tables (by month), lookups and exports, and every key id."""
    from edulake.privacy.lookup import read_lookup
    from edulake.sources.libinsight.store import lake_tables

    from .helpers import checksum

    out: dict[str, object] = {}
    for table in lake_tables(lake):
        for key in versions.table_keys(lake, "libinsight", table):
            with lake.open_input_file(Zone.STAGE2P, key) as f:
                t = pq.read_table(f)
            month = key.rsplit("/", 2)[-2]
            out[f"{table}/{month}"] = checksum(t)
            out[f"{table}/{month}/key"] = (t.schema.metadata or {}).get(b"edulake.key_id")
    for o in lake.list(Zone.STAGE2NP, "libinsight"):
        col = o.key.split("/")[1].removesuffix("_lookup")
        lookup = read_lookup(lake, "libinsight", col)
        out[f"lookup/{col}"] = checksum(lookup)
        out[f"lookup/{col}/keys"] = sorted(set(lookup["key_id"].to_pylist()))
    for o in lake.list(Zone.EXPORTS, "libinsight"):
        out[f"export/{o.key}"] = lake.read_bytes(Zone.EXPORTS, o.key)
    return out


def _li_run(server, lake: Lake, key) -> None:
    from edulake.demo.libinsight_server import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET
    from edulake.sources.libinsight.api import LibInsightClient
    from tests.libinsight.conftest import FAST
    from tests.libinsight.test_privacy import run as li_run

    with LibInsightClient(server.base_url, DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, retry=FAST) as c:
        li_run(c, lake, Pseudonymizer(key))


def _li_fresh(tmp_path, server) -> dict[str, object]:
    fresh = Lake(str(tmp_path / "fresh"), str(tmp_path / "fresh-np"))
    _li_run(server, fresh, OTHER_KEY)
    return _li_state(fresh)


@pytest.mark.slow
def test_libinsight_rotation_equals_a_fresh_run_under_the_new_key(tmp_path, li_server):
    from tests.keys import LIBINSIGHT_KEY

    lake = Lake(str(tmp_path / "lake"), str(tmp_path / "np"))
    _li_run(li_server, lake, LIBINSIGHT_KEY)
    before = _li_state(lake)
    assert any(
        k.endswith("/key") and v == LIBINSIGHT_KEY.key_id.encode() for k, v in before.items()
    )
    new = Pseudonymizer(OTHER_KEY)
    result = rotate_key(lake, new, source="libinsight")
    assert result.rewritten > 0 and set(result.versions.values()) == {1}
    from edulake.sources import registry

    cat = open_catalog("duckdb", lake)
    try:
        publish_all(cat, registry.get("libinsight").catalog_tables(lake, new.key_id), rebuild=True)
    finally:
        cat.close()
    finish_rotation(lake, new, source="libinsight")
    after = _li_state(lake)
    assert after == _li_fresh(tmp_path, li_server)
    assert {v for k, v in after.items() if k.endswith("/key")} == {OTHER_KEY.key_id.encode()}
    assert {tuple(v) for k, v in after.items() if k.endswith("/keys")} == {(OTHER_KEY.key_id,)}
    assert recorded_key_id(lake, "libinsight") == OTHER_KEY.key_id
    assert rotation_in_progress(lake, "libinsight") is None
    # the catalog serves the new version: its pseudonyms are the new key's
    con = connect_catalog(str(tmp_path / "lake/catalog/edulake.duckdb"))
    (table,) = registry.get("libinsight").specs(lake)
    got = {
        r[0]
        for r in con.execute(f"SELECT entered_by_pseudonym FROM libinsight.{table.name}").fetchall()
    }
    con.close()
    names = [n for n in _lookup_values(lake)]
    assert got - {None} and got - {None} <= {new.pseudonym(n) for n in names}
    # Clever was not touched
    assert recorded_key_id(lake, "clever") is None


def _lookup_values(lake: Lake) -> list[str]:
    from edulake.privacy.lookup import read_lookup

    return list(read_lookup(lake, "libinsight", "entered_by")["value"].to_pylist())


@pytest.mark.slow
@pytest.mark.parametrize(
    "point",
    [
        "rotate.libinsight_month:1",
        "rotate.switched:1",
        "rotate.libinsight_lookup:1",
        "publish.transaction:1",
        "rotate.recorded:1",
    ],
)
def test_libinsight_rotation_killed_then_rerun_equals_an_uninterrupted_one(
    tmp_path, li_server, point
):
    from tests.keys import LIBINSIGHT_KEY

    root, np_root = str(tmp_path / "lake"), str(tmp_path / "np")
    lake = Lake(root, np_root)
    _li_run(li_server, lake, LIBINSIGHT_KEY)
    cwd = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = without_edulake()
    cmd = [sys.executable, "-c", LI_ROTATE, root, np_root]
    killed = subprocess.run(
        cmd, cwd=cwd, env=env | {"EDULAKE_CRASH_AT": point}, capture_output=True
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()[-2000:]
    if point != "rotate.recorded:1":  # killed before the key record: the rotation shows
        assert rotation_in_progress(lake, "libinsight") is not None
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert _li_state(lake) == _li_fresh(tmp_path, li_server)
    assert recorded_key_id(lake, "libinsight") == OTHER_KEY.key_id
    assert rotation_in_progress(lake, "libinsight") is None


def test_clever_rotation_still_equals_a_fresh_build(tmp_path):
    lake = Lake(str(tmp_path / "lake"), str(tmp_path / "np"))
    src = _src(tmp_path, DAYS[:2])
    run(lake, src, Pseudonymizer(KEY))
    new = Pseudonymizer(OTHER_KEY)
    rotate_key(lake, new, max_quarantine_share=0.5)
    _publish(lake, new.key_id)
    finish_rotation(lake, new)
    fresh = Lake(str(tmp_path / "fresh"), str(tmp_path / "fresh-np"))
    run(fresh, src, new)
    assert lake_fingerprint(lake) == lake_fingerprint(fresh)


@pytest.mark.parametrize("point", ["forget.rewriting", "forget.switched"])
def test_an_erasure_killed_mid_version_then_a_daily_run_then_rerun(
    tmp_path, lake, monkeypatch, point
):
    """Killed while writing its version (readers keep the old one whole) or right after
    the switch; a daily run in between writes into the live version, never into the
    abandoned one; the re-run ends with the person gone from every version."""
    import edulake.privacy.forget as forget_mod
    from edulake.sources import registry

    key = Pseudonymizer(KEY)
    src = _src(tmp_path, DAYS[:3])
    run(lake, src, key)
    person = key.pseudonym(USERS[0][0])

    def in_versions() -> dict[int, int]:
        out: dict[int, int] = {}
        for v in (0, 1, 2):
            for k in versions.table_keys(lake, "clever", "daily_participation", v):
                with lake.open_input_file(Zone.STAGE2P, k) as f:
                    col = pq.read_table(f)["sis_id_pseudonym"].to_pylist()
                out[v] = out.get(v, 0) + col.count(person)
        return out

    def die(name: str) -> None:
        if name == point:
            raise KeyboardInterrupt  # stands in for a SIGKILL there

    with monkeypatch.context() as m:
        m.setattr(forget_mod, "crashpoint", die)
        with pytest.raises(KeyboardInterrupt):
            registry.get("clever").forget(lake, [USERS[0][0]], key)
    live = versions.current_version(lake, "clever", "daily_participation")
    assert live == (0 if point == "forget.rewriting" else 1)
    write(
        src,
        f"daily-participation/{DAYS[3]}-daily-participation-students.csv",
        dp_rows(DAYS[3], USERS),
    )
    run(lake, src, key)  # the daily run: drops the abandoned rewrite, appends to the live one
    assert versions.rewrite_in_progress(lake, "clever") == {}
    if point == "forget.rewriting":  # the old version, whole, still live: the person too
        assert in_versions()[0] > 0
    registry.get("clever").forget(lake, [USERS[0][0]], key)
    assert set(in_versions().values()) <= {0}
    rows = lake_fingerprint(lake)["stage2p.daily_participation"][0]
    assert rows == 4 * (len(USERS) - 1)  # four days, everyone but the person


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_harness")
def test_rotate_key_flow_rotates_one_source_or_every_source(tmp_path, li_server, monkeypatch):
    """``rotate-key --source clever`` rotates Clever alone; ``rotate-key`` (every registered
    source) then rotates LibInsight and finds Clever done; the CLI takes ``--source``."""
    from edulake.cli import build_parser
    from flows.clever_maintenance import rotate_key_flow
    from tests.keys import LIBINSIGHT_KEY, OTHER_KEY_TEXT

    root, np_root = str(tmp_path / "lake"), str(tmp_path / "np")
    lake = Lake(root, np_root)
    run(lake, _src(tmp_path, DAYS[:1]), Pseudonymizer(KEY))
    _li_run(li_server, lake, LIBINSIGHT_KEY)
    monkeypatch.setenv("EDULAKE_HMAC_KEY", OTHER_KEY_TEXT)
    monkeypatch.setenv("EDULAKE_LEASE__PREFECT_LIMIT", "")
    args = build_parser().parse_args(["rotate-key", "--source", "libinsight"])
    assert args.source == "libinsight"
    assert build_parser().parse_args(["rotate-key"]).source is None

    one = rotate_key_flow(source="clever", lake_root=root, np_root=np_root)
    assert list(one) == ["clever"] and one["clever"]["rotated"]
    assert recorded_key_id(lake, "clever") == OTHER_KEY.key_id
    assert recorded_key_id(lake, "libinsight") == LIBINSIGHT_KEY.key_id
    every = rotate_key_flow(lake_root=root, np_root=np_root)
    assert every["clever"] == {"rotated": False, "key_id": OTHER_KEY.key_id}
    assert every["libinsight"]["rotated"] and every["libinsight"]["files_rewritten"] > 0
    assert recorded_key_id(lake, "libinsight") == OTHER_KEY.key_id
    con = connect_catalog(f"{root}/catalog/edulake.duckdb")
    comments = con.execute(
        "SELECT schema_name, comment FROM duckdb_tables() WHERE schema_name IN ('clever', 'libinsight')"
    ).fetchall()
    con.close()
    assert {s for s, _ in comments} == {"clever", "libinsight"}
    assert all(f"key_id={OTHER_KEY.key_id}" in c for _, c in comments)
