"""LibInsight under the same privacy layer as Clever: the key check before any write, the
key id in every file, the source registry, and forgetting a staff member by name."""

from __future__ import annotations

import datetime as dt
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from edulake.catalog.duckdb import connect as connect_catalog
from edulake.core.lake import Lake, Zone
from edulake.demo.libinsight_server import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET
from edulake.privacy.keys import recorded_key_id
from edulake.privacy.lookup import KeyMismatchError, read_lookup
from edulake.privacy.pseudonym import Pseudonymizer
from edulake.sources.libinsight.config import load_dataset_config
from edulake.sources.libinsight.pipeline import fetch_and_land, process_range
from edulake.sources.libinsight.store import read_table
from edulake.sources.libinsight.windows import Window, split_windows
from tests.keys import KEY, KEY_TEXT, OTHER_KEY, OTHER_KEY_TEXT
from tests.servers.libinsight import libinsight_server

pytestmark = pytest.mark.slow  # the LibInsight stand-in is a real HTTP server
D = dt.date
CFG = load_dataset_config("reference_desk")
TABLE = "reference_desk_12345"
WINDOW = Window(D(2022, 11, 1), D(2023, 1, 31))


def run(client, lake: Lake, pseudonymizer: Pseudonymizer, window: Window = WINDOW):
    fetched = fetch_and_land(client, lake, 12345, split_windows(window.start, window.end))
    return process_range(lake, CFG, fetched.keys, window, pseudonymizer, table=TABLE)


def snapshot(lake: Lake, *zones: Zone) -> dict[str, bytes]:
    return {
        f"{zone.value}/{o.key}": lake.read_bytes(zone, o.key)
        for zone in zones
        for o in lake.list(zone, "libinsight")
    }


def stage2p_key_ids(lake: Lake) -> set[str | None]:
    out: set[str | None] = set()
    for o in lake.list(Zone.STAGE2P, "libinsight"):
        with lake.open_input_file(Zone.STAGE2P, o.key) as f:
            meta = pq.read_schema(f).metadata or {}
        raw = meta.get(b"edulake.key_id")
        out.add(raw.decode() if raw else None)
    return out


def stage2p_values(lake: Lake, column: str) -> set[str]:
    out: set[str] = set()
    for o in lake.list(Zone.STAGE2P, "libinsight"):
        with lake.open_input_file(Zone.STAGE2P, o.key) as f:
            out |= {v for v in pq.read_table(f, columns=[column])[column].to_pylist() if v}
    return out


def quarantined_names(lake: Lake) -> set[str]:
    names = set()
    for o in lake.list(Zone.QUARANTINE, "libinsight"):
        for line in lake.read_bytes(Zone.QUARANTINE, o.key).decode().splitlines():
            rec = json.loads(line)["record"]
            if isinstance(rec, dict) and rec.get("_entered_by"):
                names.add(rec["_entered_by"])
    return names


def test_other_key_is_refused_before_any_month_file(server, make_client, lake):
    client = make_client(server)
    first = run(client, lake, Pseudonymizer(KEY))
    assert first.months and recorded_key_id(lake, "libinsight") == KEY.key_id
    assert stage2p_key_ids(lake) == {KEY.key_id}  # every month file says its key
    before = snapshot(lake, Zone.STAGE2P, Zone.STAGE2NP, Zone.EXPORTS)
    server.settings.revision = 1  # new content: a run that went on would rewrite months
    with pytest.raises(KeyMismatchError, match="nothing was written") as err:
        run(client, lake, Pseudonymizer(OTHER_KEY))
    assert KEY.key_id in str(err.value) and OTHER_KEY.key_id in str(err.value)
    assert snapshot(lake, Zone.STAGE2P, Zone.STAGE2NP, Zone.EXPORTS) == before
    assert OTHER_KEY.key_id not in stage2p_key_ids(lake)
    # Clever's key record is its own: LibInsight's key never became Clever's
    assert recorded_key_id(lake, "clever") is None


def test_registry_knows_both_sources(server, make_client, lake):
    from edulake.sources import registry

    assert [s.name for s in registry.registered()] == ["clever", "libinsight"]
    clever = registry.get("clever")
    assert sorted(s.name for s in clever.specs(lake)) == ["daily_participation", "resource_usage"]
    libinsight = registry.get("libinsight")
    assert libinsight.specs(lake) == []  # no table in the lake yet
    run(make_client(server), lake, Pseudonymizer(KEY))
    (spec,) = libinsight.specs(lake)
    assert spec.name == TABLE and spec.source == "libinsight"
    assert libinsight.hashed_columns(lake) == ["entered_by"]
    assert libinsight.lookup_columns(lake) == ["entered_by"]
    with pytest.raises(KeyError, match="unknown source"):
        registry.get("nope")


