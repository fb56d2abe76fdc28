"""The Glue Data Catalog renderer: lake tables as external Parquet tables Athena can query.

Same :class:`CatalogTable` as the DuckDB catalog, a second renderer:

- one Glue database per zone and source: ``<prefix>_clever`` (stage2p), ``<prefix>_clever_np``;
- an external Parquet table over the table's S3 folder, columns typed with
  :func:`edulake.core.types.athena_type` and commented from the spec;
- partition projection for date partitions (``date=YYYY-MM-DD``) and month partitions
  (``month=YYYY-MM``, projected as a date with format ``yyyy-MM`` and a one-month interval).
  Projection, not partition registration: Athena computes the partitions from the table
  properties, so a new day is queryable the moment its files are committed, with no Glue
  call per run, no crawler and no ``MSCK REPAIR``; a month is just a coarser date;
- idempotent: the wanted table is compared with Glue's first and only written when it
  differs, so re-publishing the same schema makes no Glue write at all.
"""

from __future__ import annotations

import re
from typing import Any

import pyarrow as pa

from edulake.catalog import Catalog, CatalogTable, PublishResult
from edulake.core.lake import Lake, Zone
from edulake.core.types import athena_type
from edulake.core.versions import in_version
from edulake.specs import OutputColumn

PARQUET_INPUT = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"
PARQUET_OUTPUT = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat"
PARQUET_SERDE = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"

# Projection ranges start at the earliest partition seen (Athena enumerates every value
# in the range when a query has no partition filter: a tight range keeps that cheap).
DEFAULT_PROJECTION_START = {"day": "2020-01-01", "month": "2020-01"}
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_MONTH = re.compile(r"^\d{4}-\d{2}$")


def glue_database(prefix: str, table: CatalogTable) -> str:
    """The Glue database of a table: ``<prefix>_<source>`` or ``<prefix>_<source>_np``."""
    return f"{prefix}_{table.database}" if prefix else table.database


def _granularity(partition: OutputColumn) -> str | None:
    """``day`` for a date partition, ``month`` for a YYYY-MM month partition, else None."""
    if partition.type == "date":
        return "day"
    if partition.name == "month" and partition.type == "string":
        return "month"
    return None


def projection_parameters(table: CatalogTable, start: str | None = None) -> dict[str, str]:
    """Glue table parameters that make Athena project the table's date/month partitions."""
    part = table.partition
    if part is None:
        return {}
    grain = _granularity(part)
    if grain is None:
        return {}  # other partition kinds would need registration; none exist yet
    col = part.name
    fmt, unit = ("yyyy-MM-dd", "DAYS") if grain == "day" else ("yyyy-MM", "MONTHS")
    location = table.location.rstrip("/")
    return {
        "projection.enabled": "true",
        f"projection.{col}.type": "date",
        f"projection.{col}.format": fmt,
        f"projection.{col}.range": f"{start or DEFAULT_PROJECTION_START[grain]},NOW",
        f"projection.{col}.interval": "1",
        f"projection.{col}.interval.unit": unit,
        "storage.location.template": f"{location}/{col}=${{{col}}}/",
    }


def table_input(table: CatalogTable, projection_start: str | None = None) -> dict[str, Any]:
    """The Glue ``TableInput`` for a lake table (what Glue should hold)."""
    if not table.location.startswith("s3://"):
        raise ValueError(
            f"Glue tables need an s3:// location, got {table.location!r}: "
            "use an s3:// lake root with the glue catalog"
        )
    params = {
        "classification": "parquet",
        "EXTERNAL": "TRUE",
        **{k: str(v) for k, v in sorted(table.properties.items())},
        **projection_parameters(table, projection_start),
    }
    partition_keys = [_column(table.partition)] if table.partition else []
    return {
        "Name": table.name,
        "Description": table.description,
        "TableType": "EXTERNAL_TABLE",
        "Parameters": params,
        "PartitionKeys": partition_keys,
        "StorageDescriptor": {
            "Columns": [_column(c) for c in table.columns],
            "Location": table.location.rstrip("/") + "/",
            "InputFormat": PARQUET_INPUT,
            "OutputFormat": PARQUET_OUTPUT,
            "SerdeInfo": {
                "SerializationLibrary": PARQUET_SERDE,
                "Parameters": {"serialization.format": "1"},
            },
            "Compressed": False,
            "StoredAsSubDirectories": False,
        },
    }


