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

import codecs
import csv
import gzip
import io
import json
import re
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO, Any, NoReturn

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from edulake.core.settings import ProcessingSettings
from edulake.core.types import arrow_type
from edulake.privacy.pseudonym import Pseudonymizer, clean_ids
from edulake.privacy.scrub import DataError, safe_message
from edulake.specs import HeaderMismatch, PiiOp, TableSpec

# ~50k Clever rows a batch: the default of EDULAKE_PROCESSING__BLOCK_MB
BLOCK_SIZE = ProcessingSettings.model_fields["block_mb"].default << 20
MAX_BLOCK_SIZE = 64 << 20  # a record larger than this is not a Clever row
MAX_FIELD_CHARS = 65_536  # longer text values are quarantined, not published

_TRUE = ("true", "t", "1", "yes", "y")
_FALSE = ("false", "f", "0", "no", "n")
# At most 18 digits: always inside int64 (a longer number is quarantined, never a crash).
_INT_RE = r"^-?\d{1,18}$"
_FLOAT_RE = r"^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$"


class NeedsExactMode(Exception):
    """The fast reader met a malformed row or invalid UTF-8: re-read in exact mode."""


class EmptyFileError(DataError):
    """A file with no header at all."""


class NotCsvError(DataError):
    """A file that is not a CSV report at all (HTML, JSON, UTF-16, a runaway quote...)."""


class RecordTooLargeError(DataError):
    """A CSV record larger than the read block (a runaway quoted field, or not a CSV)."""


class HeaderError(DataError):
    """A header that does not match the spec, described without quoting a cell that
    could be data (see :func:`describe_header`)."""

    def __init__(self, table: str, columns: int, missing: list[str], unknown: list[str]):
        self.table, self.columns, self.missing, self.unknown = table, columns, missing, unknown
        parts = []
        if missing:
            parts.append("missing columns: " + ", ".join(missing))
        if unknown:
            parts.append("unknown columns: " + ", ".join(unknown))
        super().__init__(f"header does not match the {table} spec ({'; '.join(parts)})")

    def __reduce__(self) -> Any:
        return (HeaderError, (self.table, self.columns, self.missing, self.unknown))

    @property
    def known(self) -> int:
        """How many of the spec's columns the header has."""
        return self.columns - len(self.missing)


def sniff(head: bytes, default: str = "not this report's CSV") -> str:
    """A short, data-free description of what a file's first bytes look like."""
    text = head.lstrip(b"\xef\xbb\xbf").lstrip()
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "UTF-16 text (Clever sends UTF-8: re-export or convert it)"
    if text[:1] == b"<":
        return "HTML or XML (an error or login page saved instead of the report?)"
    if text[:1] in (b"{", b"["):
        return "JSON (an API error response saved instead of the report?)"
    if compression_of(head) == "gzip":
        return "gzip-compressed data"
    if compression_of(head) == "zip":
        return "a zip archive"
    if b"\x00" in head[:4096]:
        return "binary data"
    return default


# Exact mode reads a file whose bytes are not all UTF-8 through :class:`MarkedStream`:
# every byte that is not part of valid UTF-8 becomes one code point of this range
# (U+10FF80..U+10FFFF, the end of plane 16, private use), so pyarrow can hand every row
# to the invalid-row handler as text (it cannot for a row that is not UTF-8: it raises a
# "CSV parse error" that quotes the row instead) and record numbers stay exact. A row
# holding such a code point is quarantined as "bytes that are not UTF-8".
_MARK_BASE = 0x10FF00
_MARKS = {0xDC00 + b: chr(_MARK_BASE + b) for b in range(0x80, 0x100)}
_MARK_RE = "[\U0010ff80-\U0010ffff]"
_MARK_PY = re.compile(_MARK_RE)
_SURROGATE = re.compile("[\udc80-\udcff]")
NOT_UTF8 = "bytes that are not UTF-8"


