"""Streaming CSV -> typed, validated, pseudonymized record batches, driven by a TableSpec.

Two read modes, one result:

* **fast**: pyarrow's multithreaded streaming reader, every column read as text. Rows
  that fail type conversion are quarantined with their exact CSV record number.
* **exact**: if the file has rows with the wrong field count or bytes that are not
  UTF-8, the fast path cannot tell record numbers (the threaded reader does not report
  them), so the file is read again single-threaded, as bytes, and every bad row is
  quarantined with its record number and reason.

Record numbers count CSV records with the header as 1; they equal physical line numbers
unless a quoted field holds a newline.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from edulake.core.types import arrow_type
from edulake.privacy.pseudonym import Pseudonymizer, clean_ids
from edulake.specs import PiiOp, TableSpec

BLOCK_SIZE = 8 << 20  # ~100k rows a batch for Clever files
MAX_BLOCK_SIZE = 64 << 20  # a record larger than this is not a Clever row
MAX_FIELD_CHARS = 65_536  # longer text values are quarantined, not published

_TRUE = ("true", "t", "1", "yes", "y")
_FALSE = ("false", "f", "0", "no", "n")
# At most 18 digits: always inside int64 (a longer number is quarantined, never a crash).
_INT_RE = r"^-?\d{1,18}$"
_FLOAT_RE = r"^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$"


class NeedsExactMode(Exception):
    """The fast reader met a malformed row or invalid UTF-8: re-read in exact mode."""


class EmptyFileError(ValueError):
    """A file with no header at all."""


class NotCsvError(ValueError):
    """A file that is not a CSV report at all (HTML, JSON, UTF-16, a runaway quote...)."""


class RecordTooLargeError(ValueError):
    """A CSV record larger than the read block (a runaway quoted field, or not a CSV)."""


def sniff(head: bytes, default: str = "not this report's CSV") -> str:
    """A short, data-free description of what a file's first bytes look like."""
    text = head.lstrip(b"\xef\xbb\xbf").lstrip()
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "UTF-16 text (Clever sends UTF-8: re-export or convert it)"
    if text[:1] == b"<":
        return "HTML or XML (an error or login page saved instead of the report?)"
    if text[:1] in (b"{", b"["):
        return "JSON (an API error response saved instead of the report?)"
    if b"\x00" in head[:4096]:
        return "binary data"
    return default


@dataclass
class Rejected:
    """Rows quarantined from one batch: record numbers, reasons and raw row text."""

    lines: list[int] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    raw: list[str] = field(default_factory=list)
    # physical lines swallowed by malformed records beyond their first (unterminated
    # quotes): counted so the quarantine share reflects every line lost, not one record
    extra_lines: int = 0

    def extend(self, other: Rejected) -> None:
        self.lines += other.lines
        self.reasons += other.reasons
        self.raw += other.raw
        self.extra_lines += other.extra_lines

    def __len__(self) -> int:
        return len(self.lines)


@dataclass
class Batch:
    """A validated batch: the stage2p rows, and the raw identifiers hashed in it."""

    table: pa.Table  # output columns (spec order) plus the partition column
    identities: dict[str, tuple[pa.Array, pa.Array]]  # column -> (values, pseudonyms)
    rejected: Rejected
    codes: dict[str, pa.Array] = field(default_factory=dict)  # column -> pseudonymizer codes


def read_batches(
    open_stream: Callable[[], IO[bytes]],
    spec: TableSpec,
    pseudonymizer: Pseudonymizer,
    extra: dict[str, str] | None = None,
    *,
    exact: bool = False,
    block_size: int = BLOCK_SIZE,
) -> Iterator[Batch]:
    """Validated, pseudonymized batches of a CSV file.

    In fast mode a malformed row or invalid UTF-8 raises :class:`NeedsExactMode`: the
    caller discards what it staged and reads again with ``exact=True``. A record larger
    than ``block_size`` raises :class:`RecordTooLargeError` (read again with a bigger
    block); a file that is not a CSV raises :class:`NotCsvError` or
    :class:`EmptyFileError`. Error messages never quote row data.
    """
    return _read(open_stream, spec, pseudonymizer, extra or {}, exact=exact, block_size=block_size)


