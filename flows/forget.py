"""Erasure requests: remove a person from stage2np and stage2p, and keep them out."""

from __future__ import annotations

from typing import Any, Literal

from edulake.core.settings import CatalogKind
from tasks.common import edulake_flow, make_catalog, open_lake, resolve_key
from tasks.lease import hold_lake_lease
from tasks.maintenance import forget_people, republish, verify_forgotten


@edulake_flow(name="forget")
def forget_flow(
    ids_file: str,
    lake_root: str | None = None,
    np_root: str | None = None,
    demo: bool = False,
    hmac_key_block: str = "edulake-hmac-key",
    aws_credentials_block: str | None = None,
    catalog: CatalogKind | None = None,
    source: Literal["clever", "libinsight"] = "clever",
) -> dict[str, Any]:
    """Forget the people whose raw ids are listed in ``ids_file`` (one a line).

    The ids are read from a file (on the protected side) and never passed as parameters,
    so they never reach Prefect's database, logs or artifacts; only counts are reported.

    Args:
        ids_file: path or s3:// URL of the file listing the raw ids, one a line (keep it
            on the protected side).
        lake_root: the lake's root (a folder or s3://bucket/prefix); empty:
            EDULAKE_LAKE__ROOT.
        np_root: the root of the protected zones (identity lookups, quarantine); empty:
            EDULAKE_LAKE__NP_ROOT, else <lake_root>-protected for a local lake.
        demo: the lake was made with the public demo key (test data only).
        hmac_key_block: name of the Secret (or AwsSecret) block holding the
            pseudonymization key; without it, EDULAKE_HMAC_KEY.
        aws_credentials_block: name of a prefect-aws AwsCredentials block for an s3:// lake
            or the Glue catalog; empty: settings or the AWS default chain.
        catalog: the catalog to republish: duckdb (embedded) or glue (Athena); empty:
            EDULAKE_CATALOG__KIND.
        source: whose people: clever (sis_id, staff_id, clever_user_id) or libinsight
            (staff names as recorded in _entered_by), per edulake.sources.registry.
    """
    lake = open_lake(lake_root, np_root, aws_credentials_block, catalog)
    key = resolve_key(hmac_key_block, demo, lake=lake, source=source)
    # The suppression list, stage2p rewrites, lookups and catalog change under the lake
    # lease, so a daily run can neither write the person back nor clear forget's work.
    with hold_lake_lease(lake, "forget"):
        result = forget_people(lake, key, ids_file, source)
        cat = make_catalog(lake, catalog)
        try:
            republish(cat, lake, key.key_id, full=False, source=source)
            verify_forgotten(cat, lake, key, source)
        finally:
            cat.close()
    return result.to_json()
