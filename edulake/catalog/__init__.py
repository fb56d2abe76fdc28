"""SQL catalogs: where lake tables are published for BI tools.

One description of a table (:class:`CatalogTable`, built from a :class:`TableSpec`) and
several renderers: an embedded DuckDB database (default) and AWS Glue/Athena.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal

import pyarrow as pa

from edulake.core.lake import Lake, Zone
from edulake.core.versions import read_prefix, version_prefix
from edulake.specs import OutputColumn, TableSpec


def database_name(source: str, zone: Zone) -> str:
    """The schema/database a table is published in: ``clever`` (p) or ``clever_np``."""
    return source if zone is Zone.STAGE2P else f"{source}_np"


def table_prefix(source: str, name: str) -> str:
    """A table's folder inside its zone."""
    return f"{source}/{name}"


@dataclass(frozen=True)
class CatalogTable:
    """A lake table as a catalog sees it: columns, partition key, location, properties."""

    zone: Zone
    source: str
    name: str
    columns: list[OutputColumn]
    location: str  # URI of the table's folder
    partition: OutputColumn | None = None
    description: str = ""
    properties: dict[str, str] = field(default_factory=dict)

    @property
    def database(self) -> str:
        return database_name(self.source, self.zone)

    @classmethod
    def from_spec(
        cls,
        lake: Lake,
        spec: TableSpec,
        properties: dict[str, str] | None = None,
        version: int | None = None,
    ) -> CatalogTable:
        """The stage2p table of a spec, at its live version (read from the lake's pointer
        record) or at ``version`` (rendering without storage access)."""
        prefix = (
            read_prefix(lake, spec.source, spec.name)
            if version is None
            else version_prefix(spec.source, spec.name, version)
        )
        return cls(
            zone=Zone.STAGE2P,
            source=spec.source,
            name=spec.name,
            columns=spec.output_columns(),
            # the live version's folder (edulake.core.versions): a full rewrite switches it
            location=lake.uri(Zone.STAGE2P, prefix),
            partition=spec.partition_column,
            description=spec.description,
            properties=dict(properties or {}),
        )


@dataclass(frozen=True)
class PublishResult:
    """What publishing did to one table."""

    database: str
    table: str
    action: Literal["created", "updated", "replaced-partitions", "unchanged", "schema-changed"]
    rows: int | None = None
    partitions: int | None = None
    schema_changes: list[str] = field(default_factory=list)


class Catalog(ABC):
    """A SQL catalog the lake's tables are published to."""

    kind: str

    @abstractmethod
    def publish(self, table: CatalogTable, partitions: list[str] | None = None) -> PublishResult:
        """Make the catalog's table match the lake.

        ``partitions`` is a hint at most (values the caller knows changed): the DuckDB
        catalog ignores it (its manifest knows what it holds); Glue, which holds only the
        table definition, uses it to extend partition projection without listing the lake
        (None: it lists the lake). Publishing never depends on what an earlier run did.
        """

    @contextmanager
    def session(self, rebuild: bool = False) -> Iterator[None]:
        """Publish several tables and views in one go (DuckDB: one copy and swap per file).

        ``rebuild``: rebuild every table in full (after a key rotation).
        """
        yield

    @abstractmethod
    def create_views(self, source: str) -> list[str]:
        """(Re)create the source's analytics views; returns their qualified names."""

    @abstractmethod
    def query(self, sql: str) -> pa.Table:
        """Run a query and return its result."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""


def publish_all(
    catalog: Catalog,
    tables: list[CatalogTable],
    views_for: str | None = None,
    rebuild: bool = False,
) -> tuple[list[PublishResult], list[str]]:
    """Publish tables, then the source's views, in one session; (results, view names)."""
    with catalog.session(rebuild=rebuild):
        results = [catalog.publish(t) for t in tables]
        views = catalog.create_views(views_for) if views_for else []
    return results, views


def open_catalog(kind: str, lake: Lake, duckdb_path: str | None = None, **glue: str) -> Catalog:
    """The configured catalog: ``duckdb`` (embedded default) or ``glue`` (Athena)."""
    if kind == "duckdb":
        from edulake.catalog.duckdb import DuckDBCatalog

        return DuckDBCatalog(duckdb_path or DuckDBCatalog.default_path(lake), lake)
    if kind == "glue":
        from edulake.catalog.glue import GlueCatalog  # type: ignore[import-not-found,unused-ignore]

        return GlueCatalog(lake=lake, **glue)  # type: ignore[no-any-return,unused-ignore]
    raise ValueError(f"unknown catalog kind {kind!r}: use duckdb or glue")
