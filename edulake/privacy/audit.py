"""PII audit: is any raw identifier readable outside the protected zone?

Collects every raw identifier present in stage1np and scans everything an analyst or a
BI tool can read. The identifiers are the values of the fields the configs pseudonymize
or mask: for Clever the CSV columns each spec hashes (``sis_id``/``staff_id``,
``clever_user_id``); for LibInsight the record fields each dataset config hashes (e.g.
``_entered_by``, a staff member's name) in the raw JSON pages. What is scanned:

* every file under the main lake root except ``stage1np`` (raw by design) and ``_tmp``:
  stage2p and exports Parquet (values of every column, footer metadata and statistics,
  and the raw bytes), ``_system`` records, any other text file; protected zones found on
  the main root while an np root is configured are strays and are scanned too;
* the DuckDB catalog: every table and view outside the ``*_np`` schemas (values of
  every text column, table and column comments, view SQL);
* log files and other texts given by the caller (e.g. Prefect logs and artifacts).

Matching is by whole token (an id inside a longer token - a hex pseudonym that happens
to contain the digits of a short id - is not a finding). An id made of several tokens
(a name such as ``Anne O'Neil``) is a phrase: it is found as a whole substring bounded
by non-word characters, checked only where all its tokens occur. Ids shorter than
:data:`MIN_ID_LEN` are too ambiguous to search for and are counted instead. Findings
name the location and a salted fingerprint of the id, never the id itself.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from edulake.core.lake import TMP_DIR, Lake, Zone
from edulake.privacy.identifiers import is_identifier
from edulake.sources.libinsight.config import DatasetConfig, load_dataset_config
from edulake.specs import PiiOp, TableSpec, load_spec

MIN_ID_LEN = 4
_TOKEN = re.compile(rb"[^\s,;\"'|<>(){}\[\]=:\\/\x00-\x1f\x7f-\xff]+")
# A phrase must not touch a word character (UTF-8 multi-byte letters included).
_WORD = rb"A-Za-z0-9_\x80-\xff"
# Ops whose values must never leave the protected zone (DROP is left out: see
# raw_identifiers; KEEP values are published on purpose).
PROTECTED_OPS = frozenset({PiiOp.HASH, PiiOp.HASH_NO_LOOKUP, PiiOp.MASK})
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
        self._array = pa.array(sorted(self.ids), pa.string())
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
        for value in self.matches(data):
            self._found(location, detail, value)

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
        hits = set(distinct.filter(pc.is_in(distinct, value_set=self._array)).to_pylist())
        for v in hits:
            self._found(location, f"value in column {column}", v)
        # One value a line: a phrase is never made of the end of one value and the next.
        text = "\n".join(distinct.to_pylist())
        for v in self.matches(text.encode("utf-8", "replace")) - hits:
            self._found(location, f"inside a value in column {column}", v)

    def scan_parquet(self, location: str, data: bytes) -> None:
        pf = pq.ParquetFile(pa.BufferReader(data))
        meta = pf.metadata
        self.scan_text(location, str(pf.schema_arrow.metadata or {}), "file metadata")
        for rg in range(meta.num_row_groups):
            for ci in range(meta.num_columns):
                stats = meta.row_group(rg).column(ci).statistics
                if stats is not None and stats.has_min_max:
                    self.scan_text(location, f"{stats.min}\n{stats.max}", "column statistics")
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
        finally:
            con.close()


def raw_identifiers(lake: Lake, dataset_configs: Iterable[DatasetConfig] = ()) -> set[str]:
    """Every non-blank raw value of a pseudonymized or masked field in stage1np.

    Clever: the hashed columns of the stage1np CSVs of known sources. LibInsight: the
    hashed or masked fields of the records of every landed page, read with the configs
    that apply to its dataset (see :func:`libinsight_configs`); ``dataset_configs`` adds
    configs that are not bundled (a YAML path given to the flow).

    Dropped fields are not collected: ``op: drop`` says a field is not needed, not that
    it is personal (the reference desk drops ``walkins`` and ``scans``, small counts that
    occur legitimately everywhere); a personal field is configured ``hash`` or ``mask``.
    """
    ids: set[str] = set()
    for source, folders in SOURCES.items():
        for obj in lake.list(Zone.STAGE1NP, source):
            parts = obj.key.split("/")
            table = folders.get(parts[1]) if len(parts) > 1 else None
            if table is None:
                continue
            spec = load_spec(source, table)
            ids |= _ids_in_csv(lake.read_bytes(Zone.STAGE1NP, obj.key), spec)
    ids |= _libinsight_ids(lake, libinsight_configs(lake, dataset_configs))
    return ids


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


def _libinsight_ids(lake: Lake, configs: dict[int | None, list[DatasetConfig]]) -> set[str]:
    out: set[str] = set()
    labels_of: dict[int, set[str]] = {}  # dataset id -> labels of its protected fields
    kept_labels: dict[int, set[str]] = {}  # dataset id -> other configured labels
    for obj in lake.list(Zone.STAGE1NP, LIBINSIGHT):
        # libinsight/dataset-<id>/landed=<day>/<from>_<to>/page-00001.json (see its store)
        m = _PAGE.match(obj.key)
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
        for rec in _page_records(lake.read_bytes(Zone.STAGE1NP, obj.key)):
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
    dataset_configs: Iterable[DatasetConfig] = (),
) -> AuditReport:
    """Scan everything readable outside the protected zones for stage1np identifiers."""
    auditor = Auditor(raw_identifiers(lake, dataset_configs))
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