class MarkedStream:
    """A byte stream with every invalid UTF-8 byte replaced by its marker code point.

    Streaming (a chunk at a time; a sequence cut by a chunk boundary is decoded with the
    next chunk), and only newline, quote and comma bytes matter to the CSV parser: none of
    them is ever changed, so rows and record numbers are those of the original bytes.
    """

    def __init__(self, raw: IO[bytes], chunk: int = 1 << 20) -> None:
        self._raw, self._chunk = raw, chunk
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="surrogateescape")
        self._buf = b""
        self._eof = False
        self.closed = False
        self.marked = 0  # invalid bytes seen so far

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def writable(self) -> bool:
        return False

    def _fill(self, n: int) -> None:
        while len(self._buf) < n and not self._eof:
            data = self._raw.read(self._chunk)
            self._eof = not data
            text = self._decoder.decode(bytes(data), final=self._eof)
            if _SURROGATE.search(text):
                self.marked += len(_SURROGATE.findall(text))
                text = text.translate(_MARKS)
            self._buf += text.encode("utf-8")

    def read(self, n: int = -1) -> bytes:
        self._fill(n if n >= 0 else 1 << 62)
        if n < 0:
            n = len(self._buf)
        out, self._buf = self._buf[:n], self._buf[n:]
        return out

    def close(self) -> None:
        self.closed = True
        self._raw.close()


def unmark(text: str) -> str:
    """Row text for quarantine: marker code points back to U+FFFD."""
    return _MARK_PY.sub("\ufffd", text)


GZIP_MAGIC = b"\x1f\x8b"
ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")
# A gzip file may expand to at most this many times its size (Clever CSVs compress about
# 5-20x); beyond it the file is refused as a decompression bomb, not read on.
MAX_GZIP_RATIO = 200
MIN_GZIP_LIMIT = 64 << 20


def compression_of(head: bytes) -> str | None:
    """``"gzip"``, ``"zip"`` or None, from a file's first bytes (magic numbers)."""
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    if head.startswith(ZIP_MAGICS):
        return "zip"
    return None


class GunzipStream:
    """A gzip file, decompressed while it is read (streaming, bounded memory).

    Multi-member files are read whole. A truncated or corrupt file, or one that expands
    beyond ``limit`` bytes, raises :class:`NotCsvError` naming the byte offset reached,
    never any content.
    """

    def __init__(self, raw: IO[bytes], limit: int) -> None:
        self._gz = gzip.GzipFile(fileobj=raw, mode="rb")
        self._raw, self._limit, self._out = raw, limit, 0
        self.closed = False

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def writable(self) -> bool:
        return False

    def read(self, n: int = -1) -> bytes:
        try:
            data = self._gz.read(n)
        except (OSError, EOFError, zlib.error):
            raise NotCsvError(
                f"the gzip file is truncated or corrupt (after {self._out} decompressed "
                "bytes): deliver it again"
            ) from None
        self._out += len(data)
        if self._out > self._limit:
            raise NotCsvError(
                f"the gzip file expands beyond {self._limit} bytes (more than "
                f"{MAX_GZIP_RATIO} times its size): refused as a possible decompression bomb"
            )
        return data

    def close(self) -> None:
        self.closed = True
        self._gz.close()
        self._raw.close()


def decompressing(
    open_stream: Callable[[], IO[bytes]], size: int
) -> tuple[Callable[[], IO[bytes]], str | None]:
    """An opener that yields the CSV text of a file as landed, and its compression.

    gzip is decompressed transparently (streaming); a zip archive raises
    :class:`NotCsvError` saying what to do; anything else is opened as is.
    """
    head = _head(open_stream, 8)
    kind = compression_of(head)
    if kind == "zip":
        raise NotCsvError(
            "the file is a zip archive, not a CSV: unzip it and deliver the CSV report it "
            "holds under this name, or remove it from the source (skip it)"
        )
    if kind == "gzip":
        limit = max(MIN_GZIP_LIMIT, MAX_GZIP_RATIO * size)

        def gunzip() -> IO[bytes]:
            return GunzipStream(open_stream(), limit)  # type: ignore[return-value]

        return gunzip, kind
    return open_stream, None


# Header cells are reported by name only when they look like a column name: lower case,
# a letter or _ first, at most 41 characters, at most 2 digits (ids are long runs of
# digits and hex), and not a value the file or the lake knows as data (see describe_header).
_NAME_LIKE = re.compile(r"^[a-z_][a-z0-9_]{0,40}$")


