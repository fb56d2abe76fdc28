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
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from edulake.core.csvproc import (
    MAX_BLOCK_SIZE,
    Batch,
    EmptyFileError,
    HeaderError,
    NeedsExactMode,
    NotCsvError,
    RecordTooLargeError,
    Rejected,
    decompressing,
    read_batches,
    sniff,
)
from edulake.core.faults import crashpoint
from edulake.core.lake import Lake, Zone, safe_key
from edulake.core.landing import LedgerEntry
from edulake.core.parquet import PartitionedWriter
from edulake.core.settings import get_settings
from edulake.core.versions import rebase_key, write_prefix
from edulake.privacy.lookup import IdentityTracker, lookup_key, read_lookup
from edulake.privacy.pseudonym import Pseudonymizer
from edulake.privacy.scrub import DataError, safe_message, safe_traceback
from edulake.sources.clever.names import parse_report_name
from edulake.specs import TableSpec

log = logging.getLogger(__name__)
SOURCE = "clever"


# A file with fewer rows than this may have up to max_quarantine_rows_floor bad rows
# whatever the share (one bad row of 33 is 3%: above a 1% share, not a reason to hold
# back the other 32).
SMALL_FILE_ROWS = 1000


class QuarantineLimitExceeded(DataError):
    """Too many bad rows in one file: nothing of it reaches stage2."""


@dataclass
class FileResult:
    """What processing one landed file did."""

    name: str
    sha256: str
    table: str
    # processed | empty | header-mismatch | not-a-report | too-many-bad-rows | error
    status: str
    rows_read: int = 0
    rows_written: int = 0
    rows_quarantined: int = 0
    rows_suppressed: int = 0  # rows of forgotten people (see edulake/privacy/forget.py)
    partitions: dict[str, int] = field(default_factory=dict)
    outputs: list[str] = field(default_factory=list)
    quarantine_file: str | None = None
    # why rows were quarantined -> how many: column names and checks, never a value
    quarantine_reasons: dict[str, int] = field(default_factory=dict)
    error: str | None = None
    mode: str = "fast"
    compression: str | None = None  # gzip: decompressed while read (stage1np keeps it)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def processed_key(name: str, sha256: str) -> str:
    return safe_key("processed", SOURCE, name, f"{sha256}.json")


def read_block_size() -> int:
    """The CSV read block: the setting ``EDULAKE_PROCESSING__BLOCK_MB``, at most
    :data:`MAX_BLOCK_SIZE` (a record larger than a block is read again with the largest)."""
    return min(get_settings().processing.block_mb << 20, MAX_BLOCK_SIZE)


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
    suppressed: set[str] | None = None,
    max_quarantine_rows_floor: int | None = None,
) -> FileResult:
    """Process one landed version into staged stage2p files and commit them.

    A file fails (nothing of it written) when its quarantined share is above
    ``max_quarantine_share``, unless it has fewer than :data:`SMALL_FILE_ROWS` rows and
    at most ``max_quarantine_rows_floor`` bad ones (default: the setting
    ``EDULAKE_MAX_QUARANTINE_ROWS_FLOOR``), fewer than half of its rows. Every error message comes from
    :mod:`edulake.privacy.scrub`: no row data, ever.
    """
    floor = (
        max_quarantine_rows_floor
        if max_quarantine_rows_floor is not None
        else get_settings().max_quarantine_rows_floor
    )
    report = parse_report_name(entry.name)
    result = FileResult(entry.name, entry.sha256, spec.name, "processed")
    try:
        writer, rejected = _run(
            lake, entry, spec, pseudonymizer, trackers, report.role, result, suppressed or set()
        )
    except HeaderError as exc:
        result.status, result.error = _header_error(lake, entry, spec, exc)
        return result
    except EmptyFileError as exc:
        result.status, result.error = "empty", safe_message(exc)
        return result
    except NotCsvError as exc:
        result.status, result.error = (
            "not-a-report",
            f"{safe_message(exc)}; nothing of it was written",
        )
        return result
    except Exception as exc:  # any other failure names the file, never quotes row data
        # the stack without any exception text (a message may quote a row)
        log.error("processing %s failed: %s", entry.name, safe_traceback(exc))
        result.status = "error"
        result.error = (
            f"{safe_message(exc)} while processing; nothing of it was written; "
            "the run is safe to repeat"
        )
        return result

    result.rows_quarantined = len(rejected)
    result.rows_read = result.rows_written + result.rows_quarantined + result.rows_suppressed
    if rejected:
        result.quarantine_file = _write_quarantine(lake, entry, spec, rejected)
        result.quarantine_reasons = dict(Counter(rejected.reasons))
    # lines swallowed by an unterminated quote count as lost lines, not as nothing
    lost = result.rows_quarantined + rejected.extra_lines
    total = result.rows_read + rejected.extra_lines
    share = lost / total if total else 0.0
    # the floor lets a small file through with a few bad rows, never one that is mostly
    # bad (half or more of its rows: a format change, not a few bad rows)
    small_enough = total < SMALL_FILE_ROWS and lost <= floor and 2 * lost < total
    if share > max_quarantine_share and not small_enough:
        writer.abort()
        result.status = "too-many-bad-rows"
        result.error = (
            f"{lost} of {total} rows ({share:.1%}) failed validation, above the limit of "
            f"{max_quarantine_share:.1%} (setting EDULAKE_MAX_QUARANTINE_SHARE or the flow "
            f"parameter max_quarantine_share; a file of fewer than {SMALL_FILE_ROWS} rows "
            f"may have up to {floor} bad rows, if fewer than half: "
            "EDULAKE_MAX_QUARANTINE_ROWS_FLOOR); "
            f"nothing of it was written; the bad rows are in {result.quarantine_file} in "
            "the protected quarantine zone"
        )
        result.rows_written, result.partitions = 0, {}
        return result
    result.outputs = [k for _, k in writer.staged.keys]
    writer.staged.commit()
    crashpoint("process.committed")
    return result