def _read(
    open_stream: Callable[[], IO[bytes]],
    spec: TableSpec,
    pseudonymizer: Pseudonymizer,
    extra: dict[str, str],
    *,
    exact: bool,
    block_size: int,
) -> Iterator[Batch]:
    invalid: dict[int, str] = {}  # record number -> raw text (exact mode)

    malformed = False

    def on_invalid(row: pacsv.InvalidRow) -> str:
        nonlocal malformed
        if not exact:
            malformed = True  # exceptions raised here are swallowed: make the reader fail
            return "error"
        reason = f"expected {row.expected_columns} fields, got {row.actual_columns}"
        spans = row.text.count("\n")
        if spans:
            reason += f"; a quoted field runs over {spans + 1} lines (unterminated quote?)"
        invalid[row.number] = f"{reason}\x00{row.text}"
        return "skip"

    text_type = pa.binary() if exact else pa.string()
    names = {n for c in spec.columns for n in (c.name, *c.aliases)}
    names |= {n.upper() for n in names}
    stream = open_stream()
    try:
        try:
            reader = pacsv.open_csv(
                stream,
                read_options=pacsv.ReadOptions(use_threads=not exact, block_size=block_size),
                parse_options=pacsv.ParseOptions(
                    newlines_in_values=True, invalid_row_handler=on_invalid
                ),
                convert_options=pacsv.ConvertOptions(
                    column_types=dict.fromkeys(names, text_type),
                    strings_can_be_null=False,
                    quoted_strings_can_be_null=False,
                ),
            )
        except pa.ArrowInvalid as exc:
            _classify(exc, exact=exact, malformed=malformed, open_stream=open_stream)
            raise
        try:
            header = reader.schema.names
        except UnicodeDecodeError:
            raise NotCsvError(
                f"the header row is not UTF-8 text: {_sniff_stream(open_stream)}"
            ) from None
        mapping = spec.resolve_header(header)
        next_record = 2  # the header is record 1
        while True:
            try:
                rb = reader.read_next_batch()
            except StopIteration:
                break
            except pa.ArrowInvalid as exc:
                _classify(exc, exact=exact, malformed=malformed, open_stream=open_stream)
                raise
            table = pa.Table.from_batches([rb]).rename_columns(
                [mapping[n] for n in rb.schema.names]
            )
            # Record numbers of this batch's rows: skip the numbers of invalid rows.
            records: Sequence[int]
            if not invalid:
                records = range(next_record, next_record + table.num_rows)
                next_record += table.num_rows
            else:
                numbers: list[int] = []
                while len(numbers) < table.num_rows:
                    if next_record not in invalid:
                        numbers.append(next_record)
                    next_record += 1
                records = numbers
            rejected = Rejected()
            if exact:
                table, bad = _decode_utf8(table, records)
                rejected.extend(bad)
                dropped = set(bad.lines)
                records = [r for r in records if r not in dropped]
            yield _convert(table, records, spec, pseudonymizer, extra, rejected)
        # invalid rows after the last yielded row, and all of them in order
        if invalid:
            tail = Rejected()
            for num in sorted(invalid):
                reason, _, text = invalid[num].partition("\x00")
                tail.lines.append(num)
                tail.reasons.append(reason)
                tail.raw.append(text)
                tail.extra_lines += text.count("\n")
            yield Batch(_empty_output(spec), {}, tail)
    finally:
        stream.close()


def _classify(
    exc: pa.ArrowInvalid, *, exact: bool, malformed: bool, open_stream: Callable[[], IO[bytes]]
) -> None:
    """Turn a reader error into the exception that says what to do (or return to re-raise)."""
    msg = str(exc)
    if "Empty CSV" in msg:
        head = _head(open_stream)
        if not head.lstrip(b"\xef\xbb\xbf").strip():
            raise EmptyFileError("the file is empty (no header row)") from None
        raise NotCsvError(
            f"no CSV header could be read (an unterminated quote?): {sniff(head)}"
        ) from None
    if "straddl" in msg or "block size" in msg:
        raise RecordTooLargeError("a CSV record is larger than the read block") from None
    if not exact and (malformed or "UTF8" in msg or "UTF-8" in msg):
        raise NeedsExactMode from None


