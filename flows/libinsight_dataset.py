"""LibInsight custom dataset: API pages -> stage1np -> stage2p (+ stage2np lookup) -> catalog."""

from __future__ import annotations

import datetime as dt
from typing import Any

from edulake.catalog import CatalogTable
from edulake.core.settings import CatalogKind
from edulake.privacy.keys import demo_refusal
from edulake.sources import registry
from edulake.sources.libinsight.auth import AuthMode
from edulake.sources.libinsight.config import load_dataset_config
from edulake.sources.libinsight.store import LandedPage
from tasks.audit import audit_before_publish
from tasks.common import edulake_flow, make_catalog, make_lake, resolve_key, validate_run
from tasks.events import emit_data_committed, emit_source_stale
from tasks.lease import hold_lake_lease
from tasks.libinsight import (
    check_key,
    check_staleness,
    commit_watermark,
    open_client,
    page_lander,
    plan_run,
    process_pages,
    report_run,
)
from tasks.paging import fetch_all_pages
from tasks.publish import publish_tables, results_rows
from tasks.report import publish_report


@edulake_flow(name="libinsight-dataset")
def libinsight_dataset(
    base_url: str,
    dataset_id: int,
    request_id: int | None = None,
    client_id: str = "",
    client_secret_block: str | None = "edulake-libinsight-secret",  # noqa: S107 - a block name
    auth_mode: AuthMode = "form",
    dataset_config: str = "reference_desk",
    from_date: dt.date | None = None,
    to_date: dt.date | None = None,
    lookback_days: int = 14,
    stale_after_days: int = 14,
    concurrency: int = 8,
    requests_per_second: float | None = None,
    lake_root: str | None = None,
    np_root: str | None = None,
    catalog: CatalogKind | None = None,
    demo: bool = False,
    hmac_key_block: str | None = "edulake-hmac-key",
    aws_credentials_block: str | None = None,
) -> dict[str, Any]:
    """Fetch a LibInsight custom dataset's records, land them raw, publish a typed table.

    Args:
        base_url: the LibInsight instance, e.g. https://yourlib.libinsight.com.
        dataset_id: the custom dataset's id (Admin > Widgets & APIs).
        request_id: the data grid's request id, only for setups that need one.
        client_id: the API client id (Manage API Authentication); its secret comes from
            the client_secret_block Secret block, never from a parameter.
        client_secret_block: name of the Secret block holding the client secret; without
            it, EDULAKE_LIBINSIGHT_CLIENT_SECRET.
        auth_mode: how the client credentials are sent for a token: form (fields in the
            body) or basic (HTTP Basic authentication).
        dataset_config: a bundled config name (reference_desk, instruction_log) or a YAML
            path. The table is the dataset's own: <config name>_<dataset_id>, or the
            config's name when the config is bound to this dataset (dataset_id: in it).
        from_date: first day of a backfill; empty: the watermark minus lookback_days.
        to_date: last day of a backfill; empty, or after yesterday: yesterday.
        lookback_days: days before the watermark fetched again by an incremental run
            (records edited late).
        stale_after_days: no record for this many days emits edulake.source.stale.
        concurrency: pages fetched at once.
        requests_per_second: a cap on requests per second; empty: no cap.
        lake_root: the lake's root (a folder or s3://bucket/prefix); empty:
            EDULAKE_LAKE__ROOT.
        np_root: the root of the protected zones; empty: EDULAKE_LAKE__NP_ROOT, else
            <lake_root>-protected for a local lake.
        catalog: where the table is published: duckdb (embedded) or glue (Athena); empty:
            EDULAKE_CATALOG__KIND.
        demo: allow the public demo key when no key is configured (the bundled stand-in
            server only).
        hmac_key_block: name of the Secret (or AwsSecret) block holding the
            pseudonymization key; empty (null), or no such block: EDULAKE_HMAC_KEY, else
            the demo key when demo is true.
        aws_credentials_block: name of a prefect-aws AwsCredentials block for an s3:// lake
            or the Glue catalog; empty: settings or the AWS default chain.
    """
    validate_run(
        lake_root=lake_root,
        np_root=np_root,
        catalog=catalog,
        aws_credentials_block=aws_credentials_block,
    )
    cfg = load_dataset_config(dataset_config)
    table_name = cfg.table_name(dataset_id)  # a config bound to another dataset: refused here
    lake = make_lake(lake_root, np_root, aws_credentials_block)
    refusal = demo_refusal("libinsight", base_url=base_url, client_id=client_id)
    key = resolve_key(hmac_key_block, demo, demo_refusal=refusal, lake=lake, source=cfg.source)
    lake.sweep_tmp()
    check_key(lake, cfg.source, key)  # another key: refused before any fetch
    plan = plan_run(lake, cfg, table_name, dataset_id, from_date, to_date, lookback_days)
    pages: dict[str, list[LandedPage]] = {}
    fetch: dict[str, Any] = {}
    checks = {"duplicate_ids": 0, "empty_pages": 0, "fetches_started_over": 0}
    processed = None
    published: list[dict[str, object]] = []
    if plan.window is not None:
        client = open_client(base_url, client_id, client_secret_block, auth_mode, concurrency)
        try:
            for window in plan.windows:
                lander = page_lander(lake, dataset_id, window)
                path, paginator = client.data_grid_request(dataset_id, window, request_id)
                stats = fetch_all_pages(
                    client.http,
                    path,
                    paginator,
                    label=f"dataset {dataset_id} {window}",
                    concurrency=concurrency,
                    rps=requests_per_second,
                    on_page=lander,
                    on_restart=lander.reset,
                    progress_key="libinsight-paging-progress",
                )
                pages[str(window)] = lander.pages
                checks["duplicate_ids"] += stats.duplicate_ids
                checks["empty_pages"] += len(stats.empty_pages)
                checks["fetches_started_over"] += stats.restarts
            fetch = {
                "pages": sum(len(p) for p in pages.values()),
                **checks,
                "requests": client.http.stats["requests"],
                "retries": client.http.stats["retries"],
                "token_fetches": client.auth.fetched,
            }
        finally:
            client.close()
    # Fetching and landing the raw pages (immutable, unique keys) ran outside the lease;
    # rewriting months, lookups, the export, the catalog and the watermark run inside it,
    # so two runs over one dataset end as if they ran one after the other.
    with hold_lake_lease(lake, f"libinsight-dataset-{dataset_id}"):
        if plan.window is not None:
            landed = [p for ps in pages.values() for p in ps]
            processed = process_pages(lake, cfg, table_name, landed, plan.window, key)
            # A raw name where analysts could read it fails the run here, unpublished.
            audit_before_publish(
                lake,
                registry.libinsight_scope(
                    table_name, processed.months, [p.key for p in landed], processed.export_key
                ),
            )
            cat = make_catalog(lake, catalog)
            try:
                table = CatalogTable.from_spec(
                    lake, processed.spec, {"key_id": key.key_id, "source": "LibInsight"}
                )
                published = results_rows(publish_tables(cat, [table]))
            finally:
                cat.close()
            if processed.months:
                # After commit and publish: the athena-query deployment's trigger reacts.
                emit_data_committed(processed.spec.source, [processed.spec.name], processed.rows)
        after = commit_watermark(lake, table_name, dataset_id, plan)
    spec = cfg.table_spec(table=table_name)
    staleness = check_staleness(lake, spec, after, stale_after_days, dataset_id)
    if staleness.stale:
        emit_source_stale(cfg.source, f"dataset-{dataset_id}", staleness.payload(dataset_id))
    publish_report(
        lake,
        "libinsight",
        catalog,
        drift={table_name: processed.drift.rows()} if processed else None,
    )
    return report_run(
        dataset_id, plan, pages, fetch, processed, published, after, table_name, staleness
    )
