"""LibInsight key rotation: re-pseudonymize the month files through the lookups.

Chosen over replaying the raw pages: a table is the result of many fetched ranges merged
in order (edits, deletions, records that moved month), which a replay would have to
redo window by window; the month files already hold exactly the rows a fresh run would,
and every hashed column has a lookup (value -> pseudonym), so each old pseudonym maps to
the new one exactly. A hashed column without a lookup cannot be mapped: the rotation
stops before switching anything and says so.

Steps (the generic ones are in :mod:`edulake.privacy.rotation`):

- :func:`rewrite_tables` (before the switch): every month file of the live version is
  written into the new version with its hashed columns mapped and ``edulake.key_id`` set
  to the new key. The old lookups are read, not changed.
- :func:`after_switch`: the lookups are rebuilt under the new key (same rows, new
  pseudonyms) and each table's CSV export is rewritten from the new version. A lookup
  already under the new key is left alone, so a re-run after a kill here finishes it.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from edulake.core.faults import crashpoint
from edulake.core.lake import Lake, Zone
from edulake.core.versions import table_keys, write_prefix
from edulake.privacy.lookup import LOOKUP_SCHEMA, lookup_key, read_lookup
from edulake.privacy.pseudonym import Pseudonymizer
from edulake.specs import TableSpec

SOURCE = "libinsight"


class RotationError(RuntimeError):
    """A LibInsight table that cannot be re-pseudonymized (names columns, never values)."""


def _mappings(lake: Lake, specs: list[TableSpec], new: Pseudonymizer) -> dict[str, pa.Table]:
    """column -> (old pseudonym, new pseudonym) from the column's lookup."""
    out = {}
    for spec in specs:
        lookups = {c.name for c in spec.lookup_columns}
        for c in spec.columns:
            if c.is_hashed and c.name not in lookups:
                raise RotationError(
                    f"libinsight.{spec.name}.{c.output_name} is hashed without a lookup, so "
                    "its pseudonyms cannot be mapped to the new key: nothing was switched. "
                    "Give it op: hash (with a lookup) and re-fetch its range, or drop the table"
                )
    for col in sorted({c.name for s in specs for c in s.lookup_columns}):
        if not lake.exists(Zone.STAGE2NP, lookup_key(SOURCE, col)):
            out[col] = pa.table(
                {"old": pa.array([], pa.string()), "new": pa.array([], pa.string())}
            )
            continue
        lookup = read_lookup(lake, SOURCE, col)
        if new.key_id in set(lookup["key_id"].to_pylist()):
            raise RotationError(
                f"the libinsight {col} lookup already holds the new key while the live "
                "tables do not: restore the lookup from a backup, or rebuild the source"
            )
        values = lookup["value"].to_pylist()
        out[col] = pa.table(
            {
                "old": lookup["pseudonym"],
                "new": pa.array([new.pseudonym(v) for v in values], pa.string()),
            }
        )
    return out


def _remap(column: pa.ChunkedArray, mapping: pa.Table, where: str) -> pa.Array:
    col = column.combine_chunks()
    idx = pc.index_in(col, value_set=mapping["old"].combine_chunks())
    missing = pc.sum(pc.cast(pc.and_(pc.is_valid(col), pc.is_null(idx)), pa.int64())).as_py()
    if missing:
        raise RotationError(
            f"{where}: {missing} pseudonym(s) have no row in the lookup, so they cannot be "
            "mapped to the new key: nothing was switched (the lookup is incomplete; rebuild "
            "the table from its raw pages with a libinsight-dataset backfill)"
        )
    return pc.take(mapping["new"].combine_chunks(), idx)


def rewrite_tables(lake: Lake, specs: list[TableSpec], new: Pseudonymizer) -> int:
    """Write every live month file, re-pseudonymized, into the new version; files written."""
    maps = _mappings(lake, specs, new)
    written = 0
    for spec in specs:
        live = [k for k in table_keys(lake, SOURCE, spec.name) if k.endswith(".parquet")]
        target = write_prefix(lake, SOURCE, spec.name)
        for key in live:
            with lake.open_input_file(Zone.STAGE2P, key) as f:
                table = pq.read_table(f)
            meta = table.schema.metadata or {}
            if meta.get(b"edulake.key_id", b"").decode() != new.key_id:
                for c in spec.columns:
                    if c.is_hashed and c.output_name in table.column_names:
                        i = table.column_names.index(c.output_name)
                        mapped = _remap(table[c.output_name], maps[c.name], f"{key}")
                        table = table.set_column(i, table.schema.field(i), mapped)
            table = table.replace_schema_metadata({**meta, b"edulake.key_id": new.key_id.encode()})
            rest = key.rsplit("/", 2)[-2:]  # month=YYYY-MM/part-0.parquet
            with lake.atomic_write(Zone.STAGE2P, f"{target}/{'/'.join(rest)}") as out:
                pq.write_table(table, out, compression="zstd", coerce_timestamps="ms")
            written += 1
            crashpoint("rotate.libinsight_month")
    return written


def rotate_lookups(lake: Lake, specs: list[TableSpec], new: Pseudonymizer) -> int:
    """Rebuild each lookup under the new key (rows kept, pseudonyms recomputed); rewritten."""
    rewritten = 0
    for col in sorted({c.name for s in specs for c in s.lookup_columns}):
        if not lake.exists(Zone.STAGE2NP, lookup_key(SOURCE, col)):
            continue
        lookup = read_lookup(lake, SOURCE, col)
        if set(lookup["key_id"].to_pylist()) <= {new.key_id}:
            continue
        values = lookup["value"].to_pylist()
        table = pa.table(
            {
                "pseudonym": pa.array([new.pseudonym(v) for v in values], pa.string()),
                "value": lookup["value"],
                "first_seen": lookup["first_seen"],
                "last_seen": lookup["last_seen"],
                "key_id": pa.array([new.key_id] * len(values), pa.string()),
            }
        )
        table = table.sort_by([("pseudonym", "ascending")]).select(LOOKUP_SCHEMA.names)
        with lake.atomic_write(Zone.STAGE2NP, lookup_key(SOURCE, col)) as out:
            pq.write_table(table.cast(LOOKUP_SCHEMA), out, compression="zstd")
        rewritten += 1
        crashpoint("rotate.libinsight_lookup")
    return rewritten


def after_switch(lake: Lake, specs: list[TableSpec], new: Pseudonymizer) -> None:
    """Lookups under the new key, then the CSV exports from the new version."""
    from edulake.sources.libinsight.store import export_csv

    rotate_lookups(lake, specs, new)
    for spec in specs:
        export_csv(lake, spec)
