"""The embedded default catalog: a DuckDB database file with materialized tables.

Tables are real tables, not views over folders (the reference implementation's views
broke whenever the folders changed and showed files mid-write).

**Readers never block the writer, the writer never blocks readers.** A DuckDB file open
for writing is locked against every other process, and a file open read-only (an
analyst's BI tool) cannot be opened for writing. So the live file is never written:
a publish copies it to a temp file beside it (``.<name>.<pid>.<random>.swap``), applies
every change there, checkpoints, closes, and moves it over the live file with
``os.replace``. A reader connected before the swap keeps the old file (POSIX: its open
inode) and sees the old state, whole; new connections see the new state, whole. The
protected ``<source>_np.duckdb`` files are swapped the same way (each file on its own: a
reader that attaches both at the very moment of a swap may see a new lookup beside the
old tables, never half a table). A publish killed anywhere leaves the live files
untouched and a temp file, which the next publish removes.

**Self-healing.** Each file records what it holds: per table, the Parquet files (key,
size, mtime) it loaded for each partition and each partition's row count and content
hash (``edulake_meta.manifest``, ``manifest_partitions``, ``manifest_tables``
in the same file as the table). Publishing lists the table's files in the lake (a
listing, no data scan), counts and hashes the catalog's partitions, and replaces exactly
the partitions that differ; a table whose definition changed, or that has no manifest,
is rebuilt. Nothing else is remembered between runs, so any run after any failure,
crash or overlap leaves the catalog equal to a clean build, and when nothing differs
nothing is written (no copy, no swap).
"""

from __future__ import annotations

import datetime as dt
import errno
import hashlib
import json
import logging
import os
import secrets
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

import duckdb
import pyarrow as pa
import sqlglot

from edulake.catalog import Catalog, CatalogTable, PublishResult
from edulake.core.faults import crashpoint, pausepoint
from edulake.core.lake import Lake, Zone
from edulake.core.types import duckdb_type
from edulake.core.versions import in_version

log = logging.getLogger(__name__)


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def view_sql(source: str) -> dict[str, str]:
    """The source's published views: name -> Athena (Trino) SQL, from ``edulake/sql/views``.

    Rendered with small-cell suppression (the minimum n substituted), the same step the
    Athena views go through: :func:`edulake.privacy.suppression.published_views`.
    """
    from edulake.privacy.suppression import published_views

    return published_views(source)


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


MEMORY_LIMIT = "512MB"
SWAP_SUFFIX = ".swap"
META = "edulake_meta"  # the schema of the manifest tables, in every catalog file
_NONE = (0, "0")  # (rows, content hash) of a partition that holds nothing


# -- the swap: copy, change the copy, move it over the live file --------------------------
@dataclass
class SwapStats:
    """What the swaps of one publish cost (copies made, bytes copied, seconds spent)."""

    files: int = 0
    bytes_copied: int = 0
    copy_seconds: float = 0.0
    swap_seconds: float = 0.0
    stale_removed: int = 0


def _swap_prefix(live: str) -> str:
    return f".{os.path.basename(live)}."


def temp_path(live: str) -> str:
    """A fresh temp file beside ``live`` (same directory: ``os.replace`` stays atomic)."""
    name = f"{_swap_prefix(live)}{os.getpid()}.{secrets.token_hex(4)}{SWAP_SUFFIX}"
    return os.path.join(os.path.dirname(os.path.abspath(live)), name)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_in_use: set[str] = set()  # temp files of this process's open publishes


def remove_stale_temps(folder: str) -> int:
    """Remove temp files (and their WALs) left by killed publishes; returns how many.

    A temp file of a live process other than this one is left alone (publishing holds the
    lake lease, so there should be none; a stray is removed once its process is gone).
    """
    if not os.path.isdir(folder):
        return 0
    removed = 0
    for name in sorted(os.listdir(folder)):
        base = name[: -len(".wal")] if name.endswith(".wal") else name
        if not (name.startswith(".") and base.endswith(SWAP_SUFFIX)):
            continue
        path = os.path.join(folder, name)
        if os.path.join(folder, base) in _in_use:
            continue
        try:
            pid = int(base[: -len(SWAP_SUFFIX)].rsplit(".", 2)[-2])
        except (ValueError, IndexError):
            pid = -1
        if pid > 0 and pid != os.getpid() and _pid_alive(pid):
            continue
        try:
            os.remove(path)
            removed += 1
        except FileNotFoundError:
            pass
    return removed