def _head(open_stream: Callable[[], IO[bytes]]) -> bytes:
    stream = open_stream()
    try:
        return bytes(stream.read(4096))
    finally:
        stream.close()


def _sniff_stream(open_stream: Callable[[], IO[bytes]]) -> str:
    return sniff(
        _head(open_stream),
        "text in another encoding (Windows-1252 or Latin-1?): re-export it as UTF-8",
    )


def _decode_utf8(table: pa.Table, records: Sequence[int]) -> tuple[pa.Table, Rejected]:
    """Binary columns to text; rows with bytes that are not UTF-8 are rejected."""
    bad_rows: set[int] = set()
    for col in table.columns:
        try:
            pc.cast(col, pa.string())
        except pa.ArrowInvalid:
            for i, v in enumerate(col.to_pylist()):
                try:
                    v.decode("utf-8")
                except UnicodeDecodeError:
                    bad_rows.add(i)
    rejected = Rejected()
    if bad_rows:
        for i in sorted(bad_rows):
            row = [c[i].as_py().decode("utf-8", "replace") for c in table.columns]
            rejected.lines.append(records[i])
            rejected.reasons.append("bytes that are not UTF-8")
            rejected.raw.append(json.dumps(row, ensure_ascii=False))
        keep = pa.array([i not in bad_rows for i in range(table.num_rows)])
        table = table.filter(keep)
    return table.cast(pa.schema([pa.field(n, pa.string()) for n in table.column_names])), rejected


def _parse(col: pa.Array, spec_type: str) -> tuple[pa.Array, pa.Array]:
    """Parse a text column to its spec type: (values, failed mask). Blank -> null."""
    trimmed = pc.utf8_trim_whitespace(col)
    blank = pc.equal(trimmed, "")
    if spec_type == "date":
        parsed = pc.strptime(trimmed, format="%Y-%m-%d", unit="s", error_is_null=True)
        values = pc.cast(_real_dates(trimmed, parsed), pa.date32())
    elif spec_type == "timestamp":
        parsed = pc.strptime(trimmed, format="%Y-%m-%d %H:%M:%S", unit="ms", error_is_null=True)
        values = _real_dates(trimmed, parsed)
    elif spec_type == "bool":
        low = pc.utf8_lower(trimmed)
        is_true = pc.is_in(low, pa.array(_TRUE))
        is_false = pc.is_in(low, pa.array(_FALSE))
        values = pc.if_else(is_true, True, pc.if_else(is_false, False, None))
    elif spec_type in ("int64", "float64"):
        unsigned = pc.replace_substring_regex(trimmed, r"^\+", "")  # Arrow rejects "+2"
        ok = pc.match_substring_regex(unsigned, _INT_RE if spec_type == "int64" else _FLOAT_RE)
        safe = pc.if_else(ok, unsigned, pa.scalar(None, pa.string()))
        values = pc.cast(safe, arrow_type(spec_type))
    else:
        raise ValueError(f"cannot parse CSV text as {spec_type}")
    failed = pc.and_(pc.invert(blank), pc.is_null(values))
    values = pc.if_else(blank, pa.scalar(None, values.type), values)
    return values, failed


def _parse_distinct(col: pa.Array, spec_type: str) -> tuple[pa.Array, pa.Array]:
    """:func:`_parse`, computed once per distinct text and gathered back (same result).

    Typed report columns repeat a few texts (one date a file, True/False, small counts):
    parsing the distinct texts then gathering costs a fraction of parsing every row.
    """
    encoded = pc.dictionary_encode(col)
    if 2 * len(encoded.dictionary) > len(col):
        return _parse(col, spec_type)
    values, failed = _parse(encoded.dictionary, spec_type)
    return pc.take(values, encoded.indices), pc.take(failed, encoded.indices)


