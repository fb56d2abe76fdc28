"""stage1np -> stage2p + quarantine for one landed Clever file, and the processing state.

Per landed version, :func:`process_file` streams the raw CSV through the spec-driven
reader, writes one Parquet file per report date it contains (named after the source
file, so reprocessing replaces exactly its own rows), quarantines bad rows under the
protected root, and returns the identities it saw for the stage2np lookups.

Order of effects: outputs are staged, then committed; files an older version of the
same source file wrote and this one did not are removed; the *processed record* is
written by the caller last, after the lookups are merged. A killed run therefore leaves
complete files only, and the next run redoes the unit.
"""

from __future__ import annotations

import csv
import io
import logging
from dataclasses import asdict, dataclass, field
from typing import Any

import pyarrow as pa

from edulake.catalog import table_prefix
from edulake.clever.names import parse_report_name
from edulake.csvproc import EmptyFileError, NeedsExactMode, Rejected, read_batches
from edulake.lake import Lake, Zone, safe_key
from edulake.landing import LedgerEntry
from edulake.lookup import IdentityTracker
from edulake.parquet import PartitionedWriter
from edulake.pseudonym import Pseudonymizer
from edulake.specs import HeaderMismatch, TableSpec

log = logging.getLogger(__name__)
SOURCE = "clever"


class QuarantineLimitExceeded(ValueError):
    """Too many bad rows in one file: nothing of it reaches stage2."""


@dataclass
class FileResult:
    """What processing one landed file did."""

    name: str
    sha256: str
    table: str
    status: str  # processed | empty | header-mismatch | too-many-bad-rows
    rows_read: int = 0
    rows_written: int = 0
    rows_quarantined: int = 0
    partitions: dict[str, int] = field(default_factory=dict)
    outputs: list[str] = field(default_factory=list)
    quarantine_file: str | None = None
    error: str | None = None
    mode: str = "fast"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def processed_key(name: str, sha256: str) -> str:
    return safe_key("processed", SOURCE, name, f"{sha256}.json")


def unit_name(entry: LedgerEntry) -> str:
    """Output file stem: the source file's stem (stable across versions)."""
    return parse_report_name(entry.name).stem


def process_file(
    lake: Lake,
    entry: LedgerEntry,
    spec: TableSpec,
    pseudonymizer: Pseudonymizer,
    trackers: dict[str, IdentityTracker],
    *,
    max_quarantine_share: float,
) -> FileResult:
    """Process one landed version into staged stage2p files and commit them."""
    report = parse_report_name(entry.name)
    result = FileResult(entry.name, entry.sha256, spec.name, "processed")
    try:
        writer, rejected = _run(lake, entry, spec, pseudonymizer, trackers, report.role, result)
    except HeaderMismatch as exc:
        result.status, result.error = "header-mismatch", str(exc)
        return result
    except EmptyFileError as exc:
        result.status, result.error = "empty", str(exc)
        return result

    result.rows_quarantined = len(rejected)
    result.rows_read = result.rows_written + result.rows_quarantined
    if rejected:
        result.quarantine_file = _write_quarantine(lake, entry, spec, rejected)
    share = result.rows_quarantined / result.rows_read if result.rows_read else 0.0
    if share > max_quarantine_share:
        writer.abort()
        result.status = "too-many-bad-rows"
        result.error = (
            f"{result.rows_quarantined} of {result.rows_read} rows ({share:.1%}) failed "
            f"validation, above the limit of {max_quarantine_share:.1%}; see "
            f"{result.quarantine_file} in the protected quarantine zone"
        )
        result.rows_written, result.partitions = 0, {}
        return result
    result.outputs = [k for _, k in writer.staged.keys]
    writer.staged.commit()
    return result


def _run(
    lake: Lake,
    entry: LedgerEntry,
    spec: TableSpec,
    pseudonymizer: Pseudonymizer,
    trackers: dict[str, IdentityTracker],
    role: str,
    result: FileResult,
) -> tuple[PartitionedWriter, Rejected]:
    for exact in (False, True):
        writer = PartitionedWriter(
            lake,
            Zone.STAGE2P,
            table_prefix(SOURCE, spec.name),
            spec.partition_by or "date",
            unit_name(entry),
            spec.arrow_schema(),
            metadata={
                "edulake.key_id": pseudonymizer.key_id,
                "edulake.source_sha256": entry.sha256,
            },
        )
        rejected = Rejected()
        local = {c: IdentityTracker(pseudonymizer.key_id, pseudonymizer) for c in trackers}
        written = 0
        try:
            for batch in read_batches(
                lambda: lake.open_input(Zone.STAGE1NP, entry.path),
                spec,
                pseudonymizer,
                {"role": role},
                exact=exact,
            ):
                rejected.extend(batch.rejected)
                if batch.table.num_rows == 0:
                    continue
                writer.write(batch.table)
                written += batch.table.num_rows
                dates = batch.table[spec.partition_by or "date"].combine_chunks()
                for col, (values, pseudonyms) in batch.identities.items():
                    if col in batch.codes:
                        local[col].add_codes(batch.codes[col], dates)
                    else:
                        local[col].add(values, pseudonyms, dates)
        except NeedsExactMode:
            writer.abort()
            result.mode = "exact"
            continue
        except BaseException:
            writer.abort()
            raise
        result.partitions = writer.close()
        result.rows_written = written
        for col, tracker in local.items():
            trackers[col].merge(tracker)
        return writer, rejected
    raise AssertionError("unreachable: exact mode never asks for exact mode")


def _write_quarantine(lake: Lake, entry: LedgerEntry, spec: TableSpec, rejected: Rejected) -> str:
    """Bad rows with file, record number and reason, under the protected root."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["source_file", "stage1np_path", "sha256", "line", "reason", "raw"])
    order = sorted(range(len(rejected)), key=lambda i: rejected.lines[i])
    for i in order:
        w.writerow(
            [
                entry.name,
                entry.path,
                entry.sha256,
                rejected.lines[i],
                rejected.reasons[i],
                rejected.raw[i],
            ]
        )
    key = f"{SOURCE}/{spec.name}/{unit_name(entry)}~{entry.sha256[:12]}.csv"
    lake.write_bytes(Zone.QUARANTINE, key, buf.getvalue().encode("utf-8"))
    return key


def remove_stale_outputs(lake: Lake, previous: dict[str, Any] | None, current: FileResult) -> int:
    """Delete files an older version of this source file wrote that the new one did not."""
    if not previous:
        return 0
    stale = set(previous.get("outputs", [])) - set(current.outputs)
    for key in stale:
        lake.delete(Zone.STAGE2P, key)
    return len(stale)


def rows_of(results: list[FileResult]) -> pa.Table:
    """A table of per-file results (for artifacts and printing)."""
    cols = ["name", "table", "status", "mode", "rows_read", "rows_written", "rows_quarantined"]
    return pa.table({c: [getattr(r, c) for r in results] for c in cols})