def copy_file(src: str, dst: str) -> int:
    """Copy ``src`` to a new file ``dst`` (``os.copy_file_range``: in the kernel, a reflink
    where the filesystem has them), fsynced; returns the bytes copied."""
    with open(src, "rb") as fi, open(dst, "xb") as fo:
        size = os.fstat(fi.fileno()).st_size
        done = 0
        try:
            while done < size:
                n = os.copy_file_range(fi.fileno(), fo.fileno(), size - done)
                if n == 0:
                    break
                done += n
        except OSError as e:
            if e.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
                raise
            fi.seek(0)
            fo.seek(0)
            fo.truncate()
            shutil.copyfileobj(fi, fo, 8 << 20)
            done = size
        fo.flush()
        os.fsync(fo.fileno())
    return done


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass
class _Db:
    """One catalog file of a session: its alias, live path, and temp copy once written."""

    alias: str
    live: str
    temp: str | None = None
    attached: bool = False


@dataclass
class _Recorded:
    """What a catalog file says it loaded for one table."""

    definition: str
    files: dict[str, dict[str, tuple[int, float | None]]] = field(default_factory=dict)
    parts: dict[str, tuple[int, str]] = field(default_factory=dict)


def connect(path: str, np_dir: str | None = None, read_only: bool = True) -> Any:
    """Open a catalog file; the protected ``<source>_np`` files are attached only from an
    explicit ``np_dir`` (a steward's choice), never found beside the analysts' file.

    Read-only connections (analysts, ``edulake query``) never conflict with a publish: it
    writes a copy and swaps it in. Reconnect to see a newer publish.
    """
    con = duckdb.connect(path, read_only=read_only)
    folder = np_dir
    if folder and os.path.isdir(folder):
        for name in sorted(os.listdir(folder)):
            if name.endswith("_np.duckdb"):
                alias = name[: -len(".duckdb")]
                ro = " (READ_ONLY)" if read_only else ""
                con.execute(f"ATTACH {_lit(os.path.join(folder, name))} AS {_q(alias)}{ro}")
    return con