def _real_dates(text: pa.Array, parsed: pa.Array) -> pa.Array:
    """Null where strptime rolled an impossible date over (2022-02-30 -> 2022-03-02)."""
    parts = pc.extract_regex(text, r"^\s*(?P<y>\d+)-(?P<m>\d+)-(?P<d>\d+)")
    month = pc.cast(pc.struct_field(parts, "m"), pa.int64(), safe=False)
    day = pc.cast(pc.struct_field(parts, "d"), pa.int64(), safe=False)
    same = pc.and_(pc.equal(pc.month(parsed), month), pc.equal(pc.day(parsed), day))
    return pc.if_else(pc.fill_null(same, False), parsed, pa.scalar(None, parsed.type))


def _convert(
    table: pa.Table,
    records: Sequence[int],
    spec: TableSpec,
    pseudonymizer: Pseudonymizer,
    extra: dict[str, str],
    rejected: Rejected,
) -> Batch:
    """Type, validate and pseudonymize one batch of text columns."""
    n = table.num_rows
    parsed: dict[str, pa.Array] = {}
    bad = pa.repeat(pa.scalar(False), n)
    reasons: list[tuple[pa.Array, str]] = []
    for c in spec.columns:
        if c.name not in table.column_names:
            parsed[c.name] = pa.nulls(n, arrow_type(c.type))
            continue
        col = table[c.name].combine_chunks()
        if c.type == "string":
            parsed[c.name] = col
            too_long = pc.fill_null(pc.greater(pc.utf8_length(col), MAX_FIELD_CHARS), False)
            if pc.any(too_long).as_py():
                reasons.append((too_long, f"{c.name}: longer than {MAX_FIELD_CHARS} characters"))
                bad = pc.or_(bad, too_long)
            continue
        values, failed = _parse_distinct(col, c.type)
        parsed[c.name] = values
        if c.name == spec.partition_by:
            failed = pc.or_(failed, pc.is_null(values))
        reasons.append((failed, f"{c.name}: not a valid {c.type}"))
        bad = pc.or_(bad, failed)
    if pc.any(bad).as_py():
        idx = pc.indices_nonzero(bad).to_pylist()
        for i in idx:
            rejected.lines.append(records[i])
            rejected.reasons.append(
                "; ".join(reason for mask, reason in reasons if mask[i].as_py())
            )
            rejected.raw.append(
                json.dumps(
                    [table[name][i].as_py() for name in table.column_names], ensure_ascii=False
                )
            )
        keep = pc.invert(bad)
        parsed = {k: pc.filter(v, keep) for k, v in parsed.items()}
        n = n - len(idx)

    out: dict[str, pa.Array] = {}
    identities: dict[str, tuple[pa.Array, pa.Array]] = {}
    codes: dict[str, pa.Array] = {}
    for c in spec.columns:
        v = parsed[c.name]
        if c.op is PiiOp.DROP:
            continue
        if c.is_hashed:
            ids = clean_ids(v)
            pseudo, codes[c.name] = pseudonymizer.encode(ids)
            if c.op is PiiOp.HASH:
                identities[c.name] = (ids, pseudo)
            v = pseudo
        elif c.op is PiiOp.MASK:
            v = pc.if_else(pc.is_valid(v), pa.scalar("*"), pa.scalar(None, pa.string()))
        out[c.output_name] = v
    for name, value in extra.items():
        out[name] = pa.repeat(pa.scalar(value, pa.string()), n)
    schema = _output_schema(spec)
    return Batch(pa.table(out).select(schema.names).cast(schema), identities, rejected, codes)


def _output_schema(spec: TableSpec) -> pa.Schema:
    """Data columns plus, for day partitions, the partition column (split off on write)."""
    schema = spec.arrow_schema()
    if spec.partition_by and spec.partition_granularity == "day":
        part = spec.column(spec.partition_by)
        schema = schema.append(pa.field(part.name, arrow_type(part.type)))
    return schema


def _empty_output(spec: TableSpec) -> pa.Table:
    return _output_schema(spec).empty_table()
