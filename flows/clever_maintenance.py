"""Key rotation for every registered source (``rotate-key``; ``clever-rotate-key`` kept),
and Clever's rotation fanned out by month (``rotate-key-months`` over ``rotate-key-child``)."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from prefect.task_runners import ThreadPoolTaskRunner

from edulake.core.settings import CatalogKind, get_settings
from edulake.sources import registry
from tasks.common import edulake_flow, make_catalog, open_lake, resolve_key
from tasks.fanout import FANOUT_LIMIT, ensure_limits, finish_children, run_child
from tasks.lease import hold_lake_lease
from tasks.maintenance import (
    SourceName,
    finish,
    prepare,
    republish,
    rewrite_window,
    rotate,
    rotation_windows,
)

# The deployment a fanned-out rotation's children run on (prefect.yaml).
ROTATE_CHILD_DEPLOYMENT = "rotate-key-child/rotate-key-child"


def _share(max_quarantine_share: float | None) -> float:
    if max_quarantine_share is not None:
        return max_quarantine_share
    return get_settings().max_quarantine_share


def _rotate_sources(
    sources: list[SourceName],
    lake_root: str | None,
    np_root: str | None,
    hmac_key_block: str,
    aws_credentials_block: str | None,
    catalog: CatalogKind | None,
    max_quarantine_share: float | None,
) -> dict[str, dict[str, Any]]:
    lake = open_lake(lake_root, np_root, aws_credentials_block, catalog)
    key = resolve_key(hmac_key_block, demo=False)
    share = _share(max_quarantine_share)
    out: dict[str, dict[str, Any]] = {}  # source -> what its rotation did
    # Rotation rewrites every stage2p table and lookup: one writer at a time.
    with hold_lake_lease(lake, "rotate-key"):
        for source in sources:
            result = rotate(lake, key, share, source)
            if result.nothing_to_do:
                out[source] = {"rotated": False, "key_id": key.key_id}
                continue
            cat = make_catalog(lake, catalog)
            try:
                # the new versions' tables, in one publish (DuckDB: one swap per file)
                republish(cat, lake, key.key_id, full=True, source=source)
            finally:
                cat.close()
            finish(lake, key, source)
            out[source] = {
                "rotated": True,
                "from_key_id": result.from_key_id,
                "to_key_id": result.to_key_id,
                "files_reprocessed": len(result.files),
                "files_rewritten": result.rewritten,
                "older_versions_rebuilt": result.rebuilt_older_versions,
                "table_versions": result.versions,
                "failed_files": [f.name for f in result.failed],
            }
    return out


@edulake_flow(name="rotate-key")
def rotate_key_flow(
    source: Literal["clever", "libinsight"] | None = None,
    lake_root: str | None = None,
    np_root: str | None = None,
    hmac_key_block: str = "edulake-hmac-key",
    aws_credentials_block: str | None = None,
    catalog: CatalogKind | None = None,
    max_quarantine_share: float | None = None,
) -> dict[str, Any]:
    """Re-pseudonymize every registered source (or ``source``) with the configured key.

    Each source's new table version is built beside the live one and switched in at once
    (docs/architecture.md, "Table versions"). First store the new key in the Secret block
    (or EDULAKE_HMAC_KEY); ordinary runs then refuse to start until this flow has
    finished. If it is interrupted, run it again.

    Args:
        source: the registered source to rotate (clever or libinsight); empty: every
            registered source.
        lake_root: the lake's root (a folder or s3://bucket/prefix); empty:
            EDULAKE_LAKE__ROOT.
        np_root: the root of the protected zones (identity lookups, quarantine); empty:
            EDULAKE_LAKE__NP_ROOT, else <lake_root>-protected for a local lake.
        hmac_key_block: name of the Secret (or AwsSecret) block holding the new
            pseudonymization key; without it, EDULAKE_HMAC_KEY.
        aws_credentials_block: name of a prefect-aws AwsCredentials block for an s3:// lake
            or the Glue catalog; empty: settings or the AWS default chain.
        catalog: the catalog to republish: duckdb (embedded) or glue (Athena); empty:
            EDULAKE_CATALOG__KIND.
        max_quarantine_share: a file fails above this share of bad rows while it is
            reprocessed; empty: EDULAKE_MAX_QUARANTINE_SHARE.
    """
    every: list[SourceName] = [s.name for s in registry.registered()]  # type: ignore[misc]
    names: list[SourceName] = [source] if source else every
    return _rotate_sources(
        names,
        lake_root,
        np_root,
        hmac_key_block,
        aws_credentials_block,
        catalog,
        max_quarantine_share,
    )


@edulake_flow(name="clever-rotate-key")
def clever_rotate_key(
    lake_root: str | None = None,
    np_root: str | None = None,
    hmac_key_block: str = "edulake-hmac-key",
    aws_credentials_block: str | None = None,
    catalog: CatalogKind | None = None,
    max_quarantine_share: float | None = None,
) -> dict[str, Any]:
    """Re-pseudonymize Clever alone (kept for existing deployments; see ``rotate-key``).

    Args:
        lake_root: the lake's root (a folder or s3://bucket/prefix); empty:
            EDULAKE_LAKE__ROOT.
        np_root: the root of the protected zones (identity lookups, quarantine); empty:
            EDULAKE_LAKE__NP_ROOT, else <lake_root>-protected for a local lake.
        hmac_key_block: name of the Secret (or AwsSecret) block holding the new
            pseudonymization key; without it, EDULAKE_HMAC_KEY.
        aws_credentials_block: name of a prefect-aws AwsCredentials block for an s3:// lake
            or the Glue catalog; empty: settings or the AWS default chain.
        catalog: the catalog to republish: duckdb (embedded) or glue (Athena); empty:
            EDULAKE_CATALOG__KIND.
        max_quarantine_share: a file fails above this share of bad rows while it is
            reprocessed; empty: EDULAKE_MAX_QUARANTINE_SHARE.
    """
    return _rotate_sources(
        ["clever"],
        lake_root,
        np_root,
        hmac_key_block,
        aws_credentials_block,
        catalog,
        max_quarantine_share,
    )["clever"]


@edulake_flow(name="rotate-key-months", task_runner=ThreadPoolTaskRunner(max_workers=16))  # type: ignore[arg-type]
def rotate_key_months(
    lake_root: str | None = None,
    np_root: str | None = None,
    hmac_key_block: str = "edulake-hmac-key",
    aws_credentials_block: str | None = None,
    catalog: CatalogKind | None = None,
    max_quarantine_share: float | None = None,
    months_per_child: int = 1,
    only: list[str] | None = None,
    child_job_variables: dict[str, dict[str, Any]] | None = None,
    child_deployment: str = ROTATE_CHILD_DEPLOYMENT,
    fanout_limit: str = FANOUT_LIMIT,
    max_children: int = 2,
) -> dict[str, Any]:
    """Re-pseudonymize Clever with the configured key, one child run per month of reports.

    Under the lake lease it prepares the rotation (intent record, new table version
    begun, old lookups and processed records cleared: once); then one ``rotate-key-child``
    run per month window of the landed report dates rewrites that window into the new
    version (each under the lake lease, idempotent: a re-run skips what it rewrote). When
    every child succeeded it finishes as ``rotate-key`` does: leftovers rewritten, every
    file checked for the new key, readers switched, the catalog republished in full. A
    failed child fails this run naming its window; the rotation stays in progress
    (ordinary runs keep refusing) until this flow is re-run (``only``: the failed windows).

    Args:
        lake_root: the lake's root (a folder or s3://bucket/prefix); empty:
            EDULAKE_LAKE__ROOT.
        np_root: the root of the protected zones (identity lookups, quarantine); empty:
            EDULAKE_LAKE__NP_ROOT, else <lake_root>-protected for a local lake.
        hmac_key_block: name of the Secret (or AwsSecret) block holding the new
            pseudonymization key; the children read the same block.
        aws_credentials_block: name of a prefect-aws AwsCredentials block for an s3:// lake
            or the Glue catalog; empty: settings or the AWS default chain.
        catalog: the catalog to republish: duckdb (embedded) or glue (Athena); empty:
            EDULAKE_CATALOG__KIND.
        max_quarantine_share: a file fails above this share of bad rows while it is
            reprocessed; empty: EDULAKE_MAX_QUARANTINE_SHARE.
        months_per_child: calendar months of report dates per child run.
        only: window labels to run (``2024-08``, or ``2024-08..2024-10`` with
            months_per_child > 1), e.g. the ones a previous run names as failed.
        child_job_variables: job variables for one window's child, by label (e.g. more
            memory for a heavy month); ``"*"`` applies to every child.
        child_deployment: the rotate-key-child deployment the children run on.
        fanout_limit: global concurrency limit bounding children in flight (created with
            ``max_children`` slots if missing; an existing limit is left as it is).
        max_children: slots of ``fanout_limit`` when this run creates it.
    """
    lake = open_lake(lake_root, np_root, aws_credentials_block, catalog)
    key = resolve_key(hmac_key_block, demo=False)
    with hold_lake_lease(lake, "rotate-key-months"):
        started = prepare(lake, key)
        windows = rotation_windows(lake, months_per_child, only)
    if started.nothing_to_do:
        return {"rotated": False, "key_id": key.key_id}
    children: list[dict[str, Any]] = []
    if not started.resumed_after_switch:
        ensure_limits({fanout_limit: max_children})
        extra = child_job_variables or {}
        common = {
            "lake_root": lake_root,
            "np_root": np_root,
            "hmac_key_block": hmac_key_block,
            "aws_credentials_block": aws_credentials_block,
            "max_quarantine_share": max_quarantine_share,
        }
        futures = []
        for w in windows:
            params = {**common, "report_from": w.start, "report_to": w.end}
            job_vars = {**extra.get("*", {}), **extra.get(w.label, {})}
            futures.append(
                run_child.submit(w.label, child_deployment, params, job_vars, fanout_limit)
            )
        children = finish_children(
            futures,
            "rotate-key-months",
            f"Clever key rotation to {key.key_id}: one child per window of landed reports.",
            "windows",
            "the rotation is still in progress (ordinary runs refuse); re-run rotate-key-months "
            "with --param only=",
        )
    # every window is in the new version: leftovers, check, switch, republish, finish
    out = _rotate_sources(
        ["clever"],
        lake_root,
        np_root,
        hmac_key_block,
        aws_credentials_block,
        catalog,
        max_quarantine_share,
    )["clever"]
    return out | {"children": children}


@edulake_flow(name="rotate-key-child")
def rotate_key_child(
    report_from: dt.date,
    report_to: dt.date,
    lake_root: str | None = None,
    np_root: str | None = None,
    hmac_key_block: str = "edulake-hmac-key",
    aws_credentials_block: str | None = None,
    max_quarantine_share: float | None = None,
) -> dict[str, int]:
    """One window of a ``rotate-key-months`` run: its landed Clever reports rewritten into
    the new table version with the new key, lookups merged, under the lake lease.

    Started by the parent, which prepared the rotation; refuses to run otherwise. Safe to
    repeat: files already rewritten (their processed records say so) are skipped.

    Args:
        report_from: first report day of the window (inclusive).
        report_to: last report day of the window (inclusive).
        lake_root: the lake's root (a folder or s3://bucket/prefix); empty:
            EDULAKE_LAKE__ROOT.
        np_root: the root of the protected zones (identity lookups, quarantine); empty:
            EDULAKE_LAKE__NP_ROOT, else <lake_root>-protected for a local lake.
        hmac_key_block: name of the Secret (or AwsSecret) block holding the new
            pseudonymization key; without it, EDULAKE_HMAC_KEY.
        aws_credentials_block: name of a prefect-aws AwsCredentials block for an s3://
            lake; empty: settings or the AWS default chain.
        max_quarantine_share: a file fails above this share of bad rows while it is
            reprocessed; empty: EDULAKE_MAX_QUARANTINE_SHARE.
    """
    lake = open_lake(lake_root, np_root, aws_credentials_block)
    key = resolve_key(hmac_key_block, demo=False)
    with hold_lake_lease(lake, "rotate-key-child"):
        return rewrite_window(lake, key, _share(max_quarantine_share), report_from, report_to)