def looks_like_column_name(cell: str) -> bool:
    return bool(_NAME_LIKE.match(cell)) and sum(ch.isdigit() for ch in cell) <= 2


def describe_header(
    header: list[str],
    spec: TableSpec,
    data_values: set[str] | frozenset[str] | Callable[[str], bool] = frozenset(),
) -> HeaderError | None:
    """The header's mismatch with ``spec`` as a :class:`HeaderError`, or None if it fits.

    Missing columns are the spec's names. An unknown cell is named when it is one of the
    spec's names or aliases (a duplicate) or looks like a column name
    (:func:`looks_like_column_name`) and is not in ``data_values`` (values the caller
    knows as data: the file's other cells, the lake's lookups); otherwise it is
    described by position and length only: ``column 9 (unrecognised, 11 chars)``.
    """
    try:
        mapping = spec.resolve_header(header)
    except HeaderMismatch as exc:
        missing = list(exc.missing)
    else:
        del mapping
        return None
    vocabulary = {n.lower() for c in spec.columns for n in (c.name, *c.aliases)}
    is_data = data_values if callable(data_values) else data_values.__contains__
    lookup: dict[str, str] = {}
    for c in spec.columns:
        for n in (c.name, *c.aliases):
            lookup[n.strip().lower()] = c.name
    seen: set[str] = set()
    unknown: list[str] = []
    for pos, cell in enumerate(header, start=1):
        text = cell.strip()
        canon = lookup.get(text.lower())
        if canon is not None and canon not in seen:
            seen.add(canon)
            continue
        if canon is not None or text.lower() in vocabulary:
            unknown.append(f"{text.lower()} (column {pos}, a second time)")
        elif looks_like_column_name(text) and not is_data(text):
            unknown.append(text)
        elif not text:
            unknown.append(f"column {pos} (blank)")
        else:
            unknown.append(f"column {pos} (unrecognised, {len(text)} chars)")
    return HeaderError(spec.name, len(spec.columns), missing, unknown)


def _cells_after_header(head: bytes, limit: int = 2000) -> set[str]:
    """The cells of the first rows after line 1 (data values, for describe_header)."""
    text = head.decode("utf-8", "replace")
    out: set[str] = set()
    for i, row in enumerate(csv.reader(io.StringIO(text, newline=""))):
        if i == 0:
            continue
        if i > limit:
            break
        out.update(cell.strip() for cell in row)
    return out


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
    is_known_value: Callable[[str], bool] | None = None,
) -> Iterator[Batch]:
    """Validated, pseudonymized batches of a CSV file.

    In fast mode a malformed row or invalid UTF-8 raises :class:`NeedsExactMode`: the
    caller discards what it staged and reads again with ``exact=True``. A record larger
    than ``block_size`` raises :class:`RecordTooLargeError` (read again with a bigger
    block); a file that is not a CSV raises :class:`NotCsvError` or
    :class:`EmptyFileError`; a header that does not fit the spec raises
    :class:`HeaderError` (``is_known_value`` tells which cells are known data: they are
    never named). Every error is a :class:`DataError`: no message quotes row data.
    """
    return _read(
        open_stream,
        spec,
        pseudonymizer,
        extra or {},
        exact=exact,
        block_size=block_size,
        is_known_value=is_known_value,
    )


