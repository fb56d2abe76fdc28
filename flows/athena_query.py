"""Athena queries: the repo's named SQL into the results bucket (BI extracts), and views.

On the embedded default catalog (duckdb) the same SQL runs on the DuckDB catalog and the
extract is written to the lake's exports zone (``exports/athena/<name>.csv``).
"""

from __future__ import annotations

from typing import Any, Literal

from edulake.catalog.athena import Format, Mode, list_queries
from edulake.core.settings import CatalogKind
from tasks.athena import create_athena_views, make_runner, report_athena_run, run_athena_query
from tasks.common import edulake_flow, validate_run

SourceName = Literal["clever", "libinsight"]


@edulake_flow(name="athena-query")
def athena_query(
    query_names: list[str] | None = None,
    mode: Mode = "select",
    fmt: Format = "csv",
    views_for: list[SourceName] | None = None,
    aws_credentials_block: str | None = None,
    workgroup: str | None = None,
    output_location: str | None = None,
    database_prefix: str | None = None,
    catalog: CatalogKind | None = None,
    lake_root: str | None = None,
    np_root: str | None = None,
    table: str | None = None,
) -> dict[str, Any]:
    """Run named Athena queries (``edulake/sql/athena/*.sql``) and refresh views.

    Args:
        query_names: queries to run (default: every bundled query).
        mode: select (Athena's CSV with header: the Tableau file), unload or ctas.
        fmt: parquet or csv, for unload and ctas.
        views_for: sources whose Athena views to (re)create first, e.g. ["clever"].
        aws_credentials_block: prefect-aws AwsCredentials block (default: AWS chain).
        workgroup: the Athena workgroup; empty: EDULAKE_CATALOG__ATHENA_WORKGROUP.
        output_location: the s3:// results location; empty:
            EDULAKE_CATALOG__ATHENA_OUTPUT_LOCATION.
        database_prefix: prefix of the Glue database names; empty:
            EDULAKE_CATALOG__GLUE_DATABASE_PREFIX.
        catalog: duckdb (run on the DuckDB catalog, results to <lake>/exports/athena/) or
            glue (Athena); default: EDULAKE_CATALOG__KIND.
        lake_root: the lake's root (duckdb only); empty: EDULAKE_LAKE__ROOT.
        np_root: the root of the protected zones (duckdb only); empty:
            EDULAKE_LAKE__NP_ROOT.
        table: for per-table queries (the Tableau extract: one LibInsight table per
            dataset), the table, or the ``edulake.table.<db>.<table>`` resource id the
            trigger passes; the result is named ``<query>-<table>``.
    """
    validate_run(
        lake_root=lake_root,
        np_root=np_root,
        catalog=catalog,
        aws_credentials_block=aws_credentials_block,
    )
    runner = make_runner(
        aws_credentials_block,
        workgroup,
        output_location,
        database_prefix,
        catalog=catalog,
        lake_root=lake_root,
        np_root=np_root,
    )
    try:
        views = [v for source in views_for or [] for v in create_athena_views(runner, source)]
        names = query_names if query_names is not None else list_queries()
        records = [run_athena_query(runner, name, mode, fmt, table) for name in names]
    finally:
        runner.close()
    return report_athena_run(records, views)
