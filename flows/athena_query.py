"""Athena queries: the repo's named SQL into the results bucket (BI extracts), and views."""

from __future__ import annotations

from typing import Any

from prefect import flow

from edulake.catalog.athena import Format, Mode, list_queries
from tasks.athena import create_athena_views, make_runner, report_athena_run, run_athena_query


@flow(name="athena-query")
def athena_query(
    query_names: list[str] | None = None,
    mode: Mode = "select",
    fmt: Format = "csv",
    views_for: list[str] | None = None,
    aws_credentials_block: str | None = None,
    workgroup: str | None = None,
    output_location: str | None = None,
    database_prefix: str | None = None,
) -> dict[str, Any]:
    """Run named Athena queries (``edulake/sql/athena/*.sql``) and refresh views.

    Args:
        query_names: queries to run (default: every bundled query).
        mode: select (Athena's CSV with header: the Tableau file), unload or ctas.
        fmt: parquet or csv, for unload and ctas.
        views_for: sources whose Athena views to (re)create first, e.g. ["clever"].
        aws_credentials_block: prefect-aws AwsCredentials block (default: AWS chain).
        workgroup / output_location / database_prefix: override EDULAKE_CATALOG__*.
    """
    runner = make_runner(aws_credentials_block, workgroup, output_location, database_prefix)
    try:
        views = [v for source in views_for or [] for v in create_athena_views(runner, source)]
        names = query_names if query_names is not None else list_queries()
        records = [run_athena_query(runner, name, mode, fmt) for name in names]
    finally:
        runner.close()
    return report_athena_run(records, views)
