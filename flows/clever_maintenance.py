"""Clever maintenance: rotate the pseudonymization key."""

from __future__ import annotations

from typing import Any

from prefect import flow

from edulake.core.settings import CatalogKind, get_settings
from tasks.common import make_catalog, make_lake, resolve_key, validate_run
from tasks.lease import hold_lake_lease
from tasks.maintenance import finish, republish, rotate


@flow(name="clever-rotate-key")
def clever_rotate_key(
    lake_root: str | None = None,
    np_root: str | None = None,
    hmac_key_block: str = "edulake-hmac-key",
    aws_credentials_block: str | None = None,
    catalog: CatalogKind | None = None,
    max_quarantine_share: float | None = None,
) -> dict[str, Any]:
    """Re-pseudonymize stage2p and rebuild stage2np from stage1np with the configured key.

    First store the new key in the Secret block (or EDULAKE_HMAC_KEY); ordinary runs then
    refuse to start until this flow has finished. If it is interrupted, run it again.

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
    # Rotation rewrites every stage2p file and lookup: one writer at a time.
    with hold_lake_lease(lake, "clever-rotate-key"):
        result = rotate(lake, key, share)
        if result.nothing_to_do:
            return {"rotated": False, "key_id": key.key_id}
        cat = make_catalog(lake, catalog)
        try:
            republish(cat, lake, key.key_id, full=True)
        finally:
            cat.close()
        finish(lake, key)
    return {
        "rotated": True,
        "from_key_id": result.from_key_id,
        "to_key_id": result.to_key_id,
        "files_reprocessed": len(result.files),
        "older_versions_rebuilt": result.rebuilt_older_versions,
        "failed_files": [f.name for f in result.failed],
    }
