"""Catalog publishing: a retriable task, the same for every source."""

from __future__ import annotations

from dataclasses import asdict

from prefect.cache_policies import NO_CACHE

from edulake.catalog import Catalog, CatalogTable, PublishResult, publish_all
from tasks.common import edulake_task, logger, retry_if_transient


@edulake_task(
    name="publish-tables",
    retries=2,
    retry_delay_seconds=[5, 30],
    retry_condition_fn=retry_if_transient,
    cache_policy=NO_CACHE,
)
def publish_tables(
    catalog: Catalog,
    tables: list[CatalogTable],
    views_for: str | None = None,
    rebuild: bool = False,
) -> list[PublishResult]:
    """Make the catalog's tables match the lake, then the views, in one go.

    What to publish is not passed in: the catalog compares what it holds with the lake
    (DuckDB: its manifest of loaded files), so work a crashed or overlapping run left
    undone is done here. ``rebuild``: every table in full (key rotation).
    """
    log = logger()
    results, views = publish_all(catalog, tables, views_for, rebuild)
    for result in results:
        log.info(
            "published %s.%s: %s (%s rows, %s partition(s) replaced)%s",
            result.database,
            result.table,
            result.action,
            result.rows,
            result.partitions,
            f"; schema changes: {', '.join(result.schema_changes)}"
            if result.schema_changes
            else "",
        )
        if result.schema_changes:
            log.warning(
                "schema of %s.%s changed: %s",
                result.database,
                result.table,
                "; ".join(result.schema_changes),
            )
    stats = getattr(catalog, "stats", None)
    if stats is not None and stats.files:
        log.info(
            "catalog copy and swap: %d file(s), %d bytes copied in %.2f s",
            stats.files,
            stats.bytes_copied,
            stats.copy_seconds,
        )
    if views_for:
        log.info("views: %s", ", ".join(views) or "none")
    return results


def results_rows(results: list[PublishResult]) -> list[dict[str, object]]:
    """Publish results as artifact rows."""
    return [
        {k: (", ".join(v) if isinstance(v, list) else v) for k, v in asdict(r).items()}
        for r in results
    ]
