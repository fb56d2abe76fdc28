"""Partitioned Parquet output: one file per (partition value, unit), staged then committed.

A *unit* is what produced the rows (for Clever, one source file). Output paths are
``<table>/<partition>=<value>/<unit>.parquet``: deterministic, so reprocessing a unit
replaces exactly its own files and never duplicates rows. Files are Athena-safe:
explicit schema, stable column order, millisecond timestamps, zstd.

Memory stays bounded: rows are buffered per partition value and flushed as a row group
when a buffer (or all buffers together) grows past a limit. A whole batch of one day
(the usual case: one file a day) is written at once, so a worker holds one batch, not a
whole file; the buffers exist for files of many days, whose batches split into small
per-day slices that would otherwise make tiny row groups.

Pseudonym columns (``*_pseudonym``: random 64-character hex, nearly unique per file)
are written without dictionary encoding and without min/max statistics: a dictionary
of unique values is built only to be abandoned, and random min/max values never let a
reader skip a row group. Both cost write time (and the dictionary, space) for nothing.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from edulake.core.lake import Lake, StagedFiles, Zone

ROW_GROUP_ROWS = 256_000  # largest row group
FLUSH_ROWS = 64_000  # a partition's buffer is written once it holds this many rows
MAX_BUFFERED_ROWS = 512_000  # all partitions' buffers together
PLAIN_SUFFIX = "_pseudonym"  # columns written without dictionary and statistics


def partition_value(value: object) -> str:
    """A partition value as it appears in a path."""
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


@dataclass
class _Open:
    writer: pq.ParquetWriter
    stream: object
    buffered: list[pa.Table] = field(default_factory=list)
    rows: int = 0
    written: int = 0


class PartitionedWriter:
    """Writes one unit's rows into per-partition files, made visible by :meth:`commit`."""

    def __init__(
        self,
        lake: Lake,
        zone: Zone,
        table_prefix: str,
        partition_column: str,
        unit: str,
        schema: pa.Schema,
        metadata: dict[str, str] | None = None,
    ) -> None:
        self.lake = lake
        self.zone = zone
        self.prefix = table_prefix
        self.column = partition_column
        self.unit = unit
        self.schema = schema.with_metadata(metadata or {})
        self._staged: StagedFiles = lake.staged()
        self._open: dict[str, _Open] = {}
        self._contexts: dict[str, object] = {}
        self._buffered = 0

    def key(self, value: str) -> str:
        return f"{self.prefix}/{self.column}={value}/{self.unit}.parquet"

    def write(self, table: pa.Table) -> None:
        """Add rows; ``table`` holds the data columns and the partition column."""
        if table.num_rows == 0:
            return
        parts = table[self.column]
        data = table.drop_columns([self.column]).select(self.schema.names).cast(self.schema)
        uniques = pc.unique(parts)
        if len(uniques) == 1:
            self._add(partition_value(uniques[0].as_py()), data)
        else:
            for value in uniques:
                mask = pc.equal(parts, value)
                self._add(partition_value(value.as_py()), data.filter(mask))
        if self._buffered > MAX_BUFFERED_ROWS:
            for value in list(self._open):
                self._flush(value)

    def _add(self, value: str, rows: pa.Table) -> None:
        slot = self._open.get(value)
        if slot is None:
            ctx = self._staged.open(self.zone, self.key(value))
            stream = ctx.__enter__()
            self._contexts[value] = ctx
            encoded = [n for n in self.schema.names if not n.endswith(PLAIN_SUFFIX)]
            writer = pq.ParquetWriter(
                stream,
                self.schema,
                compression="zstd",
                coerce_timestamps="ms",
                allow_truncated_timestamps=True,
                use_dictionary=encoded,
                write_statistics=encoded,
            )
            slot = self._open[value] = _Open(writer, stream)
        slot.buffered.append(rows)
        slot.rows += rows.num_rows
        self._buffered += rows.num_rows
        if slot.rows >= FLUSH_ROWS:
            self._flush(value)

    def _flush(self, value: str) -> None:
        slot = self._open[value]
        if not slot.buffered:
            return
        slot.writer.write_table(pa.concat_tables(slot.buffered), row_group_size=ROW_GROUP_ROWS)
        slot.written += slot.rows
        self._buffered -= slot.rows
        slot.buffered, slot.rows = [], 0

    def close(self) -> dict[str, int]:
        """Finish every file (still invisible); returns rows per partition value."""
        counts = {}
        for value, slot in self._open.items():
            self._flush(value)
            slot.writer.close()
            self._contexts[value].__exit__(None, None, None)  # type: ignore[attr-defined]
            counts[value] = slot.written
        self._open.clear()
        return counts

    @property
    def staged(self) -> StagedFiles:
        return self._staged

    def abort(self) -> None:
        """Drop everything written so far."""
        for value, slot in self._open.items():
            try:
                slot.writer.close()
                self._contexts[value].__exit__(None, None, None)  # type: ignore[attr-defined]
            except Exception:  # noqa: S110 - best effort, the staged files are discarded next
                pass
        self._open.clear()
        self._staged.discard()
