"""The embedded default catalog: a DuckDB database file with materialized tables.

Tables are real tables, not views over folders (the reference implementation's views
broke whenever the folders changed and showed files mid-write). Publishing replaces only
the partitions that changed, in one transaction: a BI tool sees the old data or the new,
never a mix, and re-publishing the same data leaves the same table.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from importlib import resources
from typing import Any

import duckdb
import pyarrow as pa
import sqlglot

from edulake.catalog import Catalog, CatalogTable, PublishResult
from edulake.core.faults import crashpoint
from edulake.core.lake import Lake, Zone
from edulake.core.types import duckdb_type

log = logging.getLogger(__name__)


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def view_sql(source: str) -> dict[str, str]:
    """The source's analytics views: name -> Athena (Trino) SQL, from ``edulake/sql/views``."""
    folder = resources.files("edulake.sql").joinpath("views", source)
    if not folder.is_dir():
        return {}
    return {
        f.name[: -len(".sql")]: f.read_text("utf-8")
        for f in sorted(folder.iterdir(), key=lambda f: f.name)
        if f.name.endswith(".sql")
    }


def to_duckdb(athena_sql: str) -> str:
    """Athena/Trino SQL as DuckDB SQL (one query language in the repo, two engines)."""
    return str(sqlglot.transpile(athena_sql, read="athena", write="duckdb")[0])


def np_catalog_dir(path: str, lake: Lake) -> str:
    """Where the protected catalog files live: ``<np root>/catalog`` when it is local.

    Protected tables (raw identifiers) never go into the main file, so analysts can be
    given the main file alone; data stewards attach the ``<source>_np.duckdb`` files too.
    """
    if lake.protected.is_local:
        return os.path.join(lake.protected.base, "catalog")
    return os.path.dirname(os.path.abspath(path))


def connect(path: str, np_dir: str | None = None, read_only: bool = True) -> Any:
    """Open a catalog file; the protected ``<source>_np`` files are attached only from an
    explicit ``np_dir`` (a steward's choice), never found beside the analysts' file."""
    con = duckdb.connect(path, read_only=read_only)
    folder = np_dir
    if folder and os.path.isdir(folder):
        for name in sorted(os.listdir(folder)):
            if name.endswith("_np.duckdb"):
                alias = name[: -len(".duckdb")]
                ro = " (READ_ONLY)" if read_only else ""
                con.execute(f"ATTACH {_lit(os.path.join(folder, name))} AS {_q(alias)}{ro}")
    return con


MEMORY_LIMIT = "512MB"


