"""Maintenance tasks: forget a person, rotate the pseudonymization key, republish."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from edulake.catalog import Catalog
from edulake.core.lake import Lake
from edulake.fanout import Window, pick_windows, windows_of
from edulake.privacy.forget import ForgetResult, suppressed_pseudonyms
from edulake.privacy.pseudonym import Pseudonymizer, PseudonymKey
from edulake.privacy.rotation import (
    RotationResult,
    check_rewriting,
    finish_rotation,
    prepare_rotation,
    rotate_key,
)
from edulake.sources import registry
from tasks.common import edulake_task, logger

SourceName = Literal["clever", "libinsight"]


def read_ids_file(path: str) -> list[str]:
    """Raw identifiers, one a line (blank lines and # comments ignored). Never logged."""
    with open(path, encoding="utf-8-sig") as f:
        return [s for line in f if (s := line.strip()) and not s.startswith("#")]


@edulake_task(name="forget-people", cache_policy=NO_CACHE)
def forget_people(
    lake: Lake, key: PseudonymKey, ids_file: str, source: SourceName = "clever"
) -> ForgetResult:
    """Remove the people in ``ids_file`` from stage2np, stage2p and quarantine; counts only.

    ``source`` picks the registry entry (:mod:`edulake.sources.registry`): Clever's raw
    ids (sis_id, staff_id, clever_user_id) or LibInsight's staff names (``entered_by``)."""
    ids = read_ids_file(ids_file)
    result = registry.get(source).forget(lake, ids, Pseudonymizer(key))
    log = logger()
    log.info(
        "forget: %s: %d id(s) requested, %d found nowhere; identities forgotten %s; stage2p rows "
        "removed %s (%d files rewritten, %d deleted); lookup rows removed %s; quarantine "
        "rows removed %d",
        source,
        len(ids),
        result.not_found,
        result.identities,
        result.stage2p_rows,
        result.files_rewritten,
        result.files_deleted,
        result.lookup_rows,
        result.quarantine_rows,
    )
    create_table_artifact(
        key="forget-report",
        table=[{"what": k, "count": str(v)} for k, v in result.to_json().items() if k != "changed"],
        description="What the forget request removed (counts only, never identifiers).",
    )
    return result


@edulake_task(name="rotate-key", cache_policy=NO_CACHE)
def rotate(
    lake: Lake, key: PseudonymKey, max_quarantine_share: float, source: SourceName = "clever"
) -> RotationResult:
    """Build the source's new table version with ``key`` and switch readers to it (the
    caller republishes, then finishes)."""
    result = rotate_key(
        lake, Pseudonymizer(key), max_quarantine_share=max_quarantine_share, source=source
    )
    log = logger()
    if result.nothing_to_do:
        log.info("%s already uses key %s: nothing to rotate", source, key.key_id)
    else:
        log.info(
            "rotated %s %s -> %s: %d file versions reprocessed (%d older versions rebuilt), "
            "%d other files rewritten, %d failed; table versions now %s%s",
            source,
            result.from_key_id,
            result.to_key_id,
            len(result.files),
            result.rebuilt_older_versions,
            result.rewritten,
            len(result.failed),
            result.versions or "unchanged",
            " (resumed after the switch)" if result.resumed_after_switch else "",
        )
    return result


@edulake_task(name="prepare-rotation", cache_policy=NO_CACHE)
def prepare(lake: Lake, key: PseudonymKey, source: SourceName = "clever") -> RotationResult:
    """Start a rotation for child runs (the caller holds the lake lease): the intent, the
    new table version begun, the old lookups and processed records cleared (once)."""
    result = prepare_rotation(lake, Pseudonymizer(key), source=source)
    if result.nothing_to_do:
        logger().info("%s already uses key %s: nothing to rotate", source, key.key_id)
    elif result.resumed_after_switch:
        logger().info("%s: the rotation was switched already; finishing it", source)
    else:
        logger().info("%s rotation %s -> %s prepared", source, result.from_key_id, key.key_id)
    return result


@edulake_task(name="rotation-windows", cache_policy=NO_CACHE)
def rotation_windows(lake: Lake, months_per_child: int, only: list[str] | None) -> list[Window]:
    """The month windows of the landed Clever report dates (``only``: those named)."""
    windows = pick_windows(windows_of(registry.clever_landed_dates(lake), months_per_child), only)
    logger().info(
        "%d window(s) of landed reports: %s", len(windows), ", ".join(w.label for w in windows)
    )
    return windows


@edulake_task(name="rewrite-window", cache_policy=NO_CACHE)
def rewrite_window(
    lake: Lake,
    key: PseudonymKey,
    max_quarantine_share: float,
    report_from: dt.date,
    report_to: dt.date,
) -> dict[str, int]:
    """One child's share of a fanned-out Clever rotation: the window's landed reports not
    yet in the new version, rewritten with ``key`` (the caller holds the lake lease)."""
    from tasks.clever import processing_rows

    new = Pseudonymizer(key)
    check_rewriting(lake, new, "clever")
    done = registry.clever_rewrite_window(lake, new, max_quarantine_share, report_from, report_to)
    create_table_artifact(
        key="clever-processing",
        table=processing_rows(done.files),
        description="Per landed file of this window, rewritten with the new key.",
    )
    rows = sum(f.rows_written for f in done.files)
    logger().info(
        "rewrote %d file version(s) of %s..%s with key %s (%d failed, retried by the parent)",
        len(done.files),
        report_from,
        report_to,
        key.key_id,
        len(done.failed),
    )
    return {"files": len(done.files), "failed": len(done.failed), "rows_written": rows}


@edulake_task(name="finish-rotation", cache_policy=NO_CACHE)
def finish(lake: Lake, key: PseudonymKey, source: SourceName = "clever") -> None:
    removed = finish_rotation(lake, Pseudonymizer(key), source=source)
    if removed:
        logger().info("%s: %d file(s) of retired table versions deleted", source, removed)


def republish(
    catalog: Catalog, lake: Lake, key_id: str, full: bool, source: SourceName = "clever"
) -> list[object]:
    """Bring the catalog up to date with the lake (``full``: rebuild every table), after
    the same pre-publish audit as every ordinary run, over every table it rewrote: a
    finding raises :class:`tasks.audit.LeakFound` and nothing is republished."""
    from edulake.privacy.audit import full_scope
    from tasks.audit import audit_before_publish
    from tasks.publish import publish_tables

    audit_before_publish(lake, full_scope(lake, source))
    entry = registry.get(source)
    tables = entry.catalog_tables(lake, key_id)
    return list(publish_tables(catalog, tables, views_for=entry.views_for, rebuild=full))


class ForgetIncomplete(RuntimeError):
    """The catalog still serves rows of a forgotten person after publishing."""


@edulake_task(name="verify-forgotten", cache_policy=NO_CACHE)
def verify_forgotten(
    catalog: Catalog, lake: Lake, key: PseudonymKey, source: SourceName = "clever"
) -> int:
    """Check that no catalog table holds a pseudonym on the suppression list; rows found.

    A forget request is finished only when the person is gone everywhere, the catalog
    included: a re-run that finds them nowhere in the lake still fails here until the
    catalog matches (and the run's publish step repairs it first).
    """
    pseudonyms = sorted(suppressed_pseudonyms(lake, source, Pseudonymizer(key)))
    if not pseudonyms:
        return 0
    found = 0
    for spec in registry.get(source).specs(lake):
        for col in (c for c in spec.columns if c.is_hashed):
            name = col.output_name
            for i in range(0, len(pseudonyms), 500):
                chunk = ", ".join(f"'{p}'" for p in pseudonyms[i : i + 500])  # hex: no quoting
                sql = (
                    f'SELECT COUNT(*) AS n FROM "{spec.source}"."{spec.name}" '
                    f'WHERE "{name}" IN ({chunk})'
                )
                found += int(catalog.query(sql).column("n")[0].as_py() or 0)
    if found:
        raise ForgetIncomplete(
            f"the catalog still serves {found} row(s) of forgotten people after publishing. "
            "What to do: run the forget flow again; if this persists, rebuild the catalog "
            + (
                "(python -m edulake clever on the same lake republishes from stage2p)."
                if source == "clever"
                else "(any libinsight-dataset run on the same lake republishes its table)."
            )
        )
    logger().info("verified: no catalog table holds a forgotten person's pseudonym")
    return found
