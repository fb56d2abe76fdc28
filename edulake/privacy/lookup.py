"""stage2np identity lookups: one row per distinct identity, merged across runs.

Each hashed column has a lookup table ``stage2np/<source>/<column>_lookup/lookup.parquet``
with ``pseudonym, value, first_seen, last_seen, key_id``. A run tracks the identities it
saw (bounded by the number of distinct identities, not rows) and merges them into the
table, which is rewritten atomically: merging the same input twice changes nothing.
"""

from __future__ import annotations

import threading

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from edulake.catalog import CatalogTable
from edulake.core.lake import Lake, Zone
from edulake.privacy.pseudonym import Pseudonymizer
from edulake.specs import OutputColumn

LOOKUP_SCHEMA = pa.schema(
    [
        pa.field("pseudonym", pa.string()),
        pa.field("value", pa.string()),
        pa.field("first_seen", pa.date32()),
        pa.field("last_seen", pa.date32()),
        pa.field("key_id", pa.string()),
    ]
)
_COMPACT_AT = 500_000
_NEVER_FIRST = np.iinfo(np.int32).max
_NEVER_LAST = np.iinfo(np.int32).min
_SEEN = ("first_seen", "last_seen")
_EMPTY_SEEN = pa.schema(
    [
        pa.field("value", pa.string()),
        pa.field("pseudonym", pa.string()),
        pa.field("first_seen", pa.date32()),
        pa.field("last_seen", pa.date32()),
    ]
)


def lookup_key(source: str, column: str) -> str:
    return f"{source}/{column}_lookup/lookup.parquet"


class IdentityTracker:
    """Distinct (value, pseudonym) pairs seen in a run with their first and last dates.

    Fed with the codes a :class:`~edulake.privacy.pseudonym.Pseudonymizer` gives each distinct
    value (:meth:`add_codes`), it keeps two day numbers per code in numpy arrays: memory
    bounded by the number of identities, no string hashing or grouping per batch. Rows
    given as strings (:meth:`add`, :meth:`add_table`) are grouped with Arrow instead.
    """

    def __init__(self, key_id: str, pseudonymizer: Pseudonymizer | None = None) -> None:
        self.key_id = key_id
        self._pseudonymizer = pseudonymizer
        self._parts: list[pa.Table] = []
        self._rows = 0
        self._first = np.full(0, _NEVER_FIRST, np.int32)  # day number per code
        self._last = np.full(0, _NEVER_LAST, np.int32)
        self._lock = threading.Lock()

    def add(self, values: pa.Array, pseudonyms: pa.Array, dates: pa.Array) -> None:
        valid = pc.is_valid(values)
        t = pa.table({"value": values, "pseudonym": pseudonyms, "d": dates}).filter(valid)
        if t.num_rows == 0:
            return
        self.add_table(_aggregate(t, "d", "d"))

    def add_codes(self, codes: pa.Array, dates: pa.Array) -> None:
        """Add rows as pseudonymizer codes (null: no identity) and their dates."""
        if self._pseudonymizer is None:
            raise ValueError("add_codes needs the tracker's pseudonymizer")
        if codes.null_count or dates.null_count:
            keep = pc.and_(pc.is_valid(codes), pc.is_valid(dates))
            codes, dates = codes.filter(keep), dates.filter(keep)
        if len(codes) == 0:
            return
        c = codes.to_numpy()
        d = pc.cast(dates, pa.int32()).to_numpy()
        lo, hi = int(d.min()), int(d.max())
        with self._lock:
            self._grow(int(c.max()) + 1)
            if lo == hi:  # one day (the usual batch): plain fancy indexing
                self._first[c] = np.minimum(self._first[c], lo)
                self._last[c] = np.maximum(self._last[c], hi)
            else:
                np.minimum.at(self._first, c, d)
                np.maximum.at(self._last, c, d)

    def merge(self, other: IdentityTracker) -> None:
        """Add everything another tracker (of the same pseudonymizer) saw."""
        if other._pseudonymizer is not self._pseudonymizer and len(other._first):
            raise ValueError("trackers of different pseudonymizers cannot merge codes")
        with other._lock:
            first, last, parts = other._first, other._last, list(other._parts)
        with self._lock:
            n = len(first)
            self._grow(n)
            np.minimum(self._first[:n], first, out=self._first[:n])
            np.maximum(self._last[:n], last, out=self._last[:n])
        for part in parts:
            self.add_table(part)

    def _grow(self, size: int) -> None:
        if size <= len(self._first):
            return
        size = max(size, 2 * len(self._first))
        first = np.full(size, _NEVER_FIRST, np.int32)
        last = np.full(size, _NEVER_LAST, np.int32)
        first[: len(self._first)] = self._first
        last[: len(self._last)] = self._last
        self._first, self._last = first, last

    def add_table(self, agg: pa.Table) -> None:
        """Add identities already aggregated (value, pseudonym, first_seen, last_seen)."""
        if agg.num_rows == 0:
            return
        with self._lock:
            self._parts.append(agg)
            self._rows += agg.num_rows
            if self._rows > _COMPACT_AT:
                self._parts = [_aggregate(pa.concat_tables(self._parts), *_SEEN)]
                self._rows = self._parts[0].num_rows

    def table(self) -> pa.Table:
        """One row per identity: value, pseudonym, first_seen, last_seen."""
        with self._lock:
            parts = list(self._parts)
            coded = self._coded()
        if coded is not None:
            parts.append(coded)
        if not parts:
            return _EMPTY_SEEN.empty_table()
        if len(parts) == 1 and coded is not None:
            return coded
        return _aggregate(pa.concat_tables(parts), *_SEEN)

    def _coded(self) -> pa.Table | None:
        if self._pseudonymizer is None:
            return None
        seen = np.flatnonzero(self._first <= self._last)
        if len(seen) == 0:
            return None
        return pa.table(
            {
                "value": self._pseudonymizer.values_of(seen),
                "pseudonym": self._pseudonymizer.pseudonyms_of(seen),
                "first_seen": pa.array(self._first[seen]).cast(pa.date32()),
                "last_seen": pa.array(self._last[seen]).cast(pa.date32()),
            },
            schema=_EMPTY_SEEN,
        )

    def __len__(self) -> int:
        return int(self.table().num_rows)


