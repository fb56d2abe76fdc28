"""LibInsight in the lake: raw pages in stage1np, state in _system, the table in stage2p.

Layout (``<t>`` = table name, ``<d>`` = dataset id):

- ``stage1np/libinsight/dataset-<d>/landed=<day>/<from>_<to>/page-00001.json``: raw pages
  as received, landed through the ledger (a page with the same content is not landed twice);
- ``stage2p/libinsight/<t>/month=YYYY-MM/part-0.parquet``: one file per month of
  ``start_date`` (Hive style, ``month`` in the path only);
- ``_system/libinsight/<t>/schema.json``: columns schema drift added;
- ``_system/libinsight/<t>/table.json``: the table's spec as last committed (its hashed
  columns: what erasure and republishing need without the dataset config);
- ``_system/libinsight/<t>/watermark-<d>.json``: the last day fetched and committed;
- ``_system/libinsight/<t>/month-ids.parquet``: the record ids of each month file, with
  the file's size and modification time (:func:`month_ids`);
- ``exports/libinsight/<t>.csv``: the whole table as one CSV for Tableau users, and
  ``_system/libinsight/<t>/export.json``: where each month's rows are in it.

A run rewrites only the months it touches. Within the fetched range the API is the
truth: rows of that range are replaced by what was fetched (late edits and deletions
arrive), and a record is kept once by ``id`` even if its date moved to another month.

What a run reads does not grow with the table's age: which month holds an id comes from
the month-ids cache, and the export is rebuilt from the previous one plus the months
rewritten (:func:`export_csv`). Both caches name each month file by key, size and
modification time and are only trusted for a file that still matches: a run killed
between committing months and rewriting a cache reads those months again. (A month file
rewritten to exactly the same size within the same second would not be noticed.)
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from edulake.connectors.http.paging import Page
from edulake.core.faults import crashpoint
from edulake.core.lake import Lake, ObjectInfo, Zone, safe_key
from edulake.core.landing import LandingResult, Ledger, SourceFile, land_file
from edulake.core.versions import in_version, is_version_segment, write_prefix
from edulake.sources.libinsight.transform import SchemaState
from edulake.sources.libinsight.windows import Window
from edulake.specs import TableSpec

SOURCE = "libinsight"


# -- raw pages ---------------------------------------------------------------------------


@dataclass(frozen=True)
class LandedPage:
    """Where a fetched page's raw bytes are in stage1np."""

    window: str
    page: int
    key: str
    records: int
    outcome: str


def land_page(
    lake: Lake,
    ledger: Ledger,
    dataset_id: int,
    window: Window,
    page: Page,
    flow_run_id: str | None = None,
) -> LandedPage:
    """Land one raw page unchanged (immutable; an identical page is not landed again)."""
    span = f"{window.start.isoformat()}_{window.end.isoformat()}"
    name = f"dataset-{dataset_id}/{span}/page-{page.number:05d}.json"
    raw = page.raw

    @contextmanager
    def opener(_f: SourceFile) -> Iterator[IO[bytes]]:
        yield io.BytesIO(raw)

    def landing_key(_f: SourceFile, day: dt.date) -> str:
        return safe_key(
            SOURCE,
            f"dataset-{dataset_id}",
            f"landed={day.isoformat()}",
            span,
            name.rsplit("/", 1)[1],
        )

    result: LandingResult = land_file(
        lake,
        ledger,
        SourceFile(name=name, size=len(raw)),
        opener,
        landing_key,
        attrs={
            "dataset_id": dataset_id,
            "from": window.start.isoformat(),
            "to": window.end.isoformat(),
            "page": page.number,
            "records": len(page.records),
        },
        flow_run_id=flow_run_id,
    )
    assert result.entry is not None
    return LandedPage(
        str(window), page.number, result.entry.path, len(page.records), result.outcome
    )


