"""Athena tasks: run named queries and views, record what ran where, as run artifacts."""

from __future__ import annotations

from typing import Any

from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from edulake.catalog.athena import (
    AthenaConfig,
    AthenaRunner,
    DuckDBQueryRunner,
    Format,
    Mode,
    QueryRecord,
    load_query,
    output_name,
)
from edulake.core.settings import ConfigError, get_settings
from tasks.common import edulake_task, logger, make_lake, retry_if_transient, s3_options

Runner = AthenaRunner | DuckDBQueryRunner


def make_runner(
    aws_credentials_block: str | None = None,
    workgroup: str | None = None,
    output_location: str | None = None,
    database_prefix: str | None = None,
    *,
    catalog: str | None = None,
    lake_root: str | None = None,
    np_root: str | None = None,
) -> Runner:
    """The runner for the configured catalog: DuckDB (embedded default) or Athena (glue).

    On duckdb the named SQL runs on the lake's DuckDB catalog and the results go to the
    lake's exports zone (or the ``output_location`` parameter, a local folder); the
    Athena settings (workgroup, results bucket) are not used.
    """
    settings = get_settings()
    if (catalog or settings.catalog.kind) == "duckdb":
        lake = make_lake(lake_root, np_root, aws_credentials_block)
        if output_location and "://" in output_location:
            raise ConfigError(
                "on the duckdb catalog, output_location is a local folder (default: the "
                "lake's exports/athena/); S3 results need the glue catalog"
            )
        runner = DuckDBQueryRunner(lake, settings.catalog.duckdb_path, output_location)
        if not runner.catalog_exists(runner.catalog_path):
            raise ConfigError(
                f"no DuckDB catalog at {runner.catalog_path}: run a pipeline (clever or "
                "libinsight) first, or set EDULAKE_CATALOG__DUCKDB_PATH"
            )
        return runner
    s3 = s3_options(aws_credentials_block, settings)
    config = AthenaConfig.from_settings(
        settings.catalog,
        s3,
        workgroup=workgroup,
        output_location=output_location,
        database_prefix=database_prefix,
    )
    return AthenaRunner(config, s3)


@edulake_task(
    name="run-athena-query",
    retries=3,
    retry_delay_seconds=[10, 60, 300],
    retry_condition_fn=retry_if_transient,
    cache_policy=NO_CACHE,
)
def run_athena_query(
    runner: Runner,
    name: str,
    mode: Mode = "select",
    fmt: Format = "csv",
    table: str | None = None,
) -> QueryRecord:
    """Run one named query; a retry of the same flow run re-attaches to its execution.

    ``table``: for a per-table query, the table (or the ``edulake.table.<db>.<table>``
    resource of the event that triggered the run); its result is named ``<query>-<table>``.
    """
    log = logger()
    run_key = str(flow_run.get_id() or "")
    sql = load_query(name, table)
    name = output_name(name, table)
    record = runner.run_named(name, mode=mode, fmt=fmt, run_key=run_key, sql=sql)
    if isinstance(runner, DuckDBQueryRunner):
        log.info("DuckDB %s: %s rows, results at %s", name, record.rows, record.output_location)
        return record
    log.info(
        "Athena %s %s: %s, %s bytes scanned, results at %s",
        name,
        record.query_id,
        record.state,
        record.data_scanned_bytes,
        record.output_location,
    )
    return record


@edulake_task(
    name="create-athena-views",
    retries=2,
    retry_delay_seconds=[10, 60],
    retry_condition_fn=retry_if_transient,
    cache_policy=NO_CACHE,
)
def create_athena_views(runner: Runner, source: str) -> list[str]:
    """(Re)create a source's views (in Athena, or in the DuckDB catalog)."""
    views = runner.create_views(source)
    logger().info(
        "%s views for %s: %s", runner.config.workgroup, source, ", ".join(views) or "none"
    )
    return views


@edulake_task(name="report-athena-run", cache_policy=NO_CACHE)
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
            "rows": r.rows,
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
