"""PII audit: is any raw identifier readable outside the protected zone?

Collects every raw identifier present in stage1np and scans everything an analyst or a
BI tool can read. Each source in :mod:`edulake.sources.registry` collects its own
identifiers (``Source.raw_ids``); ``edulake audit`` loops over all of them, and every
run's audit before publishing (:func:`audit_run`, one :class:`AuditScope` per run) uses
its source's. The identifiers are the values of the fields the configs pseudonymize
or mask, and of every field named like an identifier: for Clever the CSV columns each spec hashes (``sis_id``/``staff_id``,
``clever_user_id``); for LibInsight the record fields each dataset config hashes (e.g.
``_entered_by``, a staff member's name) in the raw JSON pages. What is scanned:

* every file under the main lake root except ``stage1np`` (raw by design) and ``_tmp``:
  stage2p and exports Parquet (values of every column, footer metadata and statistics,
  and the raw bytes), ``_system`` records, any other text file; protected zones found on
  the main root while an np root is configured are strays and are scanned too;
* the DuckDB catalog: every table and view outside the ``*_np`` schemas (values of
  every text column, table and column comments, view SQL);
* log files and other texts given by the caller (e.g. Prefect logs and artifacts).

One check is not about identifiers: every view of the published layer (the DuckDB
catalog's views outside ``*_np``) must have no cell counting ``0 < n < min_cell``
people, and no group of a declared view whose hidden cells add up to fewer than min n
(:func:`Auditor.check_small_cells`; see :mod:`edulake.privacy.suppression`). Those
findings name the view and the column, never a value.

Matching is by whole token (an id inside a longer token - a hex pseudonym that happens
to contain the digits of a short id - is not a finding). An id made of several tokens
(a name such as ``Anne O'Neil``) is a phrase: it is found as a whole substring bounded
by non-word characters, checked only where all its tokens occur. Ids shorter than
:data:`MIN_ID_LEN` are too ambiguous to search for and are counted instead. Findings
name the location and a salted fingerprint of the id, never the id itself.
"""

from __future__ import annotations

import base64
import binascii
import bz2
import codecs
import contextlib
import csv
import gzip
import hashlib
import io
import itertools
import json
import lzma
import os
import re
import secrets
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from edulake.core.csvproc import compression_of
from edulake.core.lake import TMP_DIR, Lake, Zone
from edulake.privacy.identifiers import is_identifier, is_identifier_name
from edulake.sources.libinsight.config import DatasetConfig, load_dataset_config
from edulake.specs import PiiOp, TableSpec

MIN_ID_LEN = 4
# What splits tokens (the complement of _TOKEN), for RE2 over text: non-ASCII included.
_SEPARATOR = r"[\s,;\"'|<>(){}\[\]=:\\/\x00-\x1f\x{7f}-\x{10ffff}]"
_TOKEN = re.compile(rb"[^\s,;\"'|<>(){}\[\]=:\\/\x00-\x1f\x7f-\xff]+")
# A phrase must not touch a word character (UTF-8 multi-byte letters included).
_WORD = rb"A-Za-z0-9_\x80-\xff"
# Ops whose values must never leave the protected zone (DROP is left out: see
# raw_identifiers; KEEP values are published on purpose).
PROTECTED_OPS = frozenset({PiiOp.HASH, PiiOp.HASH_NO_LOOKUP, PiiOp.MASK})


@dataclass(frozen=True)
class Finding:
    """A raw identifier found where it must not be: where, and a salted fingerprint."""

    location: str
    detail: str
    fingerprint: str
    kind: str = "identifier"  # or "small-cell": a published count below the minimum n


@dataclass
class AuditReport:
    """What was checked and what was found."""

    ids_checked: int = 0
    ids_too_short: int = 0
    scanned: dict[str, int] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def count(self, kind: str) -> None:
        self.scanned[kind] = self.scanned.get(kind, 0) + 1