class PageLander:
    """An ``on_page`` callback: lands each raw page of one window as it arrives.

    Keeps the newest landing per page number. :meth:`reset` (the ``on_restart`` of a
    fetch that starts over, or a retried task) forgets the pages of the abandoned fetch,
    so only pages of one consistent fetch are processed; their bytes stay in stage1np.
    """

    def __init__(
        self, lake: Lake, dataset_id: int, window: Window, flow_run_id: str | None = None
    ) -> None:
        self.lake = lake
        self.ledger = Ledger(lake, SOURCE, indexed=False)  # landed outside the lease
        self.dataset_id = dataset_id
        self.window = window
        self.run_id = flow_run_id
        self._pages: dict[int, LandedPage] = {}

    def __call__(self, page: Page) -> None:
        landed = land_page(self.lake, self.ledger, self.dataset_id, self.window, page, self.run_id)
        self._pages[page.number] = landed  # a dict item assignment is atomic across threads

    def reset(self, _reason: str = "") -> None:
        self._pages.clear()

    @property
    def pages(self) -> list[LandedPage]:
        """The landed pages, by page number."""
        return [self._pages[n] for n in sorted(self._pages)]


def read_page_records(lake: Lake, keys: list[str]) -> list[Any]:
    """The records of landed raw pages, in the order given, whatever their shape.

    Entries that are not JSON objects are returned too: the transform quarantines them
    with a reason instead of dropping them here unseen.
    """

    def one(key: str) -> list[Any]:
        body = json.loads(lake.read_bytes(Zone.STAGE1NP, key))
        recs = body.get("payload", {}).get("records", []) if isinstance(body, dict) else []
        return list(recs) if isinstance(recs, list) else []

    with ThreadPoolExecutor(max_workers=8) as pool:
        return [r for recs in pool.map(one, keys) for r in recs]


# -- state -------------------------------------------------------------------------------


def _state_key(table: str, name: str) -> str:
    return safe_key(SOURCE, table, name)


def watermark_key(table: str, dataset_id: int) -> str:
    """``libinsight/<table>/watermark-<dataset id>.json`` in the _system zone."""
    return _state_key(table, f"watermark-{dataset_id}.json")


def read_watermark(lake: Lake, table: str, dataset_id: int) -> dt.date | None:
    key = watermark_key(table, dataset_id)
    if not lake.exists(Zone.SYSTEM, key):
        return None
    return dt.date.fromisoformat(lake.read_json(Zone.SYSTEM, key)["through"])


def write_watermark(
    lake: Lake, table: str, dataset_id: int, through: dt.date, run: str | None
) -> None:
    """Record that every day up to ``through`` is committed (call only after the data)."""
    lake.write_json(
        Zone.SYSTEM,
        watermark_key(table, dataset_id),
        {
            "dataset_id": dataset_id,
            "table": table,
            "through": through.isoformat(),
            "flow_run_id": run,
            "updated_at": dt.datetime.now(dt.UTC).isoformat(),
        },
    )


def clear_watermark(lake: Lake, table: str, dataset_id: int) -> bool:
    """Forget a dataset's watermark (the next run starts at ``backfill_from``)."""
    key = watermark_key(table, dataset_id)
    if not lake.exists(Zone.SYSTEM, key):
        return False
    lake.delete(Zone.SYSTEM, key)
    return True


def table_datasets(lake: Lake, table: str) -> list[int]:
    """The dataset ids with a watermark in a table's state (the datasets it holds)."""
    out = []
    for obj in lake.list(Zone.SYSTEM, _state_key(table, "")):
        name = obj.key.rsplit("/", 1)[-1]
        if name.startswith("watermark-") and name.endswith(".json"):
            number = name[len("watermark-") : -len(".json")]
            if number.isdigit():
                out.append(int(number))
    return sorted(out)


def read_schema_state(lake: Lake, table: str) -> SchemaState:
    key = _state_key(table, "schema.json")
    return SchemaState.from_json(
        lake.read_json(Zone.SYSTEM, key) if lake.exists(Zone.SYSTEM, key) else None
    )


def write_schema_state(lake: Lake, table: str, state: SchemaState) -> None:
    lake.write_json(Zone.SYSTEM, _state_key(table, "schema.json"), state.to_json())


def table_record_key(table: str) -> str:
    return _state_key(table, "table.json")


def write_table_record(lake: Lake, spec: TableSpec, config: str) -> None:
    """Remember the table's spec (written before its month files: it names no data)."""
    lake.write_json(
        Zone.SYSTEM,
        table_record_key(spec.name),
        {"config": config, "spec": spec.model_dump(mode="json")},
    )


