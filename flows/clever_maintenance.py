"""Key rotation for every registered source (``rotate-key``; ``clever-rotate-key`` kept)."""

from __future__ import annotations

from typing import Any, Literal

from edulake.core.settings import CatalogKind, get_settings
from edulake.sources import registry
from tasks.common import edulake_flow, make_catalog, make_lake, resolve_key, validate_run
from tasks.lease import hold_lake_lease
from tasks.maintenance import SourceName, finish, republish, rotate


def _rotate_sources(
    sources: list[SourceName],
    lake_root: str | None,
    np_root: str | None,
    hmac_key_block: str,
    aws_credentials_block: str | None,
    catalog: CatalogKind | None,
    max_quarantine_share: float | None,
) -> dict[str, dict[str, Any]]:
    validate_run(
        lake_root=lake_root,
        np_root=np_root,
        catalog=catalog,
        aws_credentials_block=aws_credentials_block,
    )
    lake = make_lake(lake_root, np_root, aws_credentials_block)
    key = resolve_key(hmac_key_block, demo=False)
    share = (
        max_quarantine_share
        if max_quarantine_share is not None
        else get_settings().max_quarantine_share
    )
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
