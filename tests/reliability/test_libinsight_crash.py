"""Crash safety for LibInsight: a real run SIGKILLed at named points, then re-run, ends
as a clean run.

The lake already holds one range; a second, overlapping range (late edits come through
it) is fetched by ``tests/reliability/libinsight_crash_runner.py`` in a subprocess with
``EDULAKE_CRASH_AT=<point>:<n>``. Re-running that range must leave the lake equal to a
clean run's: the same month files and lookups byte for byte, the same export, catalog
table and watermark, each raw page landed once, nothing left in ``_tmp``.
"""

from __future__ import annotations

import hashlib
import signal

import pytest

from edulake.catalog.duckdb import connect as connect_catalog
from edulake.core.lake import Lake, Zone
from edulake.sources.libinsight.store import read_watermark
from tests.servers.libinsight import libinsight_server

from .helpers import checksum, run_killable

pytestmark = pytest.mark.slow

FIRST = ("2022-11-01", "2023-01-31")
SECOND = ("2023-01-10", "2023-03-31")  # overlaps the first: its months are rewritten

CRASH_POINTS = [
    ("land.staged", 2),  # a raw page staged, not committed
    ("land.committed", 3),  # a raw page committed, its ledger record not written
    ("libinsight.writing", 1),  # month files open in _tmp
    ("libinsight.months_committed", 1),  # months committed; lookups, export, catalog not
    ("libinsight.lookups_merged", 1),  # lookups merged; schema state and export not
    ("libinsight.exported", 1),  # the export written, the record of its months not
    ("publish.transaction", 1),  # inside the catalog transaction
    ("publish.committed", 1),  # catalog committed, watermark not moved
]


@pytest.fixture(scope="module")
def server():
    with libinsight_server() as srv:
        yield srv


def run(server, base: str, span: tuple[str, str], crash_at: str | None = None) -> int:
    args = [server.base_url, f"{base}/lake", f"{base}/np", *span]
    return run_killable("tests.reliability.libinsight_crash_runner", args, crash_at)


def state(base: str) -> dict[str, object]:
    """Everything a reader could see."""
    lake = Lake(f"{base}/lake", f"{base}/np")
    digest = {
        f"{z.value}/{o.key}": hashlib.sha256(lake.read_bytes(z, o.key)).hexdigest()
        for z in (Zone.STAGE2P, Zone.STAGE2NP, Zone.EXPORTS)
        for o in lake.list(z, "libinsight")
    }
    pages = [o.key for o in lake.list(Zone.STAGE1NP, "libinsight")]
    ledger = [o.key for o in lake.list(Zone.SYSTEM, "ledger/libinsight")]
    assert len(ledger) == len(pages), "a raw page without a ledger record (or the reverse)"
    assert not any(k.endswith(".intent") for k in ledger)
    con = connect_catalog(f"{base}/lake/catalog/edulake.duckdb")
    try:
        table = checksum(con.sql("SELECT * FROM libinsight.reference_desk").to_arrow_table())
    finally:
        con.close()
    return {
        "files": digest,
        "pages": sorted(pages),
        "catalog": table,
        "watermark": read_watermark(lake, "reference_desk", 12345),
    }


@pytest.fixture(scope="module")
def clean(server, tmp_path_factory) -> dict[str, object]:
    base = str(tmp_path_factory.mktemp("clean"))
    assert run(server, base, FIRST) == 0
    assert run(server, base, SECOND) == 0
    result = state(base)
    assert result["catalog"][0] > 0  # type: ignore[index]
    assert any("/month=2023-03/" in k for k in result["files"])  # type: ignore[union-attr]
    return result


@pytest.mark.parametrize(("point", "nth"), CRASH_POINTS, ids=[p for p, _ in CRASH_POINTS])
def test_killed_run_then_rerun_equals_clean_run(server, clean, tmp_path, point, nth):
    base = str(tmp_path)
    assert run(server, base, FIRST) == 0
    before = read_watermark(Lake(f"{base}/lake", f"{base}/np"), "reference_desk", 12345)
    assert run(server, base, SECOND, f"{point}:{nth}") == -signal.SIGKILL, "no crash happened"
    after_crash = read_watermark(Lake(f"{base}/lake", f"{base}/np"), "reference_desk", 12345)
    assert after_crash == before  # the watermark moves only after everything is committed
    assert run(server, base, SECOND) == 0
    assert state(base) == clean
    assert run(server, base, SECOND) == 0  # and once more changes nothing
    assert state(base) == clean