def read_table_record(lake: Lake, table: str) -> TableSpec | None:
    key = table_record_key(table)
    if not lake.exists(Zone.SYSTEM, key):
        return None
    return TableSpec.model_validate(lake.read_json(Zone.SYSTEM, key)["spec"])


def lake_tables(lake: Lake) -> list[str]:
    """The tables with month files in stage2p (``stage2p/libinsight/<t>/month=.../``)."""
    names = set()
    for obj in lake.list(Zone.STAGE2P, SOURCE):
        parts = obj.key.split("/")
        if is_version_segment(parts[2] if len(parts) > 2 else ""):
            parts = parts[:2] + parts[3:]  # stage2p/libinsight/<t>/_v=<n>/month=...
        if len(parts) >= 4 and parts[2].startswith("month=") and obj.key.endswith(".parquet"):
            names.add(parts[1])
    return sorted(names)


# -- the table ---------------------------------------------------------------------------


def table_prefix(lake: Lake, spec: TableSpec) -> str:
    """The table's folder writers use: its live version, or a full rewrite's."""
    return write_prefix(lake, spec.source, spec.name)


def month_key(lake: Lake, spec: TableSpec, month: str) -> str:
    return f"{table_prefix(lake, spec)}/month={month}/part-0.parquet"


def month_files(lake: Lake, spec: TableSpec) -> dict[str, ObjectInfo]:
    """month -> every month file of the table (in the version writers use), one LIST."""
    out = {}
    prefix = table_prefix(lake, spec)
    for obj in lake.list(Zone.STAGE2P, prefix):
        if not in_version(obj.key, prefix):
            continue
        part = obj.key.split("/")[-2]
        if part.startswith("month=") and obj.key.endswith(".parquet"):
            out[part[len("month=") :]] = obj
    return out


def existing_months(lake: Lake, spec: TableSpec) -> dict[str, str]:
    """month -> key of every month file of the table (in the version writers use)."""
    return {m: o.key for m, o in month_files(lake, spec).items()}


def _stamp(obj: ObjectInfo) -> list[Any]:
    """What names one state of a month file: key, size, modification time."""
    return [obj.key, obj.size, obj.mtime]


MONTH_IDS = "month-ids.parquet"
_MONTH_IDS_SCHEMA = pa.schema(
    [
        pa.field("key", pa.string()),
        pa.field("size", pa.int64()),
        pa.field("mtime", pa.float64()),
        pa.field("ids", pa.list_(pa.int64())),
    ]
)


def month_ids(
    lake: Lake, spec: TableSpec, files: dict[str, ObjectInfo], id_col: str, months: list[str]
) -> dict[str, pa.Array]:
    """The record ids of each of ``months``: from the month-ids cache where it still
    describes the file, else read from the file (the id column only)."""
    cached: dict[tuple[Any, ...], pa.Array] = {}
    key = _state_key(spec.name, MONTH_IDS)
    if months and lake.exists(Zone.SYSTEM, key):
        with lake.open_input_file(Zone.SYSTEM, key) as f:
            t = pq.read_table(f)
        for stamp, ids in zip(
            zip(*(t[c].to_pylist() for c in ("key", "size", "mtime")), strict=True),
            t["ids"],
            strict=True,
        ):
            cached[tuple(stamp)] = ids.values
    out: dict[str, pa.Array] = {}
    missing = []
    for month in months:
        hit = cached.get(tuple(_stamp(files[month])))
        if hit is None:
            missing.append(month)
        else:
            out[month] = hit

    def read(month: str) -> tuple[str, pa.Array]:
        col = read_month(lake, files[month].key, [id_col])[id_col]
        return month, col.combine_chunks().cast(pa.int64())

    with ThreadPoolExecutor(max_workers=8) as pool:
        out.update(pool.map(read, missing))
    return out


