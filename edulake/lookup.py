"""stage2np identity lookups: one row per distinct identity, merged across runs.

Each hashed column has a lookup table ``stage2np/<source>/<column>_lookup/lookup.parquet``
with ``pseudonym, value, first_seen, last_seen, key_id``. A run tracks the identities it
saw (bounded by the number of distinct identities, not rows) and merges them into the
table, which is rewritten atomically: merging the same input twice changes nothing.
"""

from __future__ import annotations

import threading

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from edulake.catalog import CatalogTable
from edulake.lake import Lake, Zone
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


def lookup_key(source: str, column: str) -> str:
    return f"{source}/{column}_lookup/lookup.parquet"


class IdentityTracker:
    """Distinct (value, pseudonym) pairs seen in a run with their first and last dates."""

    def __init__(self, key_id: str) -> None:
        self.key_id = key_id
        self._parts: list[pa.Table] = []
        self._rows = 0
        self._lock = threading.Lock()

    def add(self, values: pa.Array, pseudonyms: pa.Array, dates: pa.Array) -> None:
        valid = pc.is_valid(values)
        t = pa.table({"value": values, "pseudonym": pseudonyms, "d": dates}).filter(valid)
        if t.num_rows == 0:
            return
        self.add_table(_aggregate(t, "d", "d"))

    def add_table(self, agg: pa.Table) -> None:
        """Add identities already aggregated (value, pseudonym, first_seen, last_seen)."""
        if agg.num_rows == 0:
            return
        with self._lock:
            self._parts.append(agg)
            self._rows += agg.num_rows
            if self._rows > _COMPACT_AT:
                self._parts = [self._table()]
                self._rows = self._parts[0].num_rows

    def table(self) -> pa.Table:
        """One row per identity: value, pseudonym, first_seen, last_seen."""
        with self._lock:
            return self._table()

    def _table(self) -> pa.Table:
        if not self._parts:
            return pa.table(
                {
                    "value": pa.array([], pa.string()),
                    "pseudonym": pa.array([], pa.string()),
                    "first_seen": pa.array([], pa.date32()),
                    "last_seen": pa.array([], pa.date32()),
                }
            )
        return _aggregate(pa.concat_tables(self._parts), "first_seen", "last_seen")

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
    """Merge identities into the column's lookup table; returns the table's row count."""
    key = lookup_key(source, column)
    parts = [seen.select(["value", "pseudonym", "first_seen", "last_seen"])]
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
