"""The stage2np lookups: a merge that changes nothing writes nothing."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa

from edulake.core.counting import count_requests
from edulake.core.lake import Zone
from edulake.privacy.lookup import lookup_key, merge_lookup, read_lookup

D = dt.date


def _seen(rows):
    return pa.table(
        {
            "value": pa.array([r[0] for r in rows], pa.string()),
            "pseudonym": pa.array([r[1] for r in rows], pa.string()),
            "first_seen": pa.array([r[2] for r in rows], pa.date32()),
            "last_seen": pa.array([r[3] for r in rows], pa.date32()),
        }
    )


def test_a_merge_that_changes_nothing_does_not_rewrite_the_lookup(lake):
    first = _seen(
        [("S1", "p1", D(2022, 1, 3), D(2022, 1, 4)), ("S2", "p2", D(2022, 1, 3), D(2022, 1, 3))]
    )
    assert merge_lookup(lake, "clever", "sis_id", first, "k1") == 2
    before = lake.info(Zone.STAGE2NP, lookup_key("clever", "sis_id"))
    # the same identities again, and one seen inside its known days: nothing new
    again = _seen([("S1", "p1", D(2022, 1, 4), D(2022, 1, 4))])
    with count_requests(lake) as counter:
        assert merge_lookup(lake, "clever", "sis_id", again, "k1") == 2
        assert merge_lookup(lake, "clever", "sis_id", _seen([]), "k1") == 2
    assert counter.counts.get("PUT", 0) == 0 and counter.counts.get("MOVE", 0) == 0
    assert lake.info(Zone.STAGE2NP, lookup_key("clever", "sis_id")) == before
    # a later day is news: written
    later = _seen([("S2", "p2", D(2022, 1, 5), D(2022, 1, 5))])
    merge_lookup(lake, "clever", "sis_id", later, "k1")
    table = read_lookup(lake, "clever", "sis_id")
    assert table.filter(pa.compute.equal(table["value"], "S2"))["last_seen"].to_pylist() == [
        D(2022, 1, 5)
    ]
