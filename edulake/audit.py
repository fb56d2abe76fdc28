"""PII audit: is any raw identifier readable outside the protected zone?

Collects every raw identifier present in stage1np (the columns each spec hashes:
``sis_id``/``staff_id``, ``clever_user_id``) and scans everything an analyst or a BI
tool can read:

* every file under the main lake root except ``stage1np`` (raw by design) and ``_tmp``:
  stage2p and exports Parquet (values of every column, footer metadata and statistics,
  and the raw bytes), ``_system`` records, any other text file; protected zones found on
  the main root while an np root is configured are strays and are scanned too;
* the DuckDB catalog: every table and view outside the ``*_np`` schemas (values of
  every text column, table and column comments, view SQL);
* log files and other texts given by the caller (e.g. Prefect logs and artifacts).

Matching is by whole token (an id inside a longer token - a hex pseudonym that happens
to contain the digits of a short id - is not a finding). Ids shorter than
:data:`MIN_ID_LEN` are too ambiguous to search for and are counted instead. Findings
name the location and a salted fingerprint of the id, never the id itself.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from edulake.lake import TMP_DIR, Lake, Zone
from edulake.specs import TableSpec, load_spec

MIN_ID_LEN = 4
_TOKEN = re.compile(rb"[^\s,;\"'|<>(){}\[\]=:\\/\x00-\x1f\x7f-\xff]+")
# Which bundled specs describe each source's stage1np files (folder -> table).
SOURCES: dict[str, dict[str, str]] = {
    "clever": {"daily-participation": "daily_participation", "resource-usage": "resource_usage"},
}


@dataclass(frozen=True)
class Finding:
    """A raw identifier found where it must not be: where, and a salted fingerprint."""

    location: str
    detail: str
    fingerprint: str


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

    def __init__(self, ids: set[str]) -> None:
        self.report = AuditReport()
        self.report.ids_too_short = sum(1 for i in ids if len(i) < MIN_ID_LEN)
        self.ids = {i for i in ids if len(i) >= MIN_ID_LEN}
        self.report.ids_checked = len(self.ids)
        self._bytes = {i.encode() for i in self.ids}
        self._array = pa.array(sorted(self.ids), pa.string())
        self._salt = secrets.token_bytes(16)  # fingerprints mean nothing outside this run
        self._seen: set[tuple[str, str]] = set()

    def _found(self, location: str, detail: str, value: str) -> None:
        fp = hashlib.sha256(self._salt + value.encode()).hexdigest()[:12]
        if (location, fp) not in self._seen:  # one finding per id and place
            self._seen.add((location, fp))
            self.report.findings.append(Finding(location, detail, fp))

    def scan_bytes(self, location: str, data: bytes, detail: str = "bytes") -> None:
        for token in set(_TOKEN.findall(data)) & self._bytes:
            self._found(location, detail, token.decode())

    def scan_text(self, location: str, text: str, detail: str = "text") -> None:
        self.scan_bytes(location, text.encode("utf-8", "replace"), detail)

    def scan_values(self, location: str, column: str, values: pa.Array | pa.ChunkedArray) -> None:
        """Text values: exact matches (vectorized), then tokens of the distinct values."""
        if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
            if pa.types.is_dictionary(values.type):
                values = values.cast(values.type.value_type)
            else:
                return
        distinct = pc.unique(
            values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
        )
        distinct = distinct.filter(pc.is_valid(distinct))
        hits = distinct.filter(pc.is_in(distinct, value_set=self._array))
        for v in hits.to_pylist():
            self._found(location, f"value in column {column}", v)
        text = "\n".join(distinct.to_pylist())
        for token in set(_TOKEN.findall(text.encode("utf-8", "replace"))) & self._bytes:
            if token.decode() not in hits.to_pylist():
                self._found(location, f"inside a value in column {column}", token.decode())

    def scan_parquet(self, location: str, data: bytes) -> None:
        pf = pq.ParquetFile(pa.BufferReader(data))
        meta = pf.metadata
        self.scan_text(location, str(pf.schema_arrow.metadata or {}), "file metadata")
        for rg in range(meta.num_row_groups):
            for ci in range(meta.num_columns):
                stats = meta.row_group(rg).column(ci).statistics
                if stats is not None and stats.has_min_max:
                    self.scan_text(location, f"{stats.min} {stats.max}", "column statistics")
        table = pf.read()
        for name in table.column_names:
            self.scan_values(location, name, table[name])
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
                    if dtype == "VARCHAR":
                        q = f'SELECT DISTINCT "{col}" FROM "{schema}"."{table}"'
                        self.scan_values(loc, col, con.sql(q).to_arrow_table()[col])
            views = con.execute(
                "SELECT schema_name, view_name, sql FROM duckdb_views() "
                "WHERE NOT internal AND schema_name NOT LIKE '%\\_np' ESCAPE '\\'"
            ).fetchall()
            for schema, view, sql in views:
                self.report.count("catalog views")
                self.scan_text(f"catalog {os.path.basename(path)}: view {schema}.{view}", sql or "")
        finally:
            con.close()


def raw_identifiers(lake: Lake) -> set[str]:
    """Every non-blank value of a hashed column in the stage1np files of known sources."""
    ids: set[str] = set()
    for source, folders in SOURCES.items():
        for obj in lake.list(Zone.STAGE1NP, source):
            parts = obj.key.split("/")
            table = folders.get(parts[1]) if len(parts) > 1 else None
            if table is None:
                continue
            spec = load_spec(source, table)
            ids |= _ids_in_csv(lake.read_bytes(Zone.STAGE1NP, obj.key), spec)
    return ids


def _ids_in_csv(data: bytes, spec: TableSpec) -> set[str]:
    names = {}
    for c in spec.columns:
        if c.is_hashed:
            for n in (c.name, *c.aliases):
                names[n.lower()] = c.name
    text = data.decode("utf-8", "replace").lstrip("\ufeff")
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, [])
    idx = [i for i, h in enumerate(header) if h.strip().lower() in names]
    out: set[str] = set()
    for row in reader:
        for i in idx:
            if i < len(row) and row[i].strip():
                out.add(row[i].strip())
    return out


def audit(
    lake: Lake,
    *,
    catalog_paths: Iterable[str] = (),
    texts: Iterable[tuple[str, str]] = (),
) -> AuditReport:
    """Scan everything readable outside the protected zones for stage1np identifiers."""
    auditor = Auditor(raw_identifiers(lake))
    separate_np = lake.protected is not lake.main
    skip = {Zone.STAGE1NP.value, TMP_DIR}
    if not separate_np:
        # One root: the protected zones and the protected catalog files (<source>_np.duckdb,
        # see catalog.duckdb.np_catalog_dir) sit beside the rest; readers are kept out of
        # them by prefix, so they are not the analysts' view.
        skip |= {Zone.STAGE2NP.value, Zone.QUARANTINE.value}
        auditor.report.warnings.append(
            "stage2np, quarantine and catalog/*_np.duckdb share the main root: they hold raw "
            "ids and were not scanned. Keep analysts out of them, or set an np root."
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
    return auditor.report