def _run(
    lake: Lake,
    entry: LedgerEntry,
    spec: TableSpec,
    pseudonymizer: Pseudonymizer,
    trackers: dict[str, IdentityTracker],
    role: str,
    result: FileResult,
    suppressed: set[str],
) -> tuple[PartitionedWriter, Rejected]:
    opener, result.compression = decompressing(
        lambda: lake.open_input(Zone.STAGE1NP, entry.path), entry.size
    )
    known = _KnownValues(lake, spec)
    block = read_block_size()
    attempts = [(False, block), (True, block)]
    while attempts:
        exact, block_size = attempts.pop(0)
        writer = PartitionedWriter(
            lake,
            Zone.STAGE2P,
            write_prefix(lake, SOURCE, spec.name),  # the live version, or a rewrite's
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
        written = dropped = 0
        try:
            for batch in read_batches(
                opener,
                spec,
                pseudonymizer,
                {"role": role},
                exact=exact,
                block_size=block_size,
                is_known_value=known,
            ):
                rejected.extend(batch.rejected)
                if suppressed and batch.table.num_rows:
                    batch, n = _suppress(batch, spec, suppressed)
                    dropped += n
                if batch.table.num_rows == 0:
                    continue
                writer.write(batch.table)
                crashpoint("process.writing")
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
        except RecordTooLargeError:
            writer.abort()
            if block_size >= MAX_BLOCK_SIZE:
                raise NotCsvError(
                    f"a CSV record is larger than {MAX_BLOCK_SIZE >> 20} MiB (a runaway quoted "
                    "field, or not a CSV file)"
                ) from None
            attempts.insert(0, (exact, MAX_BLOCK_SIZE))
            if not exact:
                attempts = [(False, MAX_BLOCK_SIZE), (True, MAX_BLOCK_SIZE)]
            continue
        except BaseException:
            writer.abort()
            raise
        result.partitions = writer.close()
        result.rows_written = written
        result.rows_suppressed = dropped
        for col, tracker in local.items():
            trackers[col].merge(tracker)
        return writer, rejected
    raise AssertionError("unreachable: exact mode never asks for exact mode")


def _suppress(batch: Batch, spec: TableSpec, suppressed: set[str]) -> tuple[Batch, int]:
    """Drop the rows of forgotten people (their pseudonyms are in ``suppressed``)."""
    values = pa.array(sorted(suppressed), pa.string())
    hit = pa.array([False] * batch.table.num_rows)
    for c in spec.columns:
        if c.is_hashed:
            found = pc.fill_null(pc.is_in(batch.table[c.output_name], values), False)
            hit = pc.or_(hit, found)
    n = int(pc.sum(pc.cast(hit, pa.int64())).as_py() or 0)
    if not n:
        return batch, 0
    keep = pc.invert(hit)
    identities = {
        col: (pc.filter(v, keep), pc.filter(p, keep)) for col, (v, p) in batch.identities.items()
    }
    codes = {col: pc.filter(c, keep) for col, c in batch.codes.items()}
    return Batch(batch.table.filter(keep), identities, batch.rejected, codes), n


class _KnownValues:
    """Is a header cell a raw identifier the lake knows (in a stage2np lookup)?

    Read only when a header does not fit (the error path), once per file.
    """

    def __init__(self, lake: Lake, spec: TableSpec) -> None:
        self._lake, self._spec = lake, spec
        self._values: set[str] | None = None

    def __call__(self, cell: str) -> bool:
        if self._values is None:
            self._values = set()
            for c in self._spec.lookup_columns:
                if self._lake.exists(Zone.STAGE2NP, lookup_key(SOURCE, c.name)):
                    col = read_lookup(self._lake, SOURCE, c.name)["value"]
                    self._values.update(v for v in col.to_pylist() if v)
        return cell in self._values


def _header_error(
    lake: Lake, entry: LedgerEntry, spec: TableSpec, exc: HeaderError
) -> tuple[str, str]:
    """Status and message for a header that does not match the spec.

    Schema drift (most columns known) names the missing and unknown columns. A first
    line that shares little with the spec is not a header at all - a headerless file
    whose first row is data, an HTML page, a JSON body - and its text is never echoed:
    it may hold student identifiers, and the message goes to logs and artifacts.
    """
    known = exc.known
    if known * 2 >= len(spec.columns):
        return "header-mismatch", f"{safe_message(exc)}; nothing of this file was written"
    opener, _ = decompressing(lambda: lake.open_input(Zone.STAGE1NP, entry.path), entry.size)
    with opener() as f:
        head = bytes(f.read(4096))
    if not head.lstrip(b"\xef\xbb\xbf").strip():
        return "empty", "the file is empty (only blank lines)"
    return "not-a-report", (
        f"the first line is not a {spec.name} header ({known} of {len(spec.columns)} "
        f"expected columns found; the file looks like {sniff(head)}; a report without its "
        "header row?); nothing of this file was written"
    )


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
    # the previous outputs as keys of the version written now (a switch moved them)
    stale = {rebase_key(lake, k) for k in previous.get("outputs", [])} - set(current.outputs)
    for key in stale:
        lake.delete(Zone.STAGE2P, key)
    return len(stale)


def rows_of(results: list[FileResult]) -> pa.Table:
    """A table of per-file results (for artifacts and printing)."""
    cols = ["name", "table", "status", "mode", "rows_read", "rows_written", "rows_quarantined"]
    return pa.table({c: [getattr(r, c) for r in results] for c in cols})
