"""Athena tasks: run named queries and views, record what ran where, as run artifacts."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from edulake.catalog.athena import (
    AthenaConfig,
    AthenaRunner,
    Format,
    Mode,
    QueryRecord,
)
from edulake.core.settings import get_settings
from tasks.common import logger, retry_if_transient, s3_options


def make_runner(
    aws_credentials_block: str | None = None,
    workgroup: str | None = None,
    output_location: str | None = None,
    database_prefix: str | None = None,
) -> AthenaRunner:
    """An Athena runner from settings, flow parameters overriding them."""
    settings = get_settings()
    s3 = s3_options(aws_credentials_block, settings)
    config = AthenaConfig.from_settings(
        settings.catalog,
        s3,
        workgroup=workgroup,
        output_location=output_location,
        database_prefix=database_prefix,
    )
    return AthenaRunner(config, s3)


@task(
    name="run-athena-query",
    retries=3,
    retry_delay_seconds=[10, 60, 300],
    retry_condition_fn=retry_if_transient,
    cache_policy=NO_CACHE,
)
def run_athena_query(
    runner: AthenaRunner, name: str, mode: Mode = "select", fmt: Format = "csv"
) -> QueryRecord:
    """Run one named query; a retry of the same flow run re-attaches to its execution."""
    log = logger()
    run_key = str(flow_run.get_id() or "")
    record = runner.run_named(name, mode=mode, fmt=fmt, run_key=run_key)
    log.info(
        "Athena %s %s: %s, %s bytes scanned, results at %s",
        name,
        record.query_id,
        record.state,
        record.data_scanned_bytes,
        record.output_location,
    )
    return record


@task(
    name="create-athena-views",
    retries=2,
    retry_delay_seconds=[10, 60],
    retry_condition_fn=retry_if_transient,
    cache_policy=NO_CACHE,
)
def create_athena_views(runner: AthenaRunner, source: str) -> list[str]:
    """(Re)create a source's Athena views."""
    from edulake.catalog.athena import create_views

    views = create_views(runner, source, runner.config.database_prefix)
    logger().info("Athena views for %s: %s", source, ", ".join(views) or "none")
    return views


@task(name="report-athena-run", cache_policy=NO_CACHE)
def report_athena_run(records: list[QueryRecord], views: list[str]) -> dict[str, Any]:
    """The run artifact: one row per query (id, state, data scanned, where the results are)."""
    rows = [
        {
            "query": r.name,
            "query_id": r.query_id,
            "state": r.state,
            "data_scanned_bytes": r.data_scanned_bytes,
            "results": r.output_location,
            "mode": r.mode,
            "workgroup": r.workgroup,
        }
        for r in records
    ]
    create_table_artifact(key="athena-queries", table=rows, description="Athena queries run")
    lines = [f"- **{r.name}** `{r.query_id}` {r.state}: {r.output_location}" for r in records]
    if views:
        lines.append(f"- views: {', '.join(views)}")
    create_markdown_artifact(
        key="athena-summary", markdown="# Athena\n\n" + "\n".join(lines or ["nothing ran"])
    )
    return {"queries": rows, "views": views}
