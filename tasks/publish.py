"""Catalog publishing: a retriable task, the same for every source."""

from __future__ import annotations

from dataclasses import asdict

from prefect import task
from prefect.cache_policies import NO_CACHE

from edulake.catalog import Catalog, CatalogTable, PublishResult
from tasks.common import logger, retry_if_transient


@task(
    name="publish-tables",
    retries=2,
    retry_delay_seconds=[5, 30],
    retry_condition_fn=retry_if_transient,
    cache_policy=NO_CACHE,
)
def publish_tables(
    catalog: Catalog,
    tables: list[tuple[CatalogTable, list[str] | None]],
    views_for: str | None = None,
) -> list[PublishResult]:
    """Publish tables (only the given partitions when a list is given), then the views."""
    log = logger()
    results = []
    for table, partitions in tables:
        result = catalog.publish(table, partitions)
        log.info(
            "published %s.%s: %s (%s rows)%s",
            result.database,
            result.table,
            result.action,
            result.rows,
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
        results.append(result)
    if views_for:
        views = catalog.create_views(views_for)
        log.info("views: %s", ", ".join(views) or "none")
    return results


def results_rows(results: list[PublishResult]) -> list[dict[str, object]]:
    """Publish results as artifact rows."""
    return [
        {k: (", ".join(v) if isinstance(v, list) else v) for k, v in asdict(r).items()}
        for r in results
    ]