def _aggregate(t: pa.Table, first_col: str, last_col: str) -> pa.Table:
    agg = t.group_by(["value", "pseudonym"], use_threads=False).aggregate(
        [(first_col, "min"), (last_col, "max")]
    )
    return pa.table(
        {
            "value": agg["value"],
            "pseudonym": agg["pseudonym"],
            "first_seen": agg[f"{first_col}_min"],
            "last_seen": agg[f"{last_col}_max"],
        }
    )


class KeyMismatchError(RuntimeError):
    """Pseudonyms from two different keys would be mixed in one table."""


def merge_lookup(lake: Lake, source: str, column: str, seen: pa.Table, key_id: str) -> int:
    """Merge identities into the column's lookup table; returns the table's row count.

    Not rewritten when the merge changes nothing (a run that saw no new identity and no
    new first or last day): a no-op run writes nothing to stage2np."""
    key = lookup_key(source, column)
    parts = [seen.select(["value", "pseudonym", "first_seen", "last_seen"])]
    existing = None
    if lake.exists(Zone.STAGE2NP, key):
        existing = read_lookup(lake, source, column)
        ids = set(pc.unique(existing["key_id"]).to_pylist())
        if ids and ids != {key_id}:
            raise KeyMismatchError(
                f"the {column} lookup was built with key {sorted(ids)} but this run uses "
                f"key {key_id}: rotate keys with the documented key rotation, never mix them"
            )
        parts.append(existing.select(["value", "pseudonym", "first_seen", "last_seen"]))
    merged = _aggregate(pa.concat_tables(parts), "first_seen", "last_seen")
    merged = merged.sort_by([("pseudonym", "ascending")])
    merged = merged.append_column("key_id", pa.array([key_id] * merged.num_rows, pa.string()))
    merged = merged.select(LOOKUP_SCHEMA.names).cast(LOOKUP_SCHEMA)
    if existing is not None and merged.equals(existing.select(LOOKUP_SCHEMA.names)):
        return int(merged.num_rows)
    with lake.atomic_write(Zone.STAGE2NP, key) as out:
        pq.write_table(merged, out, compression="zstd")
    return int(merged.num_rows)


def read_lookup(lake: Lake, source: str, column: str) -> pa.Table:
    with lake.open_input_file(Zone.STAGE2NP, lookup_key(source, column)) as f:
        return pq.read_table(f)


def lookup_catalog_table(lake: Lake, source: str, column: str, key_id: str) -> CatalogTable:
    """A lookup table as a catalog sees it (published in the protected ``<source>_np``)."""
    return CatalogTable(
        zone=Zone.STAGE2NP,
        source=source,
        name=f"{column}_lookup",
        columns=[
            OutputColumn(name="pseudonym", type="string", comment=f"Pseudonym of {column}."),
            OutputColumn(name="value", type="string", comment=f"Raw {column}: PII."),
            OutputColumn(name="first_seen", type="date", comment="First report date seen."),
            OutputColumn(name="last_seen", type="date", comment="Last report date seen."),
            OutputColumn(name="key_id", type="string", comment="Id of the pseudonymization key."),
        ],
        location=lake.uri(Zone.STAGE2NP, f"{source}/{column}_lookup"),
        description=f"{source} {column}: pseudonym -> raw value (protected).",
        properties={"key_id": key_id, "source": source},
    )