class Auditor:
    """Holds the identifiers and matches text, values and bytes against them."""

    def __init__(self, ids: set[str], min_cell: int | None = None) -> None:
        self.report = AuditReport()
        self.min_cell = min_cell  # None: the EDULAKE_PUBLISH__MIN_CELL setting
        self.report.ids_too_short = sum(1 for i in ids if len(i) < MIN_ID_LEN)
        self.ids = {i for i in ids if len(i) >= MIN_ID_LEN}
        self.report.ids_checked = len(self.ids)
        encoded = {i.encode() for i in self.ids}
        # One-token ids: a set intersection with the tokens of the text (fast path).
        self._bytes = {b for b in encoded if _TOKEN.fullmatch(b)}
        # Ids with separators inside ("Jane Smith"): a bounded substring search, tried only
        # when every token of the phrase occurs in the text (so mostly never).
        self._phrases: list[tuple[frozenset[bytes], re.Pattern[bytes]]] = [
            (
                frozenset(_TOKEN.findall(b)),
                re.compile(rb"(?<![" + _WORD + rb"])" + re.escape(b) + rb"(?![" + _WORD + rb"])"),
            )
            for b in sorted(encoded - self._bytes)
        ]
        self._salt = secrets.token_bytes(16)  # fingerprints mean nothing outside this run
        self._seen: set[tuple[str, str]] = set()

    def _found(self, location: str, detail: str, value: str) -> None:
        fp = hashlib.sha256(self._salt + value.encode()).hexdigest()[:12]
        if (location, fp) not in self._seen:  # one finding per id and place
            self._seen.add((location, fp))
            self.report.findings.append(Finding(location, detail, fp))

    def matches(self, data: bytes) -> set[str]:
        """The ids that occur in ``data``: whole tokens, or whole bounded phrases."""
        tokens = set(_TOKEN.findall(data))
        hits = {t.decode() for t in tokens & self._bytes}
        for parts, pattern in self._phrases:
            if parts <= tokens:
                m = pattern.search(data)
                if m is not None:
                    hits.add(m.group().decode())
        return hits

    def scan_bytes(self, location: str, data: bytes, detail: str = "bytes") -> None:
        for value in self.matches(without_vendored(data)):
            self._found(location, detail, value)

    def scan_blob(self, location: str, data: bytes) -> None:
        """Bytes that may hide text: as is, every base64 run
        decoded (Prefect's result records hold pickles in base64), and any zlib, gzip,
        bz2 or lzma payload found that way opened (compressed serializers)."""
        self.scan_bytes(location, data, "raw bytes")
        for blob in _hidden_payloads(data):
            self.scan_bytes(location, blob, "inside an encoded payload")

    def scan_text(self, location: str, text: str, detail: str = "text") -> None:
        self.scan_bytes(location, text.encode("utf-8", "replace"), detail)

    def scan_values(self, location: str, column: str, values: pa.Array | pa.ChunkedArray) -> None:
        """Text values (lists of text too): exact matches (vectorized), then tokens and
        phrases inside the distinct values."""
        if isinstance(values, pa.ChunkedArray):
            values = values.combine_chunks()
        while (
            pa.types.is_list(values.type)
            or pa.types.is_large_list(values.type)
            or (pa.types.is_fixed_size_list(values.type))
        ):
            values = pc.list_flatten(values)
        if pa.types.is_dictionary(values.type):
            values = values.cast(values.type.value_type)
        if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
            return
        distinct = pc.unique(values)
        distinct = distinct.filter(pc.is_valid(distinct))
        hits = self.ids.intersection(distinct.to_pylist())
        for v in hits:
            self._found(location, f"value in column {column}", v)
        # Inside values: only a value with a separator can hold an id other than itself (a
        # one-token value is its own only token, compared whole just above), so pseudonyms,
        # dates and codes are not tokenized again. One value a line: a phrase is never
        # made of the end of one value and the next.
        several = distinct.filter(pc.match_substring_regex(distinct, _SEPARATOR))
        text = "\n".join(several.to_pylist())
        for v in self.matches(text.encode("utf-8", "replace")) - hits:
            self._found(location, f"inside a value in column {column}", v)

    def scan_parquet(self, location: str, data: bytes, *, raw_bytes: bool = True) -> None:
        """Values, metadata, statistics, column names and the footer; with ``raw_bytes``
        also every byte of the file (compressed pages included: slow, rarely more)."""
        pf = pq.ParquetFile(pa.BufferReader(data))
        meta = pf.metadata
        self.scan_text(location, str(pf.schema_arrow.metadata or {}), "file metadata")
        self.scan_text(location, "\n".join(pf.schema_arrow.names), "column names")
        footer = int.from_bytes(data[-8:-4], "little") if data[-4:] == b"PAR1" else 0
        if footer and not raw_bytes:
            self.scan_bytes(location, data[-footer - 8 :], "file footer")
        for rg in range(meta.num_row_groups):
            for ci in range(meta.num_columns):
                stats = meta.row_group(rg).column(ci).statistics
                if stats is not None and stats.has_min_max:
                    self.scan_text(location, f"{stats.min}\n{stats.max}", "column statistics")
        table = pf.read()
        for name in table.column_names:
            self.scan_values(location, name, table[name])
        if raw_bytes or not footer:
            self.scan_bytes(location, data, "raw bytes of the file")

    def scan_duckdb(self, path: str) -> None:
        import duckdb

        con = duckdb.connect(path, read_only=True)
        try:
            # Protected tables live in <source>_np.duckdb files under the np root, never in
            # the analysts' file: every table here is scanned, whatever its schema's name.
            tables = con.execute(
                "SELECT schema_name, table_name, comment FROM duckdb_tables() WHERE NOT internal"
            ).fetchall()
            for schema, table, comment in tables:
                loc = f"catalog {os.path.basename(path)}: {schema}.{table}"
                self.report.count("catalog tables")
                self.scan_text(loc, comment or "", "table comment")
                cols = con.execute(
                    "SELECT column_name, data_type, comment FROM duckdb_columns() "
                    "WHERE schema_name = ? AND table_name = ?",
                    [schema, table],
                ).fetchall()
                for col, dtype, ccomment in cols:
                    self.scan_text(loc, ccomment or "", f"comment of column {col}")
                    if dtype == "VARCHAR" or dtype.startswith("VARCHAR["):
                        q = f'SELECT DISTINCT "{col}" FROM "{schema}"."{table}"'
                        self.scan_values(loc, col, con.sql(q).to_arrow_table()[col])
            views = con.execute(
                "SELECT schema_name, view_name, sql FROM duckdb_views() "
                "WHERE NOT internal AND schema_name NOT LIKE '%\\_np' ESCAPE '\\'"
            ).fetchall()
            for schema, view, sql in views:
                self.report.count("catalog views")
                self.scan_text(f"catalog {os.path.basename(path)}: view {schema}.{view}", sql or "")
                self.check_small_cells(con, f"catalog {os.path.basename(path)}", schema, view)
        finally:
            con.close()

    def check_small_cells(self, con: Any, where: str, schema: str, view: str) -> None:
        """Findings for a published view with a people count ``0 < n < min_cell``.

        The columns checked are the counts the view file declares (bundled views) and
        every integer column whose name says it counts people (any view, so one created
        by hand is checked too). Findings name view and column, never values.
        """
        import duckdb

        from edulake.privacy.suppression import (
            PEOPLE_WORDS,
            SUPPRESSED,
            ViewDeclarationError,
            declarations,
            min_cell_setting,
        )

        n = self.min_cell if self.min_cell is not None else min_cell_setting()
        try:
            decl = declarations(schema).get(view)
        except ViewDeclarationError:
            decl = None
        cols = con.execute(
            "SELECT column_name, data_type FROM duckdb_columns() "
            "WHERE schema_name = ? AND table_name = ?",
            [schema, view],
        ).fetchall()
        integer = {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UBIGINT", "UINTEGER"}
        counts = [
            c
            for c, t in cols
            if (decl is not None and c in decl.counts)
            or (t in integer and any(w in c.lower() for w in PEOPLE_WORDS))
        ]
        loc = f"{where}: view {schema}.{view}"
        fq = f'"{schema}"."{view}"'
        self.report.count("published views checked for small cells")
        try:
            con.execute(f"SELECT * FROM {fq} LIMIT 0").fetchall()
        except duckdb.Error as exc:  # the message may quote values: only its class is kept
            self.report.findings.append(
                Finding(
                    loc,
                    f"view cannot be read ({type(exc).__name__}): not checked",
                    "",
                    "small-cell",
                )
            )
            return
        for col in counts:
            q = f'SELECT COUNT(*) FROM {fq} WHERE "{col}" > 0 AND "{col}" < {int(n)}'
            if con.execute(q).fetchone()[0]:
                self.report.findings.append(
                    Finding(loc, f"column {col}: cells with 0 < n < {n}", "", "small-cell")
                )
        names = {c for c, _ in cols}
        if decl is None or not decl.counts or SUPPRESSED not in names:
            return
        first = decl.counts[0]
        group = ", ".join(f'"{g}"' for g in decl.group)
        q = (
            f"SELECT COUNT(*) FROM (SELECT SUM(CASE WHEN {SUPPRESSED} THEN 1 ELSE 0 END) AS s, "
            f'SUM(CASE WHEN NOT {SUPPRESSED} AND "{first}" > 0 THEN 1 ELSE 0 END) AS o '
            f"FROM {fq}{' GROUP BY ' + group if group else ''}) WHERE s = 1 AND o > 0"
        )
        if con.execute(q).fetchone()[0]:
            self.report.findings.append(
                Finding(
                    loc,
                    f"column {first}: a group with one suppressed cell (no complement)",
                    "",
                    "small-cell",
                )
            )
            return
        # The hidden cells of a group, counted from the tables by the view file's own SQL,
        # must add up to 0 or at least n (else total minus the shown cells is small), unless
        # every non-zero cell of the group is hidden.
        from edulake.catalog.athena import load_views, to_duckdb
        from edulake.privacy.suppression import output_columns

        raw_sql = load_views(schema)[view]
        labels = [
            c
            for c in output_columns(view, raw_sql)
            if c not in decl.counts and c not in decl.measures
        ]
        on = " AND ".join(f'r."{c}" IS NOT DISTINCT FROM p."{c}"' for c in labels) or "TRUE"
        by = ", ".join(f'r."{g}"' for g in decl.group)
        q = (
            f"WITH r AS ({to_duckdb(raw_sql)}) SELECT COUNT(*) FROM ("
            f'SELECT SUM(CASE WHEN p.{SUPPRESSED} THEN r."{first}" ELSE 0 END) AS hidden, '
            f'SUM(CASE WHEN NOT p.{SUPPRESSED} AND r."{first}" > 0 THEN 1 ELSE 0 END) AS shown '
            f"FROM r JOIN {fq} AS p ON {on}{' GROUP BY ' + by if by else ''}) "
            f"WHERE hidden > 0 AND hidden < {int(n)} AND shown > 0"
        )
        try:
            small_sum = con.execute(q).fetchone()[0]
        except duckdb.Error as exc:
            self.report.findings.append(
                Finding(loc, f"complements not checked ({type(exc).__name__})", "", "small-cell")
            )
            return
        if small_sum:
            self.report.findings.append(
                Finding(
                    loc,
                    f"column {first}: a group whose hidden cells add up to fewer than {n}",
                    "",
                    "small-cell",
                )
            )


_B64_RUN = re.compile(rb"[A-Za-z0-9+/_-]{16,}={0,2}")
_HEX_RUN = re.compile(rb"(?:[0-9a-fA-F]{2}){8,}")
_OPENERS = (zlib.decompress, gzip.decompress, bz2.decompress, lzma.decompress)


def _hidden_payloads(data: bytes, depth: int = 2) -> list[bytes]:
    """What base64 and hex runs in ``data`` decode to, and compressed payloads opened."""
    out: list[bytes] = []
    for m in _B64_RUN.finditer(data):
        run = m.group()
        try:
            raw = base64.b64decode(
                run + b"=" * (-len(run) % 4), altchars=b"-_" if b"-" in run or b"_" in run else None
            )
        except (binascii.Error, ValueError):
            continue
        out.append(raw)
        for open_ in _OPENERS:
            with contextlib.suppress(Exception):  # not this compression
                out.append(open_(raw))
    for m in _HEX_RUN.finditer(data):
        out.append(bytes.fromhex(m.group().decode()))
    if depth > 1:
        out += [inner for blob in list(out) for inner in _hidden_payloads(blob, depth - 1)]
    return out


def raw_identifiers(
    lake: Lake, dataset_configs: Iterable[DatasetConfig] = (), sources: Iterable[str] | None = None
) -> set[str]:
    """Every non-blank raw value of a pseudonymized or masked field in stage1np.

    Each registered source (:mod:`edulake.sources.registry`) collects its own: Clever the
    values of the columns its specs protect and of every column named like an
    identifier, and the header cells that are not column names (see :func:`_ids_in_csv`);
    LibInsight the hashed or masked fields of the records of every landed page, read
    with the configs that apply to its dataset (see :func:`libinsight_configs`), and any
    field named like an identifier that no config keeps. ``dataset_configs`` adds
    LibInsight configs that are not bundled (a YAML path given to the flow). Any other
    ``.csv`` in stage1np (a folder no source claims) is read by its header names alone.
    ``sources`` limits this to the named sources (and leaves unclaimed folders out).

    Dropped fields are not collected: ``op: drop`` says a field is not needed, not that
    it is personal (the reference desk drops ``walkins`` and ``scans``, small counts that
    occur legitimately everywhere); a personal field is configured ``hash`` or ``mask``.
    """
    from edulake.sources import registry

    ids: set[str] = set()
    chosen = [registry.get(n) for n in sources] if sources is not None else registry.registered()
    for source in chosen:
        ids |= source.raw_ids(lake, None, list(dataset_configs))
    if sources is None:
        claimed = {s.name for s in registry.registered()}
        for obj in lake.list(Zone.STAGE1NP):
            if obj.key.split("/", 1)[0] not in claimed:
                ids |= stage1np_csv_ids(lake, obj.key)
    return ids


def stage1np_csv_ids(lake: Lake, key: str, spec: TableSpec | None = None) -> set[str]:
    """The raw identifiers of one stage1np file if it is a CSV (see :func:`_ids_in_csv`),
    read with ``spec`` (its protected columns, its column order for a headerless file),
    or by its header names alone."""
    if spec is None and not key.lower().endswith((".csv", ".csv.gz")):
        return set()
    return _ids_in_csv(lake.read_bytes(Zone.STAGE1NP, key), spec)


LIBINSIGHT = "libinsight"
# _system/libinsight/<table>/watermark-<dataset id>.json: the pipeline's record of which
# table (config name) a dataset was processed into.
_WATERMARK = re.compile(r"^([^/]+)/watermark-(\d+)\.json$")
_PAGE = re.compile(r"^libinsight/dataset-(\d+)/.+\.json$")


def bundled_dataset_configs() -> list[DatasetConfig]:
    """Every LibInsight dataset config shipped in ``edulake/specs/libinsight``."""
    folder = resources.files("edulake.specs").joinpath(LIBINSIGHT)
    names = sorted(f.name[: -len(".yaml")] for f in folder.iterdir() if f.name.endswith(".yaml"))
    return [load_dataset_config(n) for n in names]


def libinsight_configs(
    lake: Lake, extra: Iterable[DatasetConfig] = ()
) -> dict[int | None, list[DatasetConfig]]:
    """Which configs apply to each landed dataset id (``None``: datasets not mapped).

    A dataset maps to the configs named by its watermark files in ``_system`` (the table
    it was processed into) or declaring its ``dataset_id``. A dataset with neither (a
    first run that stopped before its watermark, a config not known here) is read with
    every known config: a field any of them protects is collected (safe side).
    """
    known = {c.name: c for c in [*bundled_dataset_configs(), *extra]}
    out: dict[int | None, list[DatasetConfig]] = {None: list(known.values())}
    for c in known.values():
        if c.dataset_id is not None:
            out.setdefault(c.dataset_id, []).append(c)
    for obj in lake.list(Zone.SYSTEM, LIBINSIGHT):
        m = _WATERMARK.match(obj.key.split("/", 1)[1])
        if m is None:
            continue
        # The table is the config's name (bound config, or older lakes) or <name>_<id>.
        table, dataset = m.group(1), int(m.group(2))
        cfg = known.get(table) or known.get(table.removesuffix(f"_{dataset}"))
        if cfg is not None and cfg not in out.get(dataset, []):
            out.setdefault(dataset, []).append(cfg)
    return out


def libinsight_ids(
    lake: Lake, configs: dict[int | None, list[DatasetConfig]], keys: Iterable[str] | None = None
) -> set[str]:
    """The raw identifiers of LibInsight's landed pages (``keys``; None: every page)."""
    out: set[str] = set()
    labels_of: dict[int, set[str]] = {}  # dataset id -> labels of its protected fields
    kept_labels: dict[int, set[str]] = {}  # dataset id -> other configured labels
    if keys is None:
        keys = [o.key for o in lake.list(Zone.STAGE1NP, LIBINSIGHT)]
    for key in keys:
        # libinsight/dataset-<id>/landed=<day>/<from>_<to>/page-00001.json (see its store)
        m = _PAGE.match(key)
        if m is None:
            continue
        dataset = int(m.group(1))
        if dataset not in labels_of:
            labels_of[dataset] = {
                label
                for cfg in configs.get(dataset, configs[None])
                for f in cfg.fields
                if f.op in PROTECTED_OPS
                for label in (f.label, *f.aliases)
            }
        labels = labels_of[dataset]
        kept = kept_labels.setdefault(
            dataset,
            {f.label for cfg in configs.get(dataset, configs[None]) for f in cfg.fields} - labels,
        )
        for rec in _page_records(lake.read_bytes(Zone.STAGE1NP, key)):
            # Configured protected fields, and any field named like an identifier that no
            # config lists (a renamed `Entered By`: held back now, a column in older lakes).
            named = {k for k in rec.keys() - kept if is_identifier(k)}
            for label in (labels | named) & rec.keys():
                out |= _texts_of(rec[label])
    return out


def _page_records(raw: bytes) -> list[dict[str, Any]]:
    """The records of a raw page (``payload.records``); none if it is not JSON."""
    try:
        body = json.loads(raw)
    except ValueError:  # landed as received: a broken page holds nothing readable
        return []
    payload = body.get("payload") if isinstance(body, dict) else None
    recs = payload.get("records") if isinstance(payload, dict) else None
    return [r for r in recs if isinstance(r, dict)] if isinstance(recs, list) else []


def _texts_of(value: Any) -> set[str]:
    """A field's raw value as identifier texts (each element of a multi-choice list)."""
    if isinstance(value, list):
        return {t for v in value for t in _texts_of(v)}
    if value is None or isinstance(value, (dict, bool)):
        return set()
    text = str(value).strip()
    return {text} if text else set()


# Header cells that are values, not names, yet not identifiers: booleans, numbers, dates.
# ... and a header cell is taken for an id only if it looks like one: a digit or an @
# (sis ids, Clever ids, e-mails). Words ("not,a,clever,header") are not: they would match
# the same words everywhere. A glued name (no digit) is not collected: Clever reports
# carry no names, and a proper header's name columns are collected by name.
_ID_LIKE = re.compile(r"[0-9@]")
_PLAIN_VALUE = re.compile(r"^(true|false|yes|no|[tfyn]|[-+]?[\d.,:eE+ -]*)$", re.IGNORECASE)


def _csv_bytes(data: bytes) -> bytes:
    """A stage1np CSV's bytes (gzip files are opened: the pipeline reads them too)."""
    if compression_of(data[:8]) == "gzip":
        try:
            return gzip.decompress(data)
        except (OSError, EOFError, zlib.error):  # truncated: what can be read
            return _gunzip_prefix(data)
    return data


def _ids_fast(data: bytes, protected: set[str], vocabulary: set[str]) -> set[str] | None:
    """:func:`_ids_in_csv` for the common case, with pyarrow's reader: a clean header
    (every cell a known or identifier column name, no duplicates) and every row well
    formed UTF-8. None when the file needs the careful, row-by-row reading."""
    first = data[: 1 << 16].split(b"\n", 1)[0].rstrip(b"\r")
    try:
        header = next(csv.reader([first.decode("utf-8").lstrip("\ufeff")]), [])
    except UnicodeDecodeError:
        return None
    names = [h.strip().lower() for h in header]
    if (
        not header
        or len(set(names)) != len(names)
        or any(n not in vocabulary and not is_identifier_name(n) for n in names)
    ):
        return None  # header cells that may be data, or a headerless file
    wanted = [
        h for h, n in zip(header, names, strict=True) if n in protected or is_identifier_name(n)
    ]
    if not wanted:
        return set()
    if not _is_utf8(data):
        # pyarrow decodes a malformed row before handing it to the handler; on bytes that
        # are not UTF-8 that fails and Python prints "Exception ignored in ..." to stderr
        return None
    invalid = 0

    def on_invalid(_row: pacsv.InvalidRow) -> str:
        nonlocal invalid
        invalid += 1
        return "skip"

    try:
        table = pacsv.read_csv(
            pa.BufferReader(data),
            parse_options=pacsv.ParseOptions(
                newlines_in_values=True, invalid_row_handler=on_invalid
            ),
            convert_options=pacsv.ConvertOptions(
                include_columns=wanted, column_types=dict.fromkeys(wanted, pa.string())
            ),
        )
    except (pa.ArrowInvalid, UnicodeDecodeError):
        return None  # bytes that are not UTF-8, a malformed row the reader cannot skip
    if invalid:
        return None  # malformed rows: their ids are collected row by row
    out: set[str] = set()
    for name in table.column_names:
        values = pc.unique(pc.utf8_trim_whitespace(table[name].combine_chunks()))
        out.update(v for v in values.to_pylist() if v)
    return out


def _is_utf8(data: bytes, block: int = 1 << 20) -> bool:
    """Whether ``data`` is UTF-8, checked a block at a time (no copy of the whole file)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    view = memoryview(data)
    try:
        for start in range(0, len(view), block):
            decoder.decode(view[start : start + block])
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True


def _gunzip_prefix(data: bytes) -> bytes:
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        return d.decompress(data)
    except zlib.error:
        return b""


def _ids_in_csv(data: bytes, spec: TableSpec | None) -> set[str]:
    """The raw identifiers of one stage1np CSV, trusting no spec alone:

    * the values of every column the spec hashes or masks, and of every column whose
      name is an identifier name (:func:`edulake.privacy.identifiers.is_identifier_name`);
    * the cells of the header line that are not column names (a first data row glued to
      the header, a headerless file's first row) that look like ids (a digit or an
      ``@``), except values that are plainly not
      identifiers (booleans, numbers, dates) and values this file carries in its other,
      non-identifier columns (a school name);
    * a headerless file of a known spec (no cell of line 1 is a column name, and it has
      the spec's field count) is read with the spec's column order.
    """
    protected: set[str] = set()
    vocabulary: set[str] = set()
    if spec is not None:
        for c in spec.columns:
            for n in (c.name, *c.aliases):
                vocabulary.add(n.lower())
                if c.op in PROTECTED_OPS:
                    protected.add(n.lower())
    data = _csv_bytes(data)
    fast = _ids_fast(data, protected, vocabulary)
    if fast is not None:
        return fast
    reader = csv.reader(io.StringIO(data.decode("utf-8", "replace").lstrip("\ufeff"), newline=""))
    header = next(reader, [])
    names = [h.strip().lower() for h in header]
    rows: Iterable[list[str]] = reader
    candidates: set[str] = set()
    if spec is not None and len(header) == len(spec.columns) and not set(names) & vocabulary:
        names = [c.name for c in spec.columns]  # headerless: line 1 is data
        rows = itertools.chain([header], reader)
    else:
        candidates = {
            h.strip()
            for h, n in zip(header, names, strict=True)
            if h.strip()
            and n not in vocabulary
            and not is_identifier_name(n)
            and not _PLAIN_VALUE.match(h.strip())
            and _ID_LIKE.search(h)
        }
    idx = [i for i, n in enumerate(names) if n in protected or is_identifier_name(n)]
    others = [i for i in range(len(names)) if i not in idx] if candidates else []
    out: set[str] = set()
    kept: set[str] = set()
    for row in rows:
        for i in idx:
            if i < len(row) and row[i].strip():
                out.add(row[i].strip())
        for i in others:
            if i < len(row):
                kept.add(row[i].strip())
    return out | (candidates - kept)


def audit(
    lake: Lake,
    *,
    catalog_paths: Iterable[str] = (),
    texts: Iterable[tuple[str, str]] = (),
    dataset_configs: Iterable[DatasetConfig] = (),
    blobs: Iterable[tuple[str, bytes]] = (),
    min_cell: int | None = None,
    sources: Iterable[str] | None = None,
) -> AuditReport:
    """Scan everything readable outside the protected zones for stage1np identifiers.

    ``texts`` are logs, Prefect state messages, artifacts and events; ``blobs`` are files
    that may hide text in encoded payloads (Prefect's result storage). The identifiers
    are every registered source's (``sources``: only those named; see
    :func:`raw_identifiers`).
    """
    from edulake.core.layout import has_legacy_raw, legacy_view

    dataset_configs = list(dataset_configs)
    ids = raw_identifiers(lake, dataset_configs, sources)
    if has_legacy_raw(lake):  # raw files an older edulake left under the lake root
        ids |= raw_identifiers(legacy_view(lake), dataset_configs, sources)
    auditor = Auditor(ids, min_cell)
    separate_np = lake.protected is not lake.main
    # With an np root, raw files belong under it: any left under the lake root (a lake
    # from before they moved, see edulake.core.layout) are read by whoever gets the lake
    # folder, so they are scanned like the rest.
    skip = {TMP_DIR}
    if not separate_np:
        skip.add(Zone.STAGE1NP.value)
        # One root: the protected zones and the protected catalog files (<source>_np.duckdb,
        # see catalog.duckdb.np_catalog_dir) sit beside the rest; readers are kept out of
        # them by prefix, so they are not the analysts' view.
        skip |= {Zone.STAGE2NP.value, Zone.QUARANTINE.value}
        auditor.report.warnings.append(
            "stage1np, stage2np, quarantine and catalog/*_np.duckdb share the main root: they "
            "hold raw ids and were not scanned. Keep analysts out of them, or set an np root."
        )
    catalogs = {os.path.abspath(p) for p in catalog_paths}
    store = lake.main
    selector = pafs.FileSelector(store.base, recursive=True, allow_not_found=True)
    for info in store.fs.get_file_info(selector):
        if info.type != pafs.FileType.File:
            continue
        rel = info.path[len(store.base) :].lstrip("/")
        if rel.split("/", 1)[0] in skip:
            continue
        if rel.endswith((".duckdb", ".duckdb.wal")):
            protected = not separate_np and rel.startswith("catalog/") and "_np.duckdb" in rel
            if store.is_local and rel.endswith(".duckdb") and not protected:
                catalogs.add(info.path)
            continue
        with store.fs.open_input_file(info.path) as f:
            data = bytes(f.read())
        if rel.endswith(".parquet"):
            auditor.report.count("parquet files")
            auditor.scan_parquet(rel, data)
        else:
            auditor.report.count("other files")
            auditor.scan_bytes(rel, data)
    for path in sorted(catalogs):
        auditor.scan_duckdb(path)
    for location, text in texts:
        auditor.report.count("logs and artifacts")
        auditor.scan_text(location, text)
    for location, data in blobs:
        auditor.report.count("prefect result files")
        auditor.scan_blob(location, data)
    return auditor.report


_VENDORED = re.compile(
    rb'<script data-edulake-vendored="sha256:([0-9a-f]{64})">(.*?)</script>', re.S
)
_VENDORED_END = b"window.vegaLite=__default1;"  # edulake.report.page.BUNDLE_END


def without_vendored(data: bytes) -> bytes:
    """``data`` without the dashboards' vendored chart library (edulake.report.page).

    Only a ``<script>`` marked vendored whose content hashes to its mark and ends as the
    bundle does is left out: library code, the same in every page, where a short id
    (``1001``) occurs by chance. Anything else, the page's data included, is scanned."""
    if b"data-edulake-vendored" not in data:
        return data

    def cut(m: re.Match[bytes]) -> bytes:
        body = m.group(2)
        ok = hashlib.sha256(body).hexdigest().encode() == m.group(1)
        return b"<script></script>" if ok and body.endswith(_VENDORED_END) else m.group(0)

    return _VENDORED.sub(cut, data)


_COUNT = re.compile(r"(?<![A-Za-z0-9_.-])\d+(?![A-Za-z0-9_-])")


@dataclass
class AuditScope:
    """What one run of a registered source wrote, for its audit before publishing.

    ``changed``: table -> partition values (the stage2p files to scan). ``inputs``: the
    stage1np keys the run read (their identifiers are collected by the source);
    ``versions``: landed file versions (name, sha256) the source resolves to more. Scanned
    besides the stage2p files: ``system_keys`` (records in ``_system``), ``exports``
    (files in the exports zone), ``results`` (per-file messages that logs, artifacts and
    the state message will carry; numbers in them are counts and positions, masked) and
    ``texts``. The source's builder (``Source.scope``) fills it from the run's result.
    """

    source: str
    changed: dict[str, list[str]]
    inputs: list[str] = field(default_factory=list)
    versions: list[tuple[str, str]] = field(default_factory=list)
    results: list[tuple[str, str]] = field(default_factory=list)
    system_keys: list[str] = field(default_factory=list)
    exports: list[str] = field(default_factory=list)
    texts: list[tuple[str, str]] = field(default_factory=list)
    all_inputs: bool = False  # identifiers of every stage1np file of the source
    # table -> partition -> its stage2p keys, already listed (a full scope): scanned
    # without listing those partitions again
    listed: dict[str, dict[str, list[str]]] = field(default_factory=dict)


def full_scope(lake: Lake, name: str) -> AuditScope:
    """The scope of a run that rewrote a source's tables in full (forget, rotate-key):
    every partition of every table's current version, the identifiers of every stage1np
    file of the source, its exports and the query-result exports (which forget rewrites).

    It costs what the rewrite cost (both read the whole source), and it lets no
    maintenance run republish what an ordinary run's audit would have held back."""
    from edulake.core.versions import write_prefix
    from edulake.sources import registry

    source = registry.get(name)
    specs = {s.name: s for s in source.specs(lake)}
    changed: dict[str, list[str]] = {}
    listed: dict[str, dict[str, list[str]]] = {}
    for table in source.rotation.tables(lake):
        spec = specs.get(table)
        part = spec.partition_column if spec else None
        column = (part.name if part else "date") + "="
        prefix = write_prefix(lake, name, table) + "/"
        files: dict[str, list[str]] = {}
        for obj in lake.list(Zone.STAGE2P, prefix):
            segment = obj.key[len(prefix) :].split("/", 1)[0]
            if segment.startswith(column) and obj.key.endswith(".parquet"):
                files.setdefault(segment[len(column) :], []).append(obj.key)
        if files:
            changed[table] = sorted(files)
            listed[table] = files
    exports = [
        o.key
        for folder in (f"{name}/", "athena/")
        for o in lake.list(Zone.EXPORTS, folder)
        if o.key.endswith(".csv")
    ]
    return AuditScope(name, changed, exports=exports, all_inputs=True, listed=listed)


def audit_run(lake: Lake, scope: AuditScope) -> AuditReport:
    """The scoped audit of one run, before it publishes (cheap: its own files).

    The same for every registered source. Identifiers: those of the stage1np ``inputs``
    and of the stage1np files behind each stage2p file scanned (``Source.inputs_of``: a
    partition a failed run left unpublished), collected by the source
    (``Source.raw_ids``), plus every raw value of the source's stage2np lookups (every
    identity ever hashed, whatever a config says now). Scanned: the stage2p files of the
    ``changed`` partitions (values, metadata, footer) and the rest of the scope.
    """
    from edulake.core.versions import write_prefix
    from edulake.privacy.lookup import lookup_key, read_lookup
    from edulake.sources import registry

    source = registry.get(scope.source)
    specs = {s.name: s for s in source.specs(lake)}
    parquet: list[str] = []
    for table, parts in scope.changed.items():
        spec = specs.get(table)
        part_col = spec.partition_column if spec else None
        column = part_col.name if part_col else "date"
        known = scope.listed.get(table, {})
        for part in parts:
            if part in known:  # listed by the scope's builder: not listed twice
                parquet += known[part]
                continue
            prefix = f"{write_prefix(lake, source.name, table)}/{column}={part}"
            objs = lake.list(Zone.STAGE2P, prefix)
            parquet += [o.key for o in objs if o.key.endswith(".parquet")]
    if not (parquet or scope.results or scope.texts or scope.exports or scope.system_keys):
        return AuditReport()  # nothing new: nothing to read the identifiers for
    inputs = sorted(set(scope.inputs) | set(source.inputs_of(lake, parquet, scope.versions)))
    ids = source.raw_ids(lake, None if scope.all_inputs else inputs, [])
    for column in source.lookup_columns(lake):
        if lake.exists(Zone.STAGE2NP, lookup_key(source.name, column)):
            values = read_lookup(lake, source.name, column)["value"]
            ids.update(v for v in pc.unique(values).to_pylist() if v)
    auditor = Auditor(ids)
    for key in parquet:
        auditor.report.count("parquet files")
        # the footer, not every compressed page: the values are read decoded above
        auditor.scan_parquet(key, lake.read_bytes(Zone.STAGE2P, key), raw_bytes=False)
    for key in scope.system_keys:
        if lake.exists(Zone.SYSTEM, key):
            auditor.report.count("system records")
            auditor.scan_bytes(f"_system/{key}", lake.read_bytes(Zone.SYSTEM, key))
    for key in scope.exports:
        if lake.exists(Zone.EXPORTS, key):
            auditor.report.count("exports")
            auditor.scan_bytes(f"exports/{key}", lake.read_bytes(Zone.EXPORTS, key))
    for location, text in scope.results:
        auditor.report.count("file results")
        # Numbers in these messages are counts, positions and offsets (they are built by
        # edulake.privacy.scrub's rules, which never quote a cell that is a number): masked,
        # so "3 of 1001 rows" is not taken for the sis_id 1001 and cannot block a publish.
        auditor.scan_text(location, _COUNT.sub("#", text))
    for location, text in scope.texts:
        auditor.report.count("logs and artifacts")
        auditor.scan_text(location, text)
    return auditor.report