def test_forget_a_staff_name_and_a_refetch_keeps_it_out(server, make_client, lake):
    from edulake.sources import registry

    client = make_client(server)
    pseudonymizer = Pseudonymizer(KEY)
    run(client, lake, pseudonymizer)
    in_quarantine = quarantined_names(lake)
    assert in_quarantine, "the stand-in sends some records without a date: quarantined"
    name = sorted(in_quarantine)[0]
    pseudonym = pseudonymizer.pseudonym(name)
    assert pseudonym in stage2p_values(lake, "entered_by_pseudonym")
    others = stage2p_values(lake, "entered_by_pseudonym") - {pseudonym}

    result = registry.get("libinsight").forget(lake, [f"  {name} "], pseudonymizer)
    assert result.identities == {"entered_by": 1} and result.not_found == 0
    assert result.stage2p_rows[TABLE] > 0 and result.quarantine_rows > 0
    assert pseudonym not in stage2p_values(lake, "entered_by_pseudonym")
    assert stage2p_values(lake, "entered_by_pseudonym") == others  # nobody else went
    assert stage2p_key_ids(lake) == {KEY.key_id}  # rewritten files keep their key id
    assert name not in read_lookup(lake, "libinsight", "entered_by")["value"].to_pylist()
    assert name not in quarantined_names(lake)
    export = lake.read_bytes(Zone.EXPORTS, f"libinsight/{TABLE}.csv").decode()
    assert pseudonym not in export and name not in export

    server.settings.revision = 1  # the same range again, with late edits
    again = run(client, lake, pseudonymizer)
    assert again.rows > 0
    assert pseudonym not in stage2p_values(lake, "entered_by_pseudonym")
    assert pseudonym not in read_table(lake, again.spec)["entered_by_pseudonym"].to_pylist()
    assert name not in read_lookup(lake, "libinsight", "entered_by")["value"].to_pylist()
    assert name not in quarantined_names(lake)
    assert name not in lake.read_bytes(Zone.EXPORTS, f"libinsight/{TABLE}.csv").decode()


@pytest.mark.usefixtures("prefect_harness")
def test_forget_flow_for_libinsight(tmp_path, monkeypatch):
    from prefect.blocks.system import Secret

    from flows.athena_query import athena_query
    from flows.forget import forget_flow
    from flows.libinsight_dataset import libinsight_dataset

    root, np_root = str(tmp_path / "lake"), str(tmp_path / "np")
    lake = Lake(root, np_root)
    monkeypatch.setenv("EDULAKE_HMAC_KEY", KEY_TEXT)
    Secret(value=DEMO_CLIENT_SECRET).save("test-libinsight-secret", overwrite=True)
    with libinsight_server() as srv:
        common = {
            "base_url": srv.base_url,
            "dataset_id": 12345,
            "client_id": DEMO_CLIENT_ID,
            "client_secret_block": "test-libinsight-secret",
            "lake_root": root,
            "np_root": np_root,
            "concurrency": 4,
            "from_date": WINDOW.start,
            "to_date": WINDOW.end,
        }
        libinsight_dataset(**common)
        name = sorted(quarantined_names(lake))[0]
        pseudonym = Pseudonymizer(KEY).pseudonym(name)
        where = {"catalog": "duckdb", "lake_root": root, "np_root": np_root}
        athena_query(query_names=["libinsight_tableau_extract"], table=TABLE, **where)
        extract = f"athena/libinsight_tableau_extract-{TABLE}.csv"
        assert pseudonym in lake.read_bytes(Zone.EXPORTS, extract).decode()
        ids = tmp_path / "forget.txt"
        ids.write_text(f"# staff who asked to be forgotten\n{name}\n")
        out = forget_flow(ids_file=str(ids), lake_root=root, np_root=np_root, source="libinsight")
        assert out["identities"] == {"entered_by": 1} and out["stage2p_rows"][TABLE] > 0
        assert out["export_rows"] > 0  # the Tableau extract lost their rows too
        tableau = lake.read_bytes(Zone.EXPORTS, extract).decode()
        assert pseudonym not in tableau and len(tableau.splitlines()) > 1

        def served() -> list[str]:
            con = connect_catalog(f"{root}/catalog/edulake.duckdb", read_only=True)
            try:
                rows = con.execute(f"SELECT entered_by_pseudonym FROM libinsight.{TABLE}")
                values = [r[0] for r in rows.fetchall()]
                (comment,) = con.execute(
                    f"SELECT comment FROM duckdb_tables() WHERE table_name = '{TABLE}'"
                ).fetchone()
            finally:
                con.close()
            assert f"key_id={KEY.key_id}" in comment
            return values

        assert served() and pseudonym not in served()
        assert pseudonym not in stage2p_values(lake, "entered_by_pseudonym")
        assert name not in read_lookup(lake, "libinsight", "entered_by")["value"].to_pylist()
        assert name not in lake.read_bytes(Zone.EXPORTS, f"libinsight/{TABLE}.csv").decode()

        libinsight_dataset(**common)  # the same range again: the name stays out
        assert pseudonym not in served()
        assert pseudonym not in stage2p_values(lake, "entered_by_pseudonym")
        assert name not in read_lookup(lake, "libinsight", "entered_by")["value"].to_pylist()
        assert name not in quarantined_names(lake)

        monkeypatch.setenv("EDULAKE_HMAC_KEY", OTHER_KEY_TEXT)
        before = snapshot(lake, Zone.STAGE1NP, Zone.STAGE2P, Zone.STAGE2NP)
        served = srv.served_pages()
        with pytest.raises(KeyMismatchError, match="nothing was written"):
            libinsight_dataset(**common)
        assert snapshot(lake, Zone.STAGE1NP, Zone.STAGE2P, Zone.STAGE2NP) == before
        assert srv.served_pages() == served  # refused before fetching, not only before commit