def _column(c: OutputColumn) -> dict[str, str]:
    return {"Name": c.name, "Type": athena_type(c.type), "Comment": c.comment}


def comparable(glue_table: dict[str, Any]) -> dict[str, Any]:
    """The parts of a Glue table (from ``get_table``) that ``table_input`` sets, normalised."""
    sd = glue_table.get("StorageDescriptor", {})
    serde = sd.get("SerdeInfo", {})

    def cols(items: list[dict[str, Any]]) -> list[dict[str, str]]:
        return [
            {"Name": c["Name"], "Type": c["Type"], "Comment": c.get("Comment", "")} for c in items
        ]

    return {
        "Name": glue_table["Name"],
        "Description": glue_table.get("Description", ""),
        "TableType": glue_table.get("TableType"),
        "Parameters": dict(glue_table.get("Parameters", {})),
        "PartitionKeys": cols(glue_table.get("PartitionKeys", [])),
        "StorageDescriptor": {
            "Columns": cols(sd.get("Columns", [])),
            "Location": sd.get("Location"),
            "InputFormat": sd.get("InputFormat"),
            "OutputFormat": sd.get("OutputFormat"),
            "SerdeInfo": {
                "SerializationLibrary": serde.get("SerializationLibrary"),
                "Parameters": dict(serde.get("Parameters", {})),
            },
            "Compressed": sd.get("Compressed", False),
            "StoredAsSubDirectories": sd.get("StoredAsSubDirectories", False),
        },
    }


def _diff(
    label: str, before_cols: list[dict[str, str]], after_cols: list[dict[str, str]]
) -> list[str]:
    """Added, removed, retyped, recommented and reordered columns."""
    before = {c["Name"]: c for c in before_cols}
    after = {c["Name"]: c for c in after_cols}
    changes = [f"added {label} {n} {after[n]['Type']}" for n in after.keys() - before.keys()]
    changes += [f"removed {label} {n}" for n in before.keys() - after.keys()]
    for name in before.keys() & after.keys():
        if before[name]["Type"] != after[name]["Type"]:
            changes.append(f"{label} {name}: type {before[name]['Type']} -> {after[name]['Type']}")
        elif before[name]["Comment"] != after[name]["Comment"]:
            changes.append(f"{label} {name}: comment changed")
    kept_before = [c["Name"] for c in before_cols if c["Name"] in after]
    kept_after = [c["Name"] for c in after_cols if c["Name"] in before]
    if kept_before != kept_after:
        changes.append(f"{label} order changed")
    return changes