def write_month_ids(lake: Lake, spec: TableSpec, ids: dict[str, pa.Array]) -> None:
    """Cache the ids of the month files as they are now (one LIST for their stamps)."""
    files = month_files(lake, spec)
    months = [m for m in sorted(files) if m in ids]
    stamps = [_stamp(files[m]) for m in months]
    table = pa.table(
        {
            "key": [s[0] for s in stamps],
            "size": [s[1] for s in stamps],
            "mtime": [s[2] for s in stamps],
            "ids": [ids[m] for m in months],
        },
        schema=_MONTH_IDS_SCHEMA,
    )
    with lake.atomic_write(Zone.SYSTEM, _state_key(spec.name, MONTH_IDS)) as out:
        pq.write_table(table, out, compression="zstd")


def read_month(lake: Lake, key: str, columns: list[str] | None = None) -> pa.Table:
    with lake.open_input_file(Zone.STAGE2P, key) as f:
        return pq.read_table(f, columns=columns)


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """A table in the target schema: missing columns (older files, before drift) as nulls."""
    cols = []
    for f in schema:
        if f.name in table.column_names:
            cols.append(table[f.name].cast(f.type))
        else:
            cols.append(pa.nulls(table.num_rows, f.type))
    return pa.table(cols, schema=schema)


def months_of(ts: pa.ChunkedArray | pa.Array) -> pa.Array:
    return pc.strftime(ts, format="%Y-%m")


def write_months(
    lake: Lake,
    spec: TableSpec,
    new: pa.Table,
    window: Window,
    id_col: str,
    date_col: str,
    *,
    key_id: str | None = None,
) -> dict[str, int]:
    """Merge new rows into the month files they touch; returns rows per rewritten month.

    Every file written carries ``edulake.key_id`` (the pseudonymization key's public id)
    in its schema metadata, as Clever's files do. Old rows are dropped when their id is in ``new`` (edited, maybe moved month) or their
    date lies inside ``window`` (the fetched range is the truth: deleted records go).
    Everything is staged, then committed together; emptied months are deleted last.
    """
    schema = spec.arrow_schema()
    new = conform(new, schema)
    files = month_files(lake, spec)
    existing = {m: o.key for m, o in files.items()}
    new_ids = pa.array(set(new[id_col].to_pylist()), pa.int64())
    new_months = months_of(new[date_col])
    affected = set(pc.unique(new_months).to_pylist()) if new.num_rows else set()

    # Months overlapping the window, and months holding an id that now lives elsewhere.
    first, last = window.start.strftime("%Y-%m"), window.end.strftime("%Y-%m")
    affected |= {m for m in existing if first <= m <= last}

    # the ids of the months not rewritten: cached (read once per month file state)
    others = [m for m in existing if m not in affected]
    kept = month_ids(lake, spec, files, id_col, others)
    if len(new_ids):
        affected |= {m for m, ids in kept.items() if pc.any(pc.is_in(ids, new_ids)).as_py()}

    lo = pa.scalar(dt.datetime.combine(window.start, dt.time()), pa.timestamp("ms"))
    hi = pa.scalar(
        dt.datetime.combine(window.end + dt.timedelta(days=1), dt.time()), pa.timestamp("ms")
    )
    written: dict[str, int] = {}
    staged = lake.staged()
    emptied = []
    try:
        for month in sorted(affected):
            parts = [new.filter(pc.equal(new_months, month))]
            if month in existing:
                old = conform(read_month(lake, existing[month]), schema)
                in_window = pc.and_(pc.greater_equal(old[date_col], lo), pc.less(old[date_col], hi))
                drop = pc.or_(pc.is_in(old[id_col], value_set=new_ids), in_window)
                parts.append(old.filter(pc.invert(pc.fill_null(drop, False))))
            merged = pa.concat_tables(parts).sort_by(
                [(date_col, "ascending"), (id_col, "ascending")]
            )
            if merged.num_rows == 0:
                emptied.append(month)
                continue
            if key_id is not None:
                merged = merged.replace_schema_metadata({"edulake.key_id": key_id})
            with staged.open(Zone.STAGE2P, month_key(lake, spec, month)) as out:
                pq.write_table(merged, out, compression="zstd", coerce_timestamps="ms")
            written[month] = merged.num_rows
            kept[month] = merged[id_col].combine_chunks().cast(pa.int64())
            crashpoint("libinsight.writing")
        staged.commit()
    except BaseException:
        staged.discard()
        raise
    crashpoint("libinsight.months_committed")
    for month in emptied:
        lake.delete(Zone.STAGE2P, existing[month])
        written[month] = 0
        kept.pop(month, None)
    write_month_ids(lake, spec, kept)
    return written