def test_forget_with_another_key_is_refused_and_changes_nothing(server, make_client, lake):
    from edulake.sources import registry

    run(make_client(server), lake, Pseudonymizer(KEY))
    name = sorted(read_lookup(lake, "libinsight", "entered_by")["value"].to_pylist())[0]
    before = snapshot(lake, Zone.STAGE2P, Zone.STAGE2NP, Zone.QUARANTINE, Zone.EXPORTS)
    # With another key no pseudonym matches: the lookup would lose the name, stage2p keep it.
    with pytest.raises(KeyMismatchError, match="nothing was written"):
        registry.get("libinsight").forget(lake, [name], Pseudonymizer(OTHER_KEY))
    assert snapshot(lake, Zone.STAGE2P, Zone.STAGE2NP, Zone.QUARANTINE, Zone.EXPORTS) == before


def test_forget_refuses_a_table_it_cannot_read(lake):
    from edulake.sources import registry

    table = pa.table({"id": [1], "entered_by_pseudonym": ["x"]})
    with lake.atomic_write(Zone.STAGE2P, "libinsight/mystery_7/month=2023-01/part-0.parquet") as f:
        pq.write_table(table, f)
    with pytest.raises(registry.UnknownTableError, match="mystery_7"):
        registry.get("libinsight").forget(lake, ["Someone"], Pseudonymizer(KEY))


def test_a_forget_interrupted_before_the_export_is_finished_by_a_rerun(
    server, make_client, lake, monkeypatch
):
    """The failure lands after stage2p, lookups and quarantine changed: the re-run finds
    nothing left there, yet rebuilds the export that still names the person."""
    from edulake.sources import registry
    from edulake.sources.libinsight import store

    pseudonymizer = Pseudonymizer(KEY)
    run(make_client(server), lake, pseudonymizer)
    name = sorted(read_lookup(lake, "libinsight", "entered_by")["value"].to_pylist())[0]
    pseudonym = pseudonymizer.pseudonym(name)
    export_key = f"libinsight/{TABLE}.csv"

    def broken(*_a, **_k):
        raise OSError("disk went away")

    with monkeypatch.context() as m:
        m.setattr(store, "export_csv", broken)
        with pytest.raises(OSError, match="disk went away"):
            registry.get("libinsight").forget(lake, [name], pseudonymizer)
    assert pseudonym not in stage2p_values(lake, "entered_by_pseudonym")
    assert pseudonym in lake.read_bytes(Zone.EXPORTS, export_key).decode()  # not yet
    again = registry.get("libinsight").forget(lake, [name], pseudonymizer)
    assert again.stage2p_rows == {}  # nothing left in stage2p ...
    assert pseudonym not in lake.read_bytes(Zone.EXPORTS, export_key).decode()  # ... still fixed


def test_key_check_forget_and_refetch_on_an_s3_lake(server, make_client):
    """The same on a real S3 (SeaweedFS, lake and protected zones in two buckets): commits
    there are copy + delete, not rename."""
    from edulake.core.lake import S3Options
    from edulake.sources import registry
    from tests.servers.seaweedfs import seaweedfs

    with seaweedfs(buckets=["li-lake", "li-np"]) as s3:
        opts = S3Options(
            endpoint_url=s3.endpoint_url,
            region=s3.region,
            access_key_id=s3.access_key,
            secret_access_key=s3.secret_key,
        )
        lake = Lake("s3://li-lake/lake", np_root="s3://li-np/np", s3=opts)
        client = make_client(server)
        pseudonymizer = Pseudonymizer(KEY)
        run(client, lake, pseudonymizer)
        assert stage2p_key_ids(lake) == {KEY.key_id}
        before = snapshot(lake, Zone.STAGE2P, Zone.STAGE2NP)
        with pytest.raises(KeyMismatchError, match="nothing was written"):
            run(client, lake, Pseudonymizer(OTHER_KEY))
        assert snapshot(lake, Zone.STAGE2P, Zone.STAGE2NP) == before

        name = sorted(quarantined_names(lake))[0]
        pseudonym = pseudonymizer.pseudonym(name)
        result = registry.get("libinsight").forget(lake, [name], pseudonymizer)
        assert result.stage2p_rows[TABLE] > 0 and result.quarantine_rows > 0
        server.settings.revision = 1
        run(client, lake, pseudonymizer)
        assert pseudonym not in stage2p_values(lake, "entered_by_pseudonym")
        assert stage2p_key_ids(lake) == {KEY.key_id}
        assert name not in read_lookup(lake, "libinsight", "entered_by")["value"].to_pylist()
        assert name not in quarantined_names(lake)
        export = lake.read_bytes(Zone.EXPORTS, f"libinsight/{TABLE}.csv").decode()
        assert pseudonym not in export and name not in export