def schema_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Human-readable column differences between two comparable tables."""
    changes = _diff(
        "column", old["StorageDescriptor"]["Columns"], new["StorageDescriptor"]["Columns"]
    )
    changes += _diff("partition key", old["PartitionKeys"], new["PartitionKeys"])
    return sorted(changes)


class GlueCatalog(Catalog):
    """Publishes lake tables to the Glue Data Catalog; views and queries go through Athena."""

    kind = "glue"

    def __init__(
        self,
        lake: Lake | None = None,
        database_prefix: str = "edulake",
        glue_client: Any = None,
        athena: Any = None,
        views_dir: str | None = None,
    ) -> None:
        """A Glue catalog; clients default to the lake's credentials and the settings.

        ``athena``: an :class:`edulake.catalog.athena.AthenaRunner` for views and queries (default:
        one from ``EDULAKE_CATALOG__ATHENA_*``). Endpoints follow boto3's own variables
        (``AWS_ENDPOINT_URL_GLUE``, ``AWS_ENDPOINT_URL_ATHENA``), not the lake's S3 endpoint.
        """
        self.lake = lake
        self.prefix = database_prefix
        self._s3 = lake.main.s3 if lake is not None else None
        if glue_client is None:
            from edulake.connectors.aws import boto3_session

            glue_client = boto3_session(self._s3).client("glue")
        self.glue = glue_client
        self.athena = athena
        self.views_dir = views_dir

    # -- publishing ----------------------------------------------------------------------
    def publish(self, table: CatalogTable, partitions: list[str] | None = None) -> PublishResult:
        """Create or update the table; no Glue write when nothing changed."""
        database = glue_database(self.prefix, table)
        self._ensure_database(database, table)
        existing = self._get_table(database, table.name)
        start = self._projection_start(table, existing, partitions)
        wanted = table_input(table, start)
        if existing is None:
            self.glue.create_table(DatabaseName=database, TableInput=wanted)
            return PublishResult(database, table.name, "created", partitions=_count(partitions))
        old = comparable(existing)
        if old == comparable(wanted):
            return PublishResult(database, table.name, "unchanged", partitions=_count(partitions))
        self.glue.update_table(DatabaseName=database, TableInput=wanted)
        changes = schema_changes(old, comparable(wanted))
        return PublishResult(
            database,
            table.name,
            "schema-changed" if changes else "updated",
            partitions=_count(partitions),
            schema_changes=changes,
        )

    def _ensure_database(self, database: str, table: CatalogTable) -> None:
        try:
            self.glue.get_database(Name=database)
        except self.glue.exceptions.EntityNotFoundException:
            zone = "protected lookup tables (PII)" if table.zone is Zone.STAGE2NP else "tables"
            description = f"edulake {table.source} {zone} ({table.zone.value})"
            self.glue.create_database(DatabaseInput={"Name": database, "Description": description})

    def _get_table(self, database: str, name: str) -> dict[str, Any] | None:
        try:
            return dict(self.glue.get_table(DatabaseName=database, Name=name)["Table"])
        except self.glue.exceptions.EntityNotFoundException:
            return None

    def _projection_start(
        self, table: CatalogTable, existing: dict[str, Any] | None, partitions: list[str] | None
    ) -> str | None:
        """The earliest partition: from Glue's current range, the changed values, the lake."""
        if table.partition is None or _granularity(table.partition) is None:
            return None
        grain = _granularity(table.partition)
        pattern = _DAY if grain == "day" else _MONTH
        col = table.partition.name
        candidates: list[str] = []
        if existing is not None:
            current = existing.get("Parameters", {}).get(f"projection.{col}.range", "")
            candidates.append(current.split(",", 1)[0])
        candidates += list(partitions or [])
        if partitions is None and self.lake is not None:
            candidates += self._lake_partitions(table)
        valid = sorted(v for v in candidates if pattern.match(v))
        return valid[0] if valid else None

    def _lake_partitions(self, table: CatalogTable) -> list[str]:
        """Partition values present in the lake (folder names ``<col>=<value>``)."""
        assert self.lake is not None
        assert table.partition is not None
        prefix = table.location[len(self.lake.uri(table.zone)) :].strip("/")
        marker = f"{table.partition.name}="
        values = set()
        for obj in self.lake.list(table.zone, prefix):
            if not in_version(obj.key, prefix):
                continue
            for part in obj.key.split("/"):
                if part.startswith(marker):
                    values.add(part[len(marker) :])
        return sorted(values)

    # -- views and queries (Athena) --------------------------------------------------------
    def create_views(self, source: str) -> list[str]:
        """Create or replace the source's Athena views (``edulake/sql/views/<source>/*.sql``)."""
        from edulake.catalog.athena import create_views

        views: list[str] = create_views(self._runner(), source, self.prefix, self.views_dir)
        return views

    def query(self, sql: str) -> pa.Table:
        """Run a query in Athena and return its rows."""
        from edulake.catalog.athena import qualify

        return self._runner().fetch_table(qualify(sql, self.prefix))

    def _runner(self) -> Any:
        if self.athena is None:
            from edulake.catalog.athena import AthenaConfig, AthenaRunner
            from edulake.core.settings import get_settings

            config = AthenaConfig.from_settings(
                get_settings().catalog, self._s3, database_prefix=self.prefix
            )
            self.athena = AthenaRunner(config, self._s3)
        return self.athena

    def close(self) -> None:
        if self.athena is not None:
            self.athena.close()


def _count(partitions: list[str] | None) -> int | None:
    return None if partitions is None else len(partitions)