def _read(
    open_stream: Callable[[], IO[bytes]],
    spec: TableSpec,
    pseudonymizer: Pseudonymizer,
    extra: dict[str, str],
    *,
    exact: bool,
    block_size: int,
    is_known_value: Callable[[str], bool] | None,
) -> Iterator[Batch]:
    invalid: dict[int, str] = {}  # record number -> raw text (exact mode)

    def on_invalid(row: pacsv.InvalidRow) -> str:
        reason = f"expected {row.expected_columns} fields, got {row.actual_columns}"
        spans = row.text.count("\n")
        if spans:
            reason += f"; a quoted field runs over {spans + 1} lines (unterminated quote?)"
        if _MARK_PY.search(row.text):
            reason += f"; {NOT_UTF8}"
        invalid[row.number] = f"{reason}\x00{unmark(row.text)}"
        return "skip"

    names = {n for c in spec.columns for n in (c.name, *c.aliases)}
    names |= {n.upper() for n in names}
    raw = open_stream()
    # exact mode: invalid UTF-8 bytes become marker code points (see MarkedStream)
    stream: Any = MarkedStream(raw) if exact else raw
    try:
        try:
            reader = pacsv.open_csv(
                stream,
                read_options=pacsv.ReadOptions(use_threads=not exact, block_size=block_size),
                # Fast mode passes no handler: pyarrow fails on the first malformed row
                # ("CSV parse error", which quotes it: see _classify) and the file is read
                # again in exact mode. A handler there would gain nothing and, for a row
                # that is not UTF-8, pyarrow cannot even call it.
                parse_options=pacsv.ParseOptions(
                    newlines_in_values=True, invalid_row_handler=on_invalid if exact else None
                ),
                convert_options=pacsv.ConvertOptions(
                    column_types=dict.fromkeys(names, pa.string()),
                    strings_can_be_null=False,
                    quoted_strings_can_be_null=False,
                ),
            )
        except pa.ArrowInvalid as exc:
            _classify(exc, exact=exact, open_stream=open_stream)
        try:
            header = reader.schema.names
        except UnicodeDecodeError:
            header = ["\U0010ff80"]  # not UTF-8: reported below
        if any(_MARK_PY.search(h) for h in header):
            raise NotCsvError(f"the header row is not UTF-8 text: {_sniff_stream(open_stream)}")
        try:
            mapping = spec.resolve_header(header)
        except HeaderMismatch:
            cells = _cells_after_header(_head(open_stream, 1 << 20))

            def is_data(cell: str) -> bool:
                return cell in cells or bool(is_known_value and is_known_value(cell))

            err = describe_header(header, spec, is_data)
            assert err is not None
            raise err from None
        next_record = 2  # the header is record 1
        while True:
            try:
                rb = reader.read_next_batch()
            except StopIteration:
                break
            except pa.ArrowInvalid as exc:
                _classify(exc, exact=exact, open_stream=open_stream)
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
            if exact and stream.marked:
                table, bad = _reject_marked(table, records)
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
    exc: pa.ArrowInvalid, *, exact: bool, open_stream: Callable[[], IO[bytes]]
) -> NoReturn:
    """Raise the exception that says what to do; never one that quotes the reader's text.

    pyarrow's messages quote the row (``CSV parse error: Expected 8 columns, got 9:
    <row>``): they are classified here and dropped (``from None``), never passed on.
    """
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
    if not exact and ("UTF8" in msg or "UTF-8" in msg or "CSV parse error" in msg):
        # a malformed row (fast mode has no handler) or bytes that are not UTF-8
        raise NeedsExactMode from None
    raise DataError(
        f"the CSV reader failed in {'exact' if exact else 'fast'} mode "
        f"({safe_message(exc)}; its message, which may quote a row, is withheld)"
    ) from None


def _head(open_stream: Callable[[], IO[bytes]], size: int = 4096) -> bytes:
    stream = open_stream()
    try:
        return bytes(stream.read(size))
    finally:
        stream.close()


def _sniff_stream(open_stream: Callable[[], IO[bytes]]) -> str:
    return sniff(
        _head(open_stream),
        "text in another encoding (Windows-1252 or Latin-1?): re-export it as UTF-8",
    )


def _reject_marked(table: pa.Table, records: Sequence[int]) -> tuple[pa.Table, Rejected]:
    """Rows holding marker code points (bytes that were not UTF-8) are rejected."""
    bad = pa.repeat(pa.scalar(False), table.num_rows)
    for col in table.columns:
        hit = pc.fill_null(pc.match_substring_regex(col, _MARK_RE), False)
        bad = pc.or_(bad, hit)
    rejected = Rejected()
    if not pc.any(bad).as_py():
        return table, rejected
    for i in pc.indices_nonzero(bad).to_pylist():
        row = [unmark(c[i].as_py()) for c in table.columns]
        rejected.lines.append(records[i])
        rejected.reasons.append(NOT_UTF8)
        rejected.raw.append(json.dumps(row, ensure_ascii=False))
    return table.filter(pc.invert(bad)), rejected


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