class DuckDBCatalog(Catalog):
    """Tables and views in an embedded DuckDB database file, published by swap.

    Pseudonymized tables and views go in the main file (schemas ``<source>``); protected
    tables go in ``<np dir>/<source>_np.duckdb``, attached as catalog ``<source>_np`` so
    ``clever_np.sis_id_lookup`` reads the same from this connection.

    Changes are made inside a :meth:`session` (``publish`` and ``create_views`` open one
    of their own when called outside): the files it changes are copied at the first
    change and swapped in when it ends, all in one go. Outside a session no file is
    held open.
    """

    kind = "duckdb"

    def __init__(self, path: str, lake: Lake) -> None:
        self.path = path
        self.lake = lake
        self.memory = path == ":memory:"
        if not self.memory:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self.np_dir = np_catalog_dir(path, lake) if not self.memory else None
        self.main_alias = (
            "memory" if self.memory else os.path.basename(path).rsplit(".", 1)[0] or "edulake"
        )
        self.stats = SwapStats()
        self._con: Any = None
        self._dbs: dict[str, _Db] = {}
        self._depth = 0
        self._rebuild = False
        if self.memory:  # tests: one connection, nothing to swap
            self._con = self._new_connection(":memory:")

    @classmethod
    def default_path(cls, lake: Lake) -> str:
        if not lake.main.is_local:
            raise ValueError(
                "the DuckDB catalog needs a local file: set EDULAKE_CATALOG__DUCKDB_PATH "
                "for an S3 lake, or use the glue catalog"
            )
        return os.path.join(lake.main.base, "catalog", "edulake.duckdb")

    def close(self) -> None:
        if self._depth:
            raise RuntimeError("close() inside a publish session")
        if self._con is not None:
            self._con.close()
            self._con = None

    # -- connections and the swap ---------------------------------------------------------
    def _new_connection(self, database: str) -> Any:
        con = duckdb.connect(database, config={"memory_limit": MEMORY_LIMIT})
        # Caps DuckDB's buffer manager so a very large backfill spills to disk instead of
        # growing with the data (it does not bound every allocation DuckDB makes).
        # DuckDB takes one fsspec filesystem per protocol: register "s3" once, even when
        # the np root is another bucket (both roots share one set of S3 options).
        s3_store = next((s for s in (self.lake.main, self.lake.protected) if not s.is_local), None)
        if s3_store is not None and s3_store.s3 is not None:
            con.register_filesystem(s3_store.s3.fsspec())
        return con

    @contextmanager
    def session(self, rebuild: bool = False) -> Iterator[None]:
        """Publish in one go: every change inside goes to copies, swapped in at the end.

        ``rebuild``: ignore the manifests and rebuild every table published inside (key
        rotation). On an exception the copies are dropped and the live files stay as
        they were.
        """
        if self.memory:
            self._rebuild, old = rebuild or self._rebuild, self._rebuild
            try:
                yield
            finally:
                self._rebuild = old
            return
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        self._depth, self._rebuild = 1, rebuild
        self.stats = SwapStats()
        for folder in {os.path.dirname(os.path.abspath(self.path)), self.np_dir or ""} - {""}:
            self.stats.stale_removed += remove_stale_temps(folder)
        self._con = self._new_connection(":memory:")
        self._dbs = {}
        try:
            self._attach(self.main_alias)
            yield
            self._swap()
        except BaseException:
            self._abort()
            raise
        finally:
            self._depth, self._rebuild = 0, False
            self._dbs = {}

    def _live(self, alias: str) -> str:
        if alias == self.main_alias:
            return os.path.abspath(self.path)
        assert self.np_dir is not None
        return os.path.join(self.np_dir, f"{alias}.duckdb")

    def _attach(self, alias: str) -> _Db:
        """Attach a catalog file: the live one read-only, or a new temp when it is missing."""
        db = self._dbs.get(alias)
        if db is None:
            db = self._dbs[alias] = _Db(alias, self._live(alias))
        if not db.attached:
            if db.temp is None and not os.path.exists(db.live):
                self._writable(alias)  # a first publish: a new file
                return db
            path, ro = (db.temp, "") if db.temp else (db.live, " (READ_ONLY)")
            self._con.execute(f"ATTACH {_lit(path)} AS {_q(alias)}{ro}")
            if alias == self.main_alias:
                self._con.execute(f"USE {_q(alias)}")
            db.attached = True
        return db

    def _writable(self, alias: str) -> None:
        """From the first change on, ``alias`` is a temp copy of its live file."""
        if self.memory:
            return
        db = self._dbs.get(alias) or self._dbs.setdefault(alias, _Db(alias, self._live(alias)))
        if db.temp is not None:
            return
        if db.attached:
            if alias == self.main_alias:
                self._con.execute("USE memory")
            self._con.execute(f"DETACH {_q(alias)}")
            db.attached = False
        os.makedirs(os.path.dirname(db.live), exist_ok=True)
        db.temp = temp_path(db.live)
        _in_use.add(db.temp)
        if os.path.exists(db.live):
            started = time.perf_counter()
            self.stats.bytes_copied += copy_file(db.live, db.temp)
            self.stats.copy_seconds += time.perf_counter() - started
            self.stats.files += 1
        self._con.execute(f"ATTACH {_lit(db.temp)} AS {_q(alias)}")
        if alias == self.main_alias:
            self._con.execute(f"USE {_q(alias)}")
        db.attached = True

    def _swap(self) -> None:
        """Checkpoint and close the copies, then move each over its live file."""
        changed = [db for db in self._dbs.values() if db.temp is not None]
        for db in changed:
            self._con.execute(f"CHECKPOINT {_q(db.alias)}")
        self._con.close()
        self._con = None
        if not changed:
            return
        for db in changed:
            assert db.temp is not None
            if os.path.exists(db.temp + ".wal"):  # never swap in a file with pending changes
                raise RuntimeError(f"catalog copy {db.temp} was not checkpointed")
            _fsync(db.temp)
        pausepoint("publish.swapping")
        started = time.perf_counter()
        # protected files first: a reader of both may briefly see newer lookups beside the
        # old tables (lookups only grow), never newer tables without their lookups
        for db in sorted(changed, key=lambda d: d.alias == self.main_alias):
            assert db.temp is not None
            os.replace(db.temp, db.live)
            _in_use.discard(db.temp)
            _fsync(os.path.dirname(db.live))
            crashpoint("publish.swapped")
        self.stats.swap_seconds += time.perf_counter() - started
        log.info(
            "catalog swapped in: %d file(s), %d bytes copied in %.2f s",
            len(changed),
            self.stats.bytes_copied,
            self.stats.copy_seconds,
        )

    def _abort(self) -> None:
        if self._con is not None:
            try:
                self._con.close()
            finally:
                self._con = None
        for db in self._dbs.values():
            if db.temp is not None:
                for path in (db.temp, db.temp + ".wal"):
                    with suppress(FileNotFoundError):
                        os.remove(path)
                _in_use.discard(db.temp)

    # -- tables ----------------------------------------------------------------------
    def _alias(self, table: CatalogTable) -> str:
        if table.zone is not Zone.STAGE2NP:
            return self.main_alias
        db = table.database
        if self.memory and db not in self._dbs:
            self._con.execute(f"ATTACH ':memory:' AS {_q(db)}")
            self._dbs[db] = _Db(db, ":memory:", attached=True)
        return db

    def _qualified(self, table: CatalogTable) -> tuple[str, str, str]:
        """(catalog, schema, fully qualified name) of a table."""
        alias = self._alias(table)
        schema = "main" if table.zone is Zone.STAGE2NP else table.database
        return alias, schema, f"{_q(alias)}.{_q(schema)}.{_q(table.name)}"

    def _columns(self, table: CatalogTable) -> list[tuple[str, str]]:
        cols = [(c.name, duckdb_type(c.type)) for c in table.columns]
        if table.partition is not None:
            cols.append((table.partition.name, duckdb_type(table.partition.type)))
        return cols

    def _existing(self, alias: str, schema: str, name: str) -> list[tuple[str, str]] | None:
        rows = self._con.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_catalog = ? AND table_schema = ? AND table_name = ? "
            "ORDER BY ordinal_position",
            [alias, schema, name],
        ).fetchall()
        return [(r[0], r[1]) for r in rows] or None

    def _listing(self, table: CatalogTable) -> dict[str, dict[str, tuple[int, float | None]]]:
        """The table's Parquet files in the lake, by partition value (a listing, no reads)."""
        zone_uri = self.lake.uri(table.zone)
        prefix = table.location[len(zone_uri) :].strip("/")
        marker = f"{table.partition.name}=" if table.partition is not None else None
        out: dict[str, dict[str, tuple[int, float | None]]] = {}
        for o in self.lake.list(table.zone, prefix):
            if not o.key.endswith(".parquet") or not in_version(o.key, prefix):
                continue  # not Parquet, or another version's folder inside version 0
            part = ""
            if marker is not None:
                seg = next((s for s in o.key.split("/") if s.startswith(marker)), None)
                if seg is None:
                    continue  # not in a partition folder: not part of the table
                part = seg[len(marker) :]
            out.setdefault(part, {})[o.key] = (o.size, o.mtime)
        return out

    def _definition(self, table: CatalogTable) -> str:
        """A digest of everything the table's DDL and comments are made of."""
        desc = {
            "columns": self._columns(table),
            "partition": table.partition.name if table.partition else None,
            "description": table.description,
            "properties": sorted(table.properties.items()),
            "comments": [
                (c.name, c.comment)
                for c in list(table.columns) + ([table.partition] if table.partition else [])
            ],
            "select": 1,  # bump when _select changes what a table holds
        }
        return hashlib.sha256(json.dumps(desc, sort_keys=True).encode()).hexdigest()

    def _has_manifest(self, alias: str) -> bool:
        row = self._con.execute(
            "SELECT COUNT(*) FROM duckdb_tables() WHERE database_name = ? AND schema_name = ? "
            "AND table_name IN ('manifest', 'manifest_partitions', 'manifest_tables')",
            [alias, META],
        ).fetchone()
        return bool(row and row[0] == 3)

    def _recorded(self, alias: str, schema: str, name: str) -> _Recorded | None:
        if not self._has_manifest(alias):
            return None
        m = f"{_q(alias)}.{META}"
        row = self._con.execute(
            f"SELECT definition FROM {m}.manifest_tables WHERE schema_name = ? AND table_name = ?",
            [schema, name],
        ).fetchone()
        if row is None:
            return None
        rec = _Recorded(str(row[0]))
        for part, key, size, mtime in self._con.execute(
            f"SELECT part, key, size, mtime FROM {m}.manifest "
            "WHERE schema_name = ? AND table_name = ?",
            [schema, name],
        ).fetchall():
            rec.files.setdefault(part, {})[key] = (int(size), mtime)
        for part, rows, digest in self._con.execute(
            f"SELECT part, row_count, content_hash FROM {m}.manifest_partitions "
            "WHERE schema_name = ? AND table_name = ?",
            [schema, name],
        ).fetchall():
            rec.parts[part] = (int(rows), str(digest))
        return rec

    def _content(
        self, table: CatalogTable, fq: str, parts: list[str] | None = None
    ) -> dict[str | None, tuple[int, str]]:
        """Row count and content hash of each partition ("" when not partitioned).

        One columnar scan of the catalog's own table (the lake's data is not read).
        """
        cols = ", ".join(_q(n) for n, _ in self._columns(table))
        key = (
            f"CAST({_q(table.partition.name)} AS VARCHAR)" if table.partition is not None else "''"
        )
        where = ""
        if parts is not None and table.partition is not None:
            where = f" WHERE {key} IN ({', '.join(_lit(p) for p in parts) or 'NULL'})"
        rows = self._con.execute(
            f"SELECT {key} AS part, COUNT(*), "
            f"CAST(COALESCE(SUM(CAST(hash({cols}) AS HUGEINT)), 0) AS VARCHAR) "
            f"FROM {fq}{where} GROUP BY part"
        ).fetchall()
        return {r[0]: (int(r[1]), str(r[2])) for r in rows}

    def _select(self, table: CatalogTable, files: list[str]) -> str:
        casts = [f"CAST({_q(n)} AS {t}) AS {_q(n)}" for n, t in self._columns(table)]
        file_list = "[" + ", ".join(_lit(f) for f in files) + "]"
        hive = table.partition is not None
        return (
            f"SELECT {', '.join(casts)} FROM read_parquet({file_list}, "
            f"hive_partitioning = {str(hive).lower()}, union_by_name = true)"
        )

    def publish(self, table: CatalogTable, partitions: list[str] | None = None) -> PublishResult:
        """Make the table equal to the lake's files, replacing only the partitions that differ.

        ``partitions`` is ignored: the manifest, not the caller, knows what the catalog
        holds (so nothing a crashed or overlapping run left undone can be missed).
        """
        with self.session(rebuild=self._rebuild):
            return self._publish(table)

    def _publish(self, table: CatalogTable) -> PublishResult:
        alias, schema, fq = self._qualified(table)
        if not self.memory:
            self._attach(alias)
        wanted = self._columns(table)
        listing = self._listing(table)
        definition = self._definition(table)
        existing = self._existing(alias, schema, table.name)
        schema_changes = _diff(existing, wanted) if existing else []
        recorded = None if existing is None else self._recorded(alias, schema, table.name)
        full = (
            self._rebuild
            or existing is None
            or bool(schema_changes)
            or recorded is None
            or recorded.definition != definition
        )
        changed: list[str | None] = []
        if not full:
            assert recorded is not None
            actual = self._content(table, fq)
            every = set(listing) | set(recorded.files) | set(recorded.parts) | set(actual)
            for part in sorted(every, key=lambda p: (p is None, p or "")):
                same_files = listing.get(part or "", {}) == recorded.files.get(part or "", {})
                same_rows = actual.get(part, _NONE) == recorded.parts.get(part or "", _NONE)
                if part is None or not (same_files and same_rows):
                    changed.append(part)  # None: rows whose partition value is NULL
            if not changed:
                return PublishResult(table.database, table.name, "unchanged", partitions=0)
            full = table.partition is None  # an unpartitioned table (a lookup): rebuilt
        self._writable(alias)
        self._write(table, alias, schema, fq, listing, definition, full, changed)
        rows = self._con.execute(f"SELECT COUNT(*) FROM {fq}").fetchone()
        action = (
            "created"
            if existing is None
            else "schema-changed"
            if schema_changes
            else "updated"
            if full
            else "replaced-partitions"
        )
        return PublishResult(
            table.database,
            table.name,
            action,  # type: ignore[arg-type]
            rows=int(rows[0]) if rows else 0,
            partitions=len(listing) if full else len(changed),
            schema_changes=schema_changes,
        )

    def _write(
        self,
        table: CatalogTable,
        alias: str,
        schema: str,
        fq: str,
        listing: dict[str, dict[str, tuple[int, float | None]]],
        definition: str,
        full: bool,
        changed: list[str | None],
    ) -> None:
        """Apply one table's changes and its manifest rows in one transaction."""
        con = self._con
        m = f"{_q(alias)}.{META}"
        con.execute("BEGIN TRANSACTION")
        try:
            con.execute(f"CREATE SCHEMA IF NOT EXISTS {_q(alias)}.{_q(schema)}")
            self._ensure_manifest(alias)
            names = [schema, table.name]
            if full:
                files = [self.lake.uri(table.zone, k) for p in listing.values() for k in sorted(p)]
                if files:
                    con.execute(
                        f"CREATE OR REPLACE TABLE {fq} AS {self._select(table, sorted(files))}"
                    )
                else:
                    cols = ", ".join(f"{_q(n)} {t}" for n, t in self._columns(table))
                    con.execute(f"CREATE OR REPLACE TABLE {fq} ({cols})")
                self._comment(table, fq)
                for t in ("manifest", "manifest_partitions"):
                    con.execute(
                        f"DELETE FROM {m}.{t} WHERE schema_name = ? AND table_name = ?", names
                    )
                parts = sorted(listing)
            else:
                assert table.partition is not None
                col = _q(table.partition.name)
                values = [p for p in changed if p is not None]
                conds = (
                    [f"CAST({col} AS VARCHAR) IN ({', '.join(_lit(v) for v in values)})"]
                    if values
                    else []
                )
                if None in changed:
                    conds.append(f"{col} IS NULL")
                con.execute(f"DELETE FROM {fq} WHERE {' OR '.join(conds)}")
                files = [
                    self.lake.uri(table.zone, k) for v in values for k in sorted(listing.get(v, {}))
                ]
                if files:
                    con.execute(f"INSERT INTO {fq} {self._select(table, files)}")
                for t in ("manifest", "manifest_partitions"):
                    con.execute(
                        f"DELETE FROM {m}.{t} WHERE schema_name = ? AND table_name = ? "
                        f"AND part IN ({', '.join(_lit(v) for v in values) or 'NULL'})",
                        names,
                    )
                parts = values
            rows = [
                (schema, table.name, p, k, size, mtime)
                for p in parts
                for k, (size, mtime) in sorted(listing.get(p, {}).items())
            ]
            if rows:
                con.executemany(f"INSERT INTO {m}.manifest VALUES (?, ?, ?, ?, ?, ?)", rows)
            content = self._content(table, fq, None if full else parts)
            stats = [
                (schema, table.name, p, n, h) for p, (n, h) in content.items() if p is not None
            ]
            if stats:
                con.executemany(
                    f"INSERT INTO {m}.manifest_partitions VALUES (?, ?, ?, ?, ?)", stats
                )
            con.execute(
                f"DELETE FROM {m}.manifest_tables WHERE schema_name = ? AND table_name = ?", names
            )
            con.execute(
                f"INSERT INTO {m}.manifest_tables VALUES (?, ?, ?, ?)",
                [*names, definition, dt.datetime.now(dt.UTC).replace(tzinfo=None)],
            )
            crashpoint("publish.transaction")
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        crashpoint("publish.committed")

    def _ensure_manifest(self, alias: str) -> None:
        m = f"{_q(alias)}.{META}"
        self._con.execute(f"CREATE SCHEMA IF NOT EXISTS {m}")
        self._con.execute(
            f"CREATE TABLE IF NOT EXISTS {m}.manifest (schema_name VARCHAR, table_name VARCHAR, "
            "part VARCHAR, key VARCHAR, size BIGINT, mtime DOUBLE)"
        )
        self._con.execute(
            f"CREATE TABLE IF NOT EXISTS {m}.manifest_partitions (schema_name VARCHAR, "
            "table_name VARCHAR, part VARCHAR, row_count BIGINT, content_hash VARCHAR)"
        )
        self._con.execute(
            f"CREATE TABLE IF NOT EXISTS {m}.manifest_tables (schema_name VARCHAR, "
            "table_name VARCHAR, definition VARCHAR, published_at TIMESTAMP)"
        )

    def _comment(self, table: CatalogTable, fq: str) -> None:
        props = "; ".join(f"{k}={v}" for k, v in sorted(table.properties.items()))
        desc = table.description + (f" [{props}]" if props else "")
        self._con.execute(f"COMMENT ON TABLE {fq} IS {_lit(desc)}")
        cols = list(table.columns) + ([table.partition] if table.partition else [])
        for c in cols:
            if c.comment:
                self._con.execute(f"COMMENT ON COLUMN {fq}.{_q(c.name)} IS {_lit(c.comment)}")

    # -- views and queries -------------------------------------------------------------
    def create_views(self, source: str) -> list[str]:
        """(Re)create the source's views where they are missing or their SQL changed."""
        with self.session(rebuild=self._rebuild):
            alias = self.main_alias
            if not self.memory:
                self._attach(alias)
            created = []
            for name, sql in view_sql(source).items():
                body = to_duckdb(sql)
                digest = "view:" + hashlib.sha256(body.encode()).hexdigest()
                if self._view_current(alias, source, name, digest):
                    created.append(f"{source}.{name}")
                    continue
                self._writable(alias)
                m = f"{_q(alias)}.{META}"
                fq = f"{_q(alias)}.{_q(source)}.{_q(name)}"
                self._con.execute("BEGIN TRANSACTION")
                try:
                    self._con.execute(f"CREATE SCHEMA IF NOT EXISTS {_q(alias)}.{_q(source)}")
                    self._ensure_manifest(alias)
                    self._con.execute(f"CREATE OR REPLACE VIEW {fq} AS {body}")
                    self._con.execute(
                        f"DELETE FROM {m}.manifest_tables WHERE schema_name = ? AND table_name = ?",
                        [source, name],
                    )
                    self._con.execute(
                        f"INSERT INTO {m}.manifest_tables VALUES (?, ?, ?, ?)",
                        [source, name, digest, dt.datetime.now(dt.UTC).replace(tzinfo=None)],
                    )
                    self._con.execute("COMMIT")
                except BaseException:
                    self._con.execute("ROLLBACK")
                    raise
                created.append(f"{source}.{name}")
            return created

    def _view_current(self, alias: str, schema: str, name: str, digest: str) -> bool:
        exists = self._con.execute(
            "SELECT COUNT(*) FROM duckdb_views() WHERE database_name = ? AND schema_name = ? "
            "AND view_name = ?",
            [alias, schema, name],
        ).fetchone()
        if not exists or not exists[0] or self._rebuild:
            return False
        rec = self._recorded(alias, schema, name)
        return rec is not None and rec.definition == digest

    def query(self, sql: str) -> pa.Table:
        """Run a query: inside a session on its (possibly unswapped) state, else read-only."""
        if self._con is not None:
            return self._con.sql(sql).to_arrow_table()
        con = connect(self.path, self.np_dir)
        try:
            return con.sql(sql).to_arrow_table()
        finally:
            con.close()

    def record_publish(self, source: str, info: dict[str, str]) -> None:
        """Keep when and what was published, for BI users checking freshness."""
        with self.session(rebuild=self._rebuild):
            if not self.memory:
                self._attach(self.main_alias)
            self._writable(self.main_alias)
            m = f"{_q(self.main_alias)}.{META}"
            self._con.execute(f"CREATE SCHEMA IF NOT EXISTS {m}")
            self._con.execute(
                f"CREATE TABLE IF NOT EXISTS {m}.publish_log "
                "(source VARCHAR, published_at TIMESTAMP, info VARCHAR)"
            )
            self._con.execute(
                f"INSERT INTO {m}.publish_log VALUES (?, ?, ?)",
                [source, dt.datetime.now(dt.UTC).replace(tzinfo=None), str(info)],
            )


def _diff(existing: list[tuple[str, str]], wanted: list[tuple[str, str]]) -> list[str]:
    """Human-readable schema differences (column added, removed, retyped)."""
    old, new = dict(existing), dict(wanted)
    changes = [f"added {n} {t}" for n, t in wanted if n not in old]
    changes += [f"removed {n}" for n in old if n not in new]
    changes += [f"retyped {n}: {old[n]} -> {t}" for n, t in wanted if n in old and old[n] != t]
    return changes
