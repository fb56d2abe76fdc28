"""Idempotency: the same input, run N times (or fully reprocessed), gives the same tables,
byte for byte."""

from __future__ import annotations

import hashlib

import pytest

from edulake.catalog.duckdb import connect as connect_catalog
from edulake.core.lake import Lake, Zone
from edulake.core.settings import default_np_root
from edulake.demo.clever_testdata import TestDataSource
from edulake.sources.clever import pipeline

from .helpers import checksum, lake_fingerprint, run
from .test_keys import _publish

PARAMS = {"days": 2, "students": 200, "teachers": 10, "staff": 4, "schools": 3}
N = 3


def _file_digests(lake: Lake) -> dict[str, str]:
    return {
        o.key: hashlib.sha256(lake.read_bytes(Zone.STAGE2P, o.key)).hexdigest()
        for o in lake.list(Zone.STAGE2P)
    } | {
        o.key: hashlib.sha256(lake.read_bytes(Zone.STAGE2NP, o.key)).hexdigest()
        for o in lake.list(Zone.STAGE2NP)
    }


def _catalog(root: str) -> dict[str, tuple[int, str]]:
    con = connect_catalog(f"{root}/catalog/edulake.duckdb")
    try:
        names = [
            f"{s}.{t}"
            for s, t in con.execute(
                "SELECT schema_name, table_name FROM duckdb_tables() WHERE schema_name LIKE 'clever%'"
            ).fetchall()
        ]
        names += [
            f"{s}.{v}"
            for s, v in con.execute(
                "SELECT schema_name, view_name FROM duckdb_views() WHERE NOT internal"
            ).fetchall()
        ]
        return {n: checksum(con.sql(f"SELECT * FROM {n}").to_arrow_table()) for n in sorted(names)}
    finally:
        con.close()


def test_n_runs_and_a_full_reprocess_are_byte_identical(tmp_path, lake, pseudonymizer):
    src = TestDataSource(**PARAMS, cache_dir=str(tmp_path / "src")).ensure_generated()
    run(lake, src, pseudonymizer)
    _publish(lake, pseudonymizer.key_id, full=False)
    first, files, cat = lake_fingerprint(lake), _file_digests(lake), _catalog(lake.main.base)
    assert first["stage2p.daily_participation"][0] == 2 * (200 + 10 + 4)
    for _ in range(N - 1):
        _, landed, processed = run(lake, src, pseudonymizer)
        assert {r.outcome for r in landed} == {"unchanged"} and processed.files == []
        _publish(lake, pseudonymizer.key_id, full=False)
        assert lake_fingerprint(lake) == first and _file_digests(lake) == files
        assert _catalog(lake.main.base) == cat
    # forget that anything was processed: every file is processed and published again
    lake.delete_prefix(Zone.SYSTEM, "processed/clever")
    pipeline.process_pending(lake, pipeline.pending(lake), pseudonymizer)
    _publish(lake, pseudonymizer.key_id, full=False)
    assert lake_fingerprint(lake) == first
    assert _file_digests(lake) == files  # Parquet files byte-identical
    assert _catalog(lake.main.base) == cat


@pytest.mark.usefixtures("prefect_harness")
def test_flow_n_times_same_tables(tmp_path):
    from flows.clever_participation import clever_participation

    root = str(tmp_path / "lake")
    results = []
    for _ in range(N):
        clever_participation(source="testdata", lake_root=root, demo=True, testdata=PARAMS)
        lake = Lake(root, default_np_root(root))  # the flow's default layout
        results.append((lake_fingerprint(lake), _file_digests(lake), _catalog(root)))
    assert all(r == results[0] for r in results[1:])
    assert results[0][0]["stage2p.resource_usage"][0] > 0


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_harness")
def test_libinsight_flow_n_times_same_tables(tmp_path):
    """The same LibInsight range fetched N times: the same raw pages (landed once), the
    same month files and lookups byte for byte, the same catalog table and export."""
    import datetime as dt

    from prefect.blocks.system import Secret

    from edulake.demo.libinsight_server import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET
    from flows.libinsight_dataset import libinsight_dataset
    from tests.servers.libinsight import libinsight_server

    root = str(tmp_path / "lake")
    Secret(value=DEMO_CLIENT_SECRET).save("idem-libinsight-secret", overwrite=True)
    results = []
    with libinsight_server() as srv:
        for _ in range(N):
            libinsight_dataset(
                base_url=srv.base_url,
                dataset_id=12345,
                client_id=DEMO_CLIENT_ID,
                client_secret_block="idem-libinsight-secret",
                lake_root=root,
                demo=True,
                from_date=dt.date(2022, 11, 1),
                to_date=dt.date(2023, 2, 28),
            )
            lake = Lake(root, default_np_root(root))  # the flow's default layout
            raw = sorted(o.key for o in lake.list(Zone.STAGE1NP, "libinsight"))
            export = hashlib.sha256(
                lake.read_bytes(Zone.EXPORTS, "libinsight/reference_desk_12345.csv")
            ).hexdigest()
            con = connect_catalog(f"{root}/catalog/edulake.duckdb")
            try:
                table = checksum(
                    con.sql("SELECT * FROM libinsight.reference_desk_12345").to_arrow_table()
                )
            finally:
                con.close()
            results.append((raw, _file_digests(lake), export, table))
    assert all(r == results[0] for r in results[1:])
    raw, files, _, (rows, _) = results[0]
    assert raw and rows > 0
    assert any("/month=" in k for k in files) and any("lookup" in k for k in files)
