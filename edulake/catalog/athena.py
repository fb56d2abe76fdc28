"""Athena: named SQL files from the repo, run with pyathena into the results bucket.

- Queries live in ``edulake/sql/athena/<name>.sql`` and views in
  ``edulake/sql/views/<source>/<view>.sql``, written against the short database names the
  DuckDB catalog uses (``clever.daily_participation``); :func:`qualify` maps them to the
  Glue databases (``edulake_clever.daily_participation``), so one SQL file serves both.
- A query runs as a plain ``SELECT`` (Athena writes ``<query id>.csv`` with a header row
  under the output location: the file Tableau users open), as ``UNLOAD`` to Parquet or
  CSV, or as ``CREATE TABLE AS`` (a Parquet table BI tools query through Athena).
- Every start carries a ``ClientRequestToken`` derived from the query and a run key: a
  retried task that lost its connection while polling re-attaches to the same execution
  instead of paying for the query twice.
- Polling backs off exponentially (pyathena's fixed interval, replaced).
- On the embedded default catalog (``duckdb``) :class:`DuckDBQueryRunner` runs the same
  named SQL on the DuckDB catalog file (transpiled with sqlglot) and writes the result
  into the lake's exports zone (``exports/athena/<name>.csv``), so the local
  ``athena-query`` deployment produces the Tableau extract without AWS.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
import uuid
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import sqlglot
from pyathena.cursor import Cursor
from pyathena.error import OperationalError
from sqlglot import exp

from edulake.core.lake import Lake, S3Options, Zone, safe_key

Mode = Literal["select", "unload", "ctas"]
Format = Literal["parquet", "csv"]
TERMINAL_OK = "SUCCEEDED"


class AthenaQueryFailed(RuntimeError):
    """An Athena query ended FAILED or CANCELLED; ``record`` says which and why."""

    def __init__(self, record: QueryRecord) -> None:
        self.record = record
        super().__init__(
            f"Athena query {record.name} ({record.query_id}) {record.state}: {record.state_reason}"
        )


@dataclass(frozen=True)
class AthenaConfig:
    """Where and how queries run: workgroup, results bucket, Glue database prefix."""

    workgroup: str = "primary"
    output_location: str | None = None  # s3://results-bucket/prefix/
    database_prefix: str = "edulake"
    region: str | None = None
    endpoint_url: str | None = None  # Athena endpoint (tests: moto); S3 uses its own
    poll_initial_s: float = 0.5
    poll_max_s: float = 10.0

    @classmethod
    def from_settings(
        cls, catalog: Any, s3: S3Options | None = None, **overrides: Any
    ) -> AthenaConfig:
        """From ``edulake.core.settings.CatalogSettings`` (and the region of the S3 options)."""
        values: dict[str, Any] = {
            "workgroup": catalog.athena_workgroup,
            "output_location": catalog.athena_output_location,
            "database_prefix": catalog.glue_database_prefix,
            "region": s3.region if s3 else None,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


@dataclass(frozen=True)
class QueryRecord:
    """What one Athena execution did: for logs, artifacts and callers."""

    name: str
    query_id: str | None
    state: str | None
    state_reason: str | None
    data_scanned_bytes: int | None
    engine_ms: int | None
    output_location: str | None  # the result file (select) or folder (unload/ctas)
    workgroup: str
    token: str
    mode: str = "select"
    rows: int | None = None  # rows written (known for local DuckDB runs; Athena: not read)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- SQL files ---------------------------------------------------------------------------------
def _sql_root() -> Any:
    return resources.files("edulake").joinpath("sql")


def list_queries() -> list[str]:
    """Names of the bundled Athena queries (``edulake/sql/athena/*.sql``)."""
    folder = _sql_root().joinpath("athena")
    return sorted(p.name[:-4] for p in folder.iterdir() if p.name.endswith(".sql"))


TABLE_PLACEHOLDER = "${table}"
_DEFAULT_TABLE = re.compile(r"^--\s*default table:\s*([a-z][a-z0-9_]*)\s*$", re.M)
_TABLE = re.compile(r"^[a-z][a-z0-9_]{0,127}$")


def table_name(value: str) -> str:
    """A table name from a name or an event resource id (``edulake.table.<db>.<table>``)."""
    name = value.rsplit(".", 1)[-1].strip()
    if not _TABLE.match(name):
        raise ValueError(f"not a table name: {name[:40]!r} (lowercase letters, digits, _)")
    return name


def load_query(name: str, table: str | None = None) -> str:
    """The SQL of a bundled query; a per-table query (``${table}``) gets ``table``.

    Per-table queries (one LibInsight table per dataset) name a default table in a
    ``-- default table: <name>`` line, used when no table is given.
    """
    if name not in list_queries():
        raise KeyError(f"no Athena query {name!r}; known: {', '.join(list_queries())}")
    sql = str(_sql_root().joinpath("athena", f"{name}.sql").read_text("utf-8"))
    if TABLE_PLACEHOLDER not in sql:
        return sql
    if table is None:
        default = _DEFAULT_TABLE.search(sql)
        if default is None:
            raise ValueError(f"query {name} runs per table: pass table=<table name>")
        table = default.group(1)
    return sql.replace(TABLE_PLACEHOLDER, table_name(table))


def output_name(name: str, table: str | None) -> str:
    """The result's name: ``<query>`` or, for a per-table run, ``<query>-<table>``."""
    return f"{name}-{table_name(table)}" if table else name


def load_views(source: str, views_dir: str | None = None) -> dict[str, str]:
    """A source's view SQL files: ``{view name: SELECT ...}`` (empty when there are none)."""
    if views_dir is not None:
        folder: Any = Path(views_dir, source)
        if not folder.is_dir():
            return {}
    else:
        folder = _sql_root().joinpath("views", source)
        if not folder.is_dir():
            return {}
    return {
        p.name[:-4]: p.read_text("utf-8")
        for p in sorted(folder.iterdir(), key=lambda p: p.name)
        if p.name.endswith(".sql")
    }


def qualify(sql: str, prefix: str) -> str:
    """Map short database names (``clever.t``) to Glue databases (``<prefix>_clever.t``)."""
    tree = sqlglot.parse_one(sql, read="athena")

    def rename(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Table) and node.args.get("db") is not None and not node.catalog:
            node.set("db", exp.to_identifier(f"{prefix}_{node.db}" if prefix else node.db))
        return node

    return tree.transform(rename).sql(dialect="athena", comments=False)


def to_duckdb(sql: str) -> str:
    """The same query in DuckDB's dialect (to check Athena SQL's answers locally)."""
    return sqlglot.transpile(sql, read="athena", write="duckdb")[0]


def request_token(*parts: str) -> str:
    """An idempotency token (Athena wants 32-128 characters): a hash of the query and run."""
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


def extract_sql(
    select: str,
    mode: Mode,
    fmt: Format,
    location: str | None,
    table: str | None = None,
) -> str:
    """Wrap a qualified SELECT as an ``UNLOAD`` or a ``CREATE TABLE AS`` (``select``: as is)."""
    if mode == "select":
        return select
    if not location:
        raise ValueError(f"{mode} needs an output location (athena_output_location)")
    if mode == "unload":
        props = (
            "format = 'PARQUET', compression = 'SNAPPY'"
            if fmt == "parquet"
            else "format = 'TEXTFILE', field_delimiter = ','"
        )
        return f"UNLOAD ({select}) TO '{location}' WITH ({props})"
    if table is None:
        raise ValueError("ctas needs a table name")
    props = (
        "format = 'PARQUET', write_compression = 'SNAPPY'"
        if fmt == "parquet"
        else "format = 'TEXTFILE', field_delimiter = ','"
    )
    return f"CREATE TABLE {table} WITH ({props}, external_location = '{location}') AS {select}"


# -- running -----------------------------------------------------------------------------------
class _IdempotentCursor(Cursor):  # type: ignore[misc]
    """pyathena's cursor plus a ClientRequestToken, exponential backoff and the last status."""

    request_token: str | None = None
    poll_max_s: float = 10.0
    last_execution: Any = None  # AthenaQueryExecution of the last query
    _delay: float = 0.5

    def _build_start_query_execution_request(self, query: str, *args: Any, **kwargs: Any) -> Any:
        request = super()._build_start_query_execution_request(query, *args, **kwargs)
        if self.request_token:
            request["ClientRequestToken"] = self.request_token
        return request

    def _poll(self, query_id: str, options: Any = None) -> Any:
        self._delay = self._poll_interval
        execution = super()._poll(query_id, options)
        self.last_execution = execution
        return execution

    def _wait_poll_interval(self) -> None:
        time.sleep(self._delay)  # waiting on a remote query: backoff, not a race fix
        self._delay = min(self._delay * 2, self.poll_max_s)


class AthenaRunner:
    """Runs SQL in Athena with pyathena: workgroup, results bucket, tokens, backoff, records."""

    def __init__(self, config: AthenaConfig, s3: S3Options | None = None) -> None:
        self.config = config
        self.s3 = s3 or S3Options()
        self._conn: Any = None

    def connection(self) -> Any:
        """The pyathena connection (made on first use)."""
        if self._conn is None:
            import pyathena

            kwargs: dict[str, Any] = {
                "work_group": self.config.workgroup,
                "region_name": self.config.region or self.s3.region or "us-east-1",
                "poll_interval": self.config.poll_initial_s,
            }
            if self.config.output_location:
                kwargs["s3_staging_dir"] = self.config.output_location
            if self.config.endpoint_url:
                kwargs["endpoint_url"] = self.config.endpoint_url
            if self.s3.access_key_id:
                kwargs["aws_access_key_id"] = self.s3.access_key_id
                kwargs["aws_secret_access_key"] = self.s3.secret_access_key
                if self.s3.session_token:
                    kwargs["aws_session_token"] = self.s3.session_token
            self._conn = pyathena.connect(**kwargs)
        return self._conn

    def _cursor(self, token: str) -> _IdempotentCursor:
        cursor: _IdempotentCursor = self.connection().cursor(_IdempotentCursor)
        cursor.request_token = token
        cursor.poll_max_s = self.config.poll_max_s
        return cursor

    def execute(
        self, sql: str, name: str = "adhoc", run_key: str = "", mode: Mode = "select"
    ) -> tuple[QueryRecord, _IdempotentCursor]:
        """Start (or re-attach to) a query, wait for it, return its record and cursor.

        ``run_key`` identifies the run (a flow run id): the same query with the same key
        re-attaches to the earlier execution. Empty: a fresh key, so the query always runs.
        """
        token = request_token(name, sql, run_key or uuid.uuid4().hex)
        cursor = self._cursor(token)
        try:
            cursor.execute(sql)
        except OperationalError as exc:
            record = self._record(name, cursor, token, mode)
            if record.state is None:
                raise
            raise AthenaQueryFailed(record) from exc
        return self._record(name, cursor, token, mode), cursor

    def run(
        self, sql: str, name: str = "adhoc", run_key: str = "", mode: Mode = "select"
    ) -> QueryRecord:
        """Run a statement for its effect; the record says where its results are."""
        record, cursor = self.execute(sql, name, run_key, mode)
        cursor.close()
        return record

    def fetch_table(self, sql: str, name: str = "adhoc", run_key: str = "") -> pa.Table:
        """Run a SELECT and return its rows as an Arrow table."""
        _, cursor = self.execute(sql, name, run_key)
        try:
            names = [d[0] for d in cursor.description or []]
            rows = cursor.fetchall()
        finally:
            cursor.close()
        return pa.table({n: [r[i] for r in rows] for i, n in enumerate(names)})

    def run_named(
        self,
        name: str,
        mode: Mode = "select",
        fmt: Format = "parquet",
        run_key: str = "",
        sql: str | None = None,
    ) -> QueryRecord:
        """Run a bundled query as a SELECT, an UNLOAD or a CTAS into the results bucket."""
        select = qualify(sql if sql is not None else load_query(name), self.config.database_prefix)
        run_key = run_key or uuid.uuid4().hex
        location = self._extract_location(mode, name, request_token(name, run_key))
        if mode == "ctas":
            database = f"{self.config.database_prefix}_exports"
            table = f"{database}.{name}"
            self.run(f"CREATE DATABASE IF NOT EXISTS {database}", f"{name}:db", run_key)
            self.run(f"DROP TABLE IF EXISTS {table}", f"{name}:drop", run_key)
            statement = extract_sql(select, mode, fmt, location, table)
        else:
            statement = extract_sql(select, mode, fmt, location)
        record = self.run(statement, name, run_key, mode)
        if mode != "select":
            record = QueryRecord(**{**record.to_dict(), "output_location": location})
        return record

    def _extract_location(self, mode: Mode, name: str, token: str) -> str | None:
        """A fresh folder per run (UNLOAD and CTAS refuse to write into a non-empty one)."""
        if mode == "select":
            return None
        if not self.config.output_location:
            raise ValueError(f"{mode} needs athena_output_location (the results bucket)")
        base = self.config.output_location.rstrip("/")
        return f"{base}/{mode}/{name}/{token[:16]}/"

    def _record(self, name: str, cursor: _IdempotentCursor, token: str, mode: str) -> QueryRecord:
        ex = cursor.last_execution
        return QueryRecord(
            name=name,
            query_id=ex.query_id if ex else cursor.query_id,
            state=ex.state if ex else None,
            state_reason=ex.state_change_reason if ex else None,
            data_scanned_bytes=ex.data_scanned_in_bytes if ex else None,
            engine_ms=ex.engine_execution_time_in_millis if ex else None,
            output_location=ex.output_location if ex else None,
            workgroup=self.config.workgroup,
            token=token,
            mode=mode,
        )

    def create_views(self, source: str) -> list[str]:
        """(Re)create a source's views in Athena."""
        return create_views(self, source, self.config.database_prefix)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _athena_text(value: Any) -> str | None:
    """A nested value as Athena writes it in a result CSV: ``[a, b]``, ``{k=v}``."""
    if value is None:
        return None
    if isinstance(value, list):
        return "[" + ", ".join("null" if v is None else str(_athena_text(v)) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}={_athena_text(v)}" for k, v in value.items()) + "}"
    return str(value)


def csv_ready(table: pa.Table) -> pa.Table:
    """Nested columns (lists, structs, maps) as text, as Athena's CSV shows them."""
    nested = (pa.types.is_list, pa.types.is_large_list, pa.types.is_struct, pa.types.is_map)
    for i, field in enumerate(table.schema):
        if any(is_type(field.type) for is_type in nested):
            texts = pa.array([_athena_text(v) for v in table.column(i).to_pylist()], pa.string())
            table = table.set_column(i, pa.field(field.name, pa.string()), texts)
    return table


class DuckDBQueryRunner:
    """The named Athena SQL on the embedded DuckDB catalog, results into the lake's exports.

    Same interface as :class:`AthenaRunner` (``run_named``, ``create_views``, ``close``).
    The query reads the analysts' catalog file (read-only, no protected ``_np`` file
    attached). ``select`` writes ``exports/athena/<name>.csv`` (header row, like Athena's
    result file), ``unload`` ``exports/athena/<name>.csv|.parquet``, ``ctas`` a table
    ``exports.<name>`` in the catalog. A file has a fixed name (a re-run replaces it, so a
    Tableau data source keeps its path) and is committed atomically. ``output_dir`` (a
    local folder) replaces the exports zone as the place for the files.
    """

    workgroup = "duckdb"

    def __init__(
        self, lake: Lake, catalog_path: str | None = None, output_dir: str | None = None
    ) -> None:
        from edulake.catalog.duckdb import DuckDBCatalog

        self.lake = lake
        self.catalog_path = catalog_path or DuckDBCatalog.default_path(lake)
        self.output_dir = output_dir
        self.config = AthenaConfig(workgroup=self.workgroup, database_prefix="")

    def _export_key(self, name: str, ext: str) -> str:
        return safe_key("athena", f"{name}.{ext}")

    def create_views(self, source: str) -> list[str]:
        """(Re)create a source's views in the DuckDB catalog (as publishing does)."""
        from edulake.catalog.duckdb import DuckDBCatalog

        catalog = DuckDBCatalog(self.catalog_path, self.lake)
        try:
            return catalog.create_views(source)
        finally:
            catalog.close()

    def run_named(
        self,
        name: str,
        mode: Mode = "select",
        fmt: Format = "csv",
        run_key: str = "",
        sql: str | None = None,
    ) -> QueryRecord:
        """Run a bundled query (Athena SQL, transpiled) on the catalog; where its result is."""
        import duckdb

        select = to_duckdb(sql if sql is not None else load_query(name))
        token = request_token(name, run_key or uuid.uuid4().hex)
        started = time.perf_counter()
        if mode == "ctas":
            con = duckdb.connect(self.catalog_path)
            try:
                con.execute("CREATE SCHEMA IF NOT EXISTS exports")
                con.execute(f'CREATE OR REPLACE TABLE exports."{name}" AS {select}')
                row = con.execute(f'SELECT count(*) FROM exports."{name}"').fetchone()
            finally:
                con.close()
            rows = int(row[0]) if row else 0
            location = f"{self.catalog_path}#exports.{name}"
        else:
            con = duckdb.connect(self.catalog_path, read_only=True)
            try:
                table = con.sql(select).to_arrow_table()
            finally:
                con.close()
            rows = table.num_rows
            ext = "parquet" if mode == "unload" and fmt == "parquet" else "csv"
            location = self._write(table, name, ext)
        return QueryRecord(
            name=name,
            query_id=f"duckdb-{token[:16]}",
            state=TERMINAL_OK,
            state_reason=None,
            data_scanned_bytes=None,
            engine_ms=int((time.perf_counter() - started) * 1000),
            output_location=location,
            workgroup=self.workgroup,
            token=token,
            mode=mode,
            rows=rows,
        )

    def _write(self, table: pa.Table, name: str, ext: str) -> str:
        """Commit the result file atomically; where it is."""

        def write(out: Any) -> None:
            if ext == "parquet":
                pq.write_table(table, out)
            else:
                pacsv.write_csv(csv_ready(table), out)

        if self.output_dir is None:
            key = self._export_key(name, ext)
            with self.lake.atomic_write(Zone.EXPORTS, key) as out:
                write(out)
            return self.lake.uri(Zone.EXPORTS, key)
        os.makedirs(self.output_dir, exist_ok=True)
        final = os.path.join(self.output_dir, safe_key(f"{name}.{ext}"))
        staged = os.path.join(self.output_dir, f".{name}.{uuid.uuid4().hex}.tmp")
        try:
            with open(staged, "wb") as out:
                write(out)
            os.replace(staged, final)  # readers see the old file or the new, never half
        finally:
            if os.path.exists(staged):
                os.remove(staged)
        return final

    def close(self) -> None:
        """Nothing held: each query opens and closes its own connection."""

    @staticmethod
    def catalog_exists(path: str) -> bool:
        return os.path.isfile(path)


def create_views(
    runner: AthenaRunner, source: str, prefix: str, views_dir: str | None = None, run_key: str = ""
) -> list[str]:
    """``CREATE OR REPLACE VIEW <prefix>_<source>.<view> AS <select>`` for each view file."""
    from edulake.privacy.suppression import published_views

    database = f"{prefix}_{source}" if prefix else source
    created = []
    for view, select in published_views(source, views_dir).items():
        ddl = f"CREATE OR REPLACE VIEW {database}.{view} AS {qualify(select, prefix)}"
        runner.run(ddl, f"view:{source}.{view}", run_key)
        created.append(f"{database}.{view}")
    return created