class DuckDBCatalog(Catalog):
    """Tables and views in an embedded DuckDB database file.

    Pseudonymized tables and views go in the main file (schemas ``<source>``); protected
    tables go in ``<np dir>/<source>_np.duckdb``, attached as catalog ``<source>_np`` so
    ``clever_np.sis_id_lookup`` reads the same from this connection.
    """

    kind = "duckdb"

    def __init__(self, path: str, lake: Lake) -> None:
        self.path = path
        self.lake = lake
        if path != ":memory:":
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self.np_dir = np_catalog_dir(path, lake) if path != ":memory:" else None
        self._attached: set[str] = set()
        # Caps DuckDB's buffer manager so a very large backfill spills to disk instead of
        # growing with the data (it does not bound every allocation DuckDB makes).
        self.con = duckdb.connect(path, config={"memory_limit": MEMORY_LIMIT})
        # DuckDB takes one fsspec filesystem per protocol: register "s3" once, even when
        # the np root is another bucket (both roots share one set of S3 options).
        s3_store = next((s for s in (lake.main, lake.protected) if not s.is_local), None)
        if s3_store is not None and s3_store.s3 is not None:
            self.con.register_filesystem(s3_store.s3.fsspec())

    @classmethod
    def default_path(cls, lake: Lake) -> str:
        if not lake.main.is_local:
            raise ValueError(
                "the DuckDB catalog needs a local file: set EDULAKE_CATALOG__DUCKDB_PATH "
                "for an S3 lake, or use the glue catalog"
            )
        return os.path.join(lake.main.base, "catalog", "edulake.duckdb")

    def close(self) -> None:
        self.con.close()

    # -- tables ----------------------------------------------------------------------
    def _qualified(self, table: CatalogTable) -> tuple[str, str, str]:
        """(catalog, schema, fully qualified name) of a table; protected ones attached."""
        if table.zone is not Zone.STAGE2NP:
            return self._main_catalog(), table.database, f"{_q(table.database)}.{_q(table.name)}"
        db = table.database
        if db not in self._attached:
            if self.np_dir is None:
                self.con.execute(f"ATTACH ':memory:' AS {_q(db)}")
            else:
                os.makedirs(self.np_dir, exist_ok=True)
                path = os.path.join(self.np_dir, f"{db}.duckdb")
                self.con.execute(f"ATTACH {_lit(path)} AS {_q(db)}")
            self._attached.add(db)
        return db, "main", f"{_q(db)}.main.{_q(table.name)}"

    def _main_catalog(self) -> str:
        row = self.con.execute("SELECT current_database()").fetchone()
        return str(row[0]) if row else "memory"

    def _columns(self, table: CatalogTable) -> list[tuple[str, str]]:
        cols = [(c.name, duckdb_type(c.type)) for c in table.columns]
        if table.partition is not None:
            cols.append((table.partition.name, duckdb_type(table.partition.type)))
        return cols

    def _existing(self, table: CatalogTable) -> list[tuple[str, str]] | None:
        catalog, schema, _ = self._qualified(table)
        rows = self.con.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_catalog = ? AND table_schema = ? AND table_name = ? "
            "ORDER BY ordinal_position",
            [catalog, schema, table.name],
        ).fetchall()
        return [(r[0], r[1]) for r in rows] or None

    def _files(self, table: CatalogTable, partitions: list[str] | None) -> list[str]:
        """Parquet files of the table (of the given partitions only, if given)."""
        zone_uri = self.lake.uri(table.zone)
        prefix = table.location[len(zone_uri) :].strip("/")
        if partitions is None or table.partition is None:
            keys = [o.key for o in self.lake.list(table.zone, prefix)]
        else:
            keys = []
            for value in partitions:
                keys += [
                    o.key
                    for o in self.lake.list(table.zone, f"{prefix}/{table.partition.name}={value}")
                ]
        return [self.lake.uri(table.zone, k) for k in keys if k.endswith(".parquet")]

    def _select(self, table: CatalogTable, files: list[str]) -> str:
        casts = [f"CAST({_q(n)} AS {t}) AS {_q(n)}" for n, t in self._columns(table)]
        file_list = "[" + ", ".join(_lit(f) for f in files) + "]"
        hive = table.partition is not None
        return (
            f"SELECT {', '.join(casts)} FROM read_parquet({file_list}, "
            f"hive_partitioning = {str(hive).lower()}, union_by_name = true)"
        )

    def publish(self, table: CatalogTable, partitions: list[str] | None = None) -> PublishResult:
        """Create or update a table; replace only ``partitions`` when the schema is unchanged."""
        _, schema, fq = self._qualified(table)
        wanted = self._columns(table)
        existing = self._existing(table)
        schema_changes = _diff(existing, wanted) if existing else []
        full = existing is None or bool(schema_changes) or partitions is None
        if not full and not partitions:
            return PublishResult(table.database, table.name, "unchanged")
        files = self._files(table, None if full else partitions)
        self.con.execute("BEGIN TRANSACTION")
        try:
            if schema != "main":
                self.con.execute(f"CREATE SCHEMA IF NOT EXISTS {_q(schema)}")
            if full:
                if files:
                    self.con.execute(
                        f"CREATE OR REPLACE TABLE {fq} AS {self._select(table, files)}"
                    )
                else:
                    cols = ", ".join(f"{_q(n)} {t}" for n, t in wanted)
                    self.con.execute(f"CREATE OR REPLACE TABLE {fq} ({cols})")
                self._comment(table, fq)
            else:
                assert table.partition is not None
                assert partitions is not None
                col = _q(table.partition.name)
                ptype = duckdb_type(table.partition.type)
                values = ", ".join(f"CAST({_lit(v)} AS {ptype})" for v in partitions)
                self.con.execute(f"DELETE FROM {fq} WHERE {col} IN ({values})")
                if files:
                    self.con.execute(f"INSERT INTO {fq} {self._select(table, files)}")
            crashpoint("publish.transaction")
            self.con.execute("COMMIT")
        except BaseException:
            self.con.execute("ROLLBACK")
            raise
        crashpoint("publish.committed")
        rows = self.con.execute(f"SELECT COUNT(*) FROM {fq}").fetchone()
        action = (
            "created"
            if existing is None
            else "schema-changed"
            if schema_changes
            else "updated"
            if partitions is None or table.partition is None
            else "replaced-partitions"
        )
        return PublishResult(
            table.database,
            table.name,
            action,  # type: ignore[arg-type]
            rows=int(rows[0]) if rows else 0,
            partitions=len(partitions) if partitions is not None else None,
            schema_changes=schema_changes,
        )

    def _comment(self, table: CatalogTable, fq: str) -> None:
        props = "; ".join(f"{k}={v}" for k, v in sorted(table.properties.items()))
        desc = table.description + (f" [{props}]" if props else "")
        self.con.execute(f"COMMENT ON TABLE {fq} IS {_lit(desc)}")
        cols = list(table.columns) + ([table.partition] if table.partition else [])
        for c in cols:
            if c.comment:
                self.con.execute(f"COMMENT ON COLUMN {fq}.{_q(c.name)} IS {_lit(c.comment)}")

    # -- views and queries -------------------------------------------------------------
    def create_views(self, source: str) -> list[str]:
        created = []
        for name, sql in view_sql(source).items():
            fq = f"{_q(source)}.{_q(name)}"
            self.con.execute(f"CREATE SCHEMA IF NOT EXISTS {_q(source)}")
            self.con.execute(f"CREATE OR REPLACE VIEW {fq} AS {to_duckdb(sql)}")
            created.append(f"{source}.{name}")
        return created

    def query(self, sql: str) -> pa.Table:
        return self.con.sql(sql).to_arrow_table()

    def record_publish(self, source: str, info: dict[str, str]) -> None:
        """Keep when and what was published, for BI users checking freshness."""
        self.con.execute("CREATE SCHEMA IF NOT EXISTS edulake")
        self.con.execute(
            "CREATE TABLE IF NOT EXISTS edulake.publish_log "
            "(source VARCHAR, published_at TIMESTAMP, info VARCHAR)"
        )
        self.con.execute(
            "INSERT INTO edulake.publish_log VALUES (?, ?, ?)",
            [source, dt.datetime.now(dt.UTC).replace(tzinfo=None), str(info)],
        )


def _diff(existing: list[tuple[str, str]], wanted: list[tuple[str, str]]) -> list[str]:
    """Human-readable schema differences (column added, removed, retyped)."""
    old, new = dict(existing), dict(wanted)
    changes = [f"added {n} {t}" for n, t in wanted if n not in old]
    changes += [f"removed {n}" for n in old if n not in new]
    changes += [f"retyped {n}: {old[n]} -> {t}" for n, t in wanted if n in old and old[n] != t]
    return changes