def last_record_day(lake: Lake, spec: TableSpec) -> dt.date | None:
    """The day of the newest record in the table (its newest month file), None if empty."""
    months = existing_months(lake, spec)
    if not months or spec.partition_by is None:
        return None
    newest = read_month(lake, months[max(months)], [spec.partition_by])[spec.partition_by]
    last = pc.max(newest).as_py()
    return last.date() if isinstance(last, dt.datetime) else last


def read_table(lake: Lake, spec: TableSpec) -> pa.Table:
    """The whole table (every month, in the current schema), ordered by date and id."""
    schema = spec.arrow_schema()
    keys = sorted(existing_months(lake, spec).values())
    if not keys:
        return schema.empty_table()
    with ThreadPoolExecutor(max_workers=8) as pool:
        parts = list(pool.map(lambda k: conform(read_month(lake, k), schema), keys))
    return pa.concat_tables(parts)


def _flat(table: pa.Table) -> pa.Table:
    """Lists joined with '; ' (a CSV cell holds text)."""
    cols = []
    for f in table.schema:
        col = table[f.name]
        if pa.types.is_list(f.type):
            col = pa.array(
                ["; ".join(v) if v is not None else None for v in col.to_pylist()], pa.string()
            )
        cols.append(col)
    return pa.table(cols, names=table.column_names)


def _csv(table: pa.Table, header: bool) -> bytes:
    buf = io.BytesIO()
    pacsv.write_csv(_flat(table), buf, pacsv.WriteOptions(include_header=header))
    return buf.getvalue()


EXPORT_STATE = "export.json"


def export_csv(lake: Lake, spec: TableSpec) -> tuple[str, int]:
    """The cleaned table as one CSV in ``exports`` (lists joined with '; ').

    Byte for byte what writing the whole table at once gives, built from the previous
    export and only the months rewritten since: ``export.json`` records where each month's
    rows are in it and which state of the month file they came from. The previous export
    is used only if its SHA-256 is the one recorded (a run killed after writing the
    export but before the record, or an export withdrawn or edited, rebuilds it all) and
    only if the columns are the same (drift rebuilds it all).
    """
    schema = spec.arrow_schema()
    files = month_files(lake, spec)
    key = f"{spec.source}/{spec.name}.csv"
    state_key = _state_key(spec.name, EXPORT_STATE)
    columns = [f"{f.name}:{f.type}" for f in schema]
    previous: bytes | None = None
    recorded: dict[str, Any] = {}
    if lake.exists(Zone.SYSTEM, state_key) and lake.exists(Zone.EXPORTS, key):
        state = lake.read_json(Zone.SYSTEM, state_key)
        if state.get("columns") == columns:
            data = lake.read_bytes(Zone.EXPORTS, key)
            if hashlib.sha256(data).hexdigest() == state.get("sha256"):
                previous, recorded = data, state.get("months", {})
    parts = [_csv(schema.empty_table(), header=True)]
    offset, rows = len(parts[0]), 0
    months: dict[str, Any] = {}
    for month in sorted(files):
        was = recorded.get(month)
        if previous is not None and was and was["file"] == _stamp(files[month]):
            part, n = previous[was["offset"] : was["offset"] + was["length"]], was["rows"]
        else:
            table = conform(read_month(lake, files[month].key), schema)
            part, n = _csv(table, header=False), table.num_rows
        months[month] = {
            "file": _stamp(files[month]),
            "offset": offset,
            "length": len(part),
            "rows": n,
        }
        parts.append(part)
        offset, rows = offset + len(part), rows + n
    body = b"".join(parts)
    with lake.atomic_write(Zone.EXPORTS, key) as out:
        out.write(body)
    crashpoint("libinsight.exported")
    lake.write_json(
        Zone.SYSTEM,
        state_key,
        {"columns": columns, "sha256": hashlib.sha256(body).hexdigest(), "months": months},
    )
    return key, rows
