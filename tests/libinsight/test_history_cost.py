"""A LibInsight run's reads do not grow with the table's age, and the export it builds
from the previous one is byte for byte the one a full rebuild writes.

The attack: every run read the id column of every month file (to find records that moved
month) and then every month file again (to write the whole-table CSV): one GET per month
of history, twice, for a weekly run that fetched one month.
"""

from __future__ import annotations

import datetime as dt

import pyarrow.parquet as pq
import pytest

from edulake.core.counting import count_requests
from edulake.core.lake import Zone
from edulake.sources.libinsight.config import load_dataset_config
from edulake.sources.libinsight.store import (
    EXPORT_STATE,
    _state_key,
    export_csv,
    month_files,
    read_table,
    write_months,
)
from edulake.sources.libinsight.transform import transform
from edulake.sources.libinsight.windows import Window

CFG = load_dataset_config("reference_desk")
EXPORT = "libinsight/reference_desk.csv"


def _month(i: int) -> dt.date:
    return dt.date(2015 + i // 12, i % 12 + 1, 1)


def _rows(pseudonymizer, recs, extra=None, cfg=CFG, state=None):
    return transform(
        [
            {"_id": rid, "_start_date": f"{day.isoformat()} 09:00:00", "_entered_by": "A B"}
            | (extra or {})
            for rid, day in recs
        ],
        cfg,
        state,
        pseudonymizer,
    )


def _write(lake, result, start: dt.date, end: dt.date):
    return write_months(
        lake, result.spec, result.table, Window(start, end), "id", "start_date", key_id="k"
    )


def _history(lake, pseudonymizer, months: int):
    """``months`` months of records (3 a month), written one run per month."""
    spec = None
    for i in range(months):
        first = _month(i)
        last = _month(i + 1) - dt.timedelta(days=1)
        res = _rows(pseudonymizer, [(i * 10 + k, first + dt.timedelta(days=k)) for k in range(3)])
        _write(lake, res, first, last)
        spec = res.spec
        export_csv(lake, spec)
    return spec


def _full_export(lake, spec) -> bytes:
    """What export_csv writes with no previous export to build on."""
    lake.delete(Zone.SYSTEM, _state_key(spec.name, EXPORT_STATE))
    export_csv(lake, spec)
    return lake.read_bytes(Zone.EXPORTS, EXPORT)


def _weekly_run(lake, pseudonymizer, months: int) -> dict[str, int]:
    """The next month's first records, as a weekly run brings them; its requests."""
    first = _month(months)
    res = _rows(pseudonymizer, [(months * 10, first), (months * 10 + 1, first)])
    with count_requests(lake) as counter:
        _write(lake, res, first, first + dt.timedelta(days=6))
        export_csv(lake, res.spec)
    return counter.snapshot()


@pytest.mark.parametrize("months", [12])
def test_a_weekly_runs_requests_do_not_grow_with_history(tmp_path, pseudonymizer, months):
    from edulake.core.lake import Lake

    counts = {}
    for n in (months, months * 5):
        lake = Lake(str(tmp_path / f"lake{n}"), np_root=str(tmp_path / f"np{n}"))
        _history(lake, pseudonymizer, n)
        counts[n] = _weekly_run(lake, pseudonymizer, n)
    assert counts[months] == counts[months * 5], counts  # 1 year or 5: the same requests


def test_the_export_built_on_the_previous_one_equals_a_full_rebuild(lake, pseudonymizer):
    spec = _history(lake, pseudonymizer, 6)
    # a record moves from the first month into the last; the refetch of the last month
    # keeps one of its own three records (the window is the truth: two were deleted)
    last = _month(5)
    moved = _rows(pseudonymizer, [(0, last + dt.timedelta(days=20)), (50, last)])
    _write(lake, moved, _month(5), _month(6) - dt.timedelta(days=1))
    export_csv(lake, spec)
    incremental = lake.read_bytes(Zone.EXPORTS, EXPORT)
    assert incremental == _full_export(lake, spec)
    ids = read_table(lake, spec)["id"].to_pylist()
    assert ids.count(0) == 1 and len(ids) == len(set(ids)) == 16  # moved, not duplicated
    # drift: a new column; the export is rebuilt with it, older months as empty cells
    drifted = _rows(
        pseudonymizer,
        [(99, _month(5) + dt.timedelta(days=25))],
        {"Room": "B2"},
        CFG.model_copy(update={"unknown_fields": "add"}),  # the default holds Room back
        moved.state,
    )
    _write(lake, drifted, _month(5), _month(6) - dt.timedelta(days=1))
    export_csv(lake, drifted.spec)
    after = lake.read_bytes(Zone.EXPORTS, EXPORT)
    assert b"room" in after.splitlines()[0].lower()
    assert after == _full_export(lake, drifted.spec)


def test_a_month_file_changed_behind_the_caches_is_read_again(lake, pseudonymizer):
    """Caches name each month file by key, size and mtime: a file that changed (a run
    killed before the caches were rewritten, a repair by hand) is read, not trusted."""
    spec = _history(lake, pseudonymizer, 3)
    files = month_files(lake, spec)
    key = files[_month(0).strftime("%Y-%m")].key
    with lake.open_input_file(Zone.STAGE2P, key) as f:
        table = pq.read_table(f)
    with lake.atomic_write(Zone.STAGE2P, key) as out:
        pq.write_table(table.slice(0, 2), out)  # one record gone from the first month
    export_csv(lake, spec)
    assert lake.read_bytes(Zone.EXPORTS, EXPORT).count(b"\n") == 1 + 8
    assert lake.read_bytes(Zone.EXPORTS, EXPORT) == _full_export(lake, spec)
    # and the id cache: the record gone from month 1 moves into month 3 without a duplicate
    back = _rows(pseudonymizer, [(1, _month(2) + dt.timedelta(days=9))])
    _write(lake, back, _month(2), _month(3) - dt.timedelta(days=1))
    ids = read_table(lake, spec)["id"].to_pylist()
    assert ids.count(1) == 1


def test_an_export_that_is_not_the_recorded_one_is_rebuilt(lake, pseudonymizer):
    spec = _history(lake, pseudonymizer, 3)
    good = lake.read_bytes(Zone.EXPORTS, EXPORT)
    lake.write_bytes(Zone.EXPORTS, EXPORT, good.replace(b"\n", b"\nX,", 1))  # edited
    export_csv(lake, spec)
    assert lake.read_bytes(Zone.EXPORTS, EXPORT) == good
    lake.delete(Zone.EXPORTS, EXPORT)  # withdrawn (a leak the audit found)
    export_csv(lake, spec)
    assert lake.read_bytes(Zone.EXPORTS, EXPORT) == good
