"""The source registry: what each source system gives the privacy layer.

One entry per source: its name (the ``source`` of its specs, its lake folders and its key
record), its table specs (from which the hashed and lookup columns follow), the catalog
tables it publishes, its ``forget`` hook and its ``rotation`` hooks (how to rebuild its
tables under a new key, :mod:`edulake.privacy.rotation`). Erasure
(:mod:`edulake.privacy.forget`), key rotation, their verification and the republish after
them take what they need from here, so no maintenance code imports one source's modules
to serve another.

- ``clever``: the two report specs (``daily_participation``, ``resource_usage``).
- ``libinsight``: the spec of every table with month files in the lake, from the record
  each commit writes (``_system/libinsight/<t>/table.json``), or, for tables committed
  before that record, the bundled config the table is named after plus its schema state.
  A table found by neither is an error: erasure must not skip a table it cannot read.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from edulake.catalog import CatalogTable
from edulake.core.lake import Lake
from edulake.privacy.forget import ForgetResult, forget
from edulake.privacy.pseudonym import Pseudonymizer
from edulake.specs import TableSpec


class UnknownTableError(RuntimeError):
    """A table in the lake whose spec cannot be found (no record, no bundled config)."""


@dataclass(frozen=True)
class RotationHooks:
    """What a key rotation needs of a source (see :mod:`edulake.privacy.rotation`).

    ``rewrite(lake, key, max_quarantine_share, result)`` writes the new version of every
    table in ``tables(lake)`` (writers write there while the rewrite is in progress) and
    adds its per-file results to ``result``; ``after_switch(lake, key)`` runs once the new
    version is live (idempotent: a re-run after a kill repeats it)."""

    tables: Callable[[Lake], list[str]]
    rewrite: Callable[[Lake, Pseudonymizer, float, Any], None]
    after_switch: Callable[[Lake, Pseudonymizer], None] | None = None


@dataclass(frozen=True)
class Source:
    """What a source provides to the privacy layer (see the module docstring)."""

    name: str
    specs: Callable[[Lake], list[TableSpec]]
    catalog_tables: Callable[[Lake, str], list[CatalogTable]]  # (lake, key id)
    forget: Callable[[Lake, list[str], Pseudonymizer], ForgetResult]
    rotation: RotationHooks
    views_for: str | None = None  # the views folder published with the tables

    def hashed_columns(self, lake: Lake) -> list[str]:
        return sorted({c.name for s in self.specs(lake) for c in s.columns if c.is_hashed})

    def lookup_columns(self, lake: Lake) -> list[str]:
        return sorted({c.name for s in self.specs(lake) for c in s.lookup_columns})


# -- clever ------------------------------------------------------------------------------


def _clever_specs(_lake: Lake) -> list[TableSpec]:
    from edulake.sources.clever import pipeline

    return list(pipeline.specs().values())


def _clever_catalog_tables(lake: Lake, key_id: str) -> list[CatalogTable]:
    from edulake.sources.clever import pipeline

    return pipeline.catalog_tables(lake, key_id)


def _clever_forget(lake: Lake, raw_ids: list[str], pseudonymizer: Pseudonymizer) -> ForgetResult:
    return forget(lake, "clever", raw_ids, pseudonymizer, _clever_specs(lake))


def _clever_tables(_lake: Lake) -> list[str]:
    return sorted(s.name for s in _clever_specs(_lake))


def _clever_rewrite(lake: Lake, new: Pseudonymizer, share: float, result: Any) -> None:
    """Reprocess every landed report from stage1np into the new version.

    The newest version of each report first; then any older version whose output the
    live version still serves (its newer version failed) is rebuilt from its own raw
    file (``edulake.source_sha256``), as the live table holds it. Lookups and processed
    records are rebuilt on the way."""
    from edulake.core.faults import crashpoint
    from edulake.core.lake import Zone
    from edulake.core.landing import Ledger
    from edulake.privacy.rotation import stage2p_key_ids
    from edulake.sources.clever import pipeline

    live_shas = {sha for _, sha in stage2p_key_ids(lake, "clever").values()}
    for obj in lake.list(Zone.STAGE2NP, "clever"):
        if obj.key.endswith("_lookup/lookup.parquet"):
            lake.delete(Zone.STAGE2NP, obj.key)
    lake.delete_prefix(Zone.SYSTEM, "processed/clever")
    crashpoint("rotate.cleared")
    done = pipeline.process_pending(
        lake, pipeline.pending(lake), new, max_quarantine_share=share, check_key=False
    )
    result.files += done.files
    crashpoint("rotate.reprocessed")
    written = {sha for _, sha in stage2p_key_ids(lake, "clever", writing=True).values()}
    stale = live_shas - written
    if stale:
        by_sha = {e.sha256: e for e in Ledger(lake, "clever").entries()}
        missing = sorted(stale - set(by_sha))
        if missing:
            raise RuntimeError(
                f"{len(missing)} live stage2p file(s) come from source versions missing from "
                "the ledger, so they cannot be rebuilt with the new key (nothing was "
                "switched): restore the raw files, then re-run the rotation"
            )
        older = [by_sha[s] for s in sorted(stale)]
        again = pipeline.process_pending(
            lake, older, new, max_quarantine_share=1.0, check_key=False
        )
        result.files += again.files
        result.rebuilt_older_versions = len(older)


# -- libinsight --------------------------------------------------------------------------

LIBINSIGHT_PROPS = {"source": "LibInsight"}  # as flows/libinsight_dataset.py publishes


def _libinsight_specs(lake: Lake) -> list[TableSpec]:
    from edulake.privacy.audit import bundled_dataset_configs
    from edulake.sources.libinsight.store import (
        lake_tables,
        read_schema_state,
        read_table_record,
    )

    out = []
    configs = {c.name: c for c in bundled_dataset_configs()}
    for table in lake_tables(lake):
        spec = read_table_record(lake, table)
        if spec is None:
            base, _, dataset = table.rpartition("_")
            cfg = configs.get(table) or (configs.get(base) if dataset.isdigit() else None)
            if cfg is None:
                raise UnknownTableError(
                    f"stage2p/libinsight/{table} has no table record and no bundled config "
                    "of that name: run its libinsight-dataset deployment once (any range) "
                    "to record its spec, then retry"
                )
            spec = cfg.table_spec(read_schema_state(lake, table).outputs(), table=table)
        out.append(spec)
    return out


def _libinsight_catalog_tables(lake: Lake, key_id: str) -> list[CatalogTable]:
    props = {"key_id": key_id, **LIBINSIGHT_PROPS}
    return [CatalogTable.from_spec(lake, s, props) for s in _libinsight_specs(lake)]


def _libinsight_forget(
    lake: Lake, raw_ids: list[str], pseudonymizer: Pseudonymizer
) -> ForgetResult:
    """Forget staff by name, then rebuild every table's CSV export from stage2p.

    Every export is rebuilt, not only the tables changed now: a request interrupted after
    its stage2p rewrite and re-run finds nothing left to change there."""
    from edulake.sources.libinsight.store import export_csv

    specs = _libinsight_specs(lake)
    result = forget(lake, "libinsight", raw_ids, pseudonymizer, specs)
    for spec in specs:
        export_csv(lake, spec)
    return result


def _libinsight_tables(lake: Lake) -> list[str]:
    from edulake.sources.libinsight.store import lake_tables

    return lake_tables(lake)


def _libinsight_rewrite(lake: Lake, new: Pseudonymizer, _share: float, result: Any) -> None:
    from edulake.sources.libinsight.rotate import rewrite_tables

    result.rewritten = rewrite_tables(lake, _libinsight_specs(lake), new)


def _libinsight_after_switch(lake: Lake, new: Pseudonymizer) -> None:
    from edulake.sources.libinsight.rotate import after_switch

    after_switch(lake, _libinsight_specs(lake), new)


_SOURCES = (
    Source(
        "clever",
        _clever_specs,
        _clever_catalog_tables,
        _clever_forget,
        RotationHooks(_clever_tables, _clever_rewrite),
        views_for="clever",
    ),
    Source(
        "libinsight",
        _libinsight_specs,
        _libinsight_catalog_tables,
        _libinsight_forget,
        RotationHooks(_libinsight_tables, _libinsight_rewrite, _libinsight_after_switch),
    ),
)


def registered() -> list[Source]:
    """Every source the privacy layer serves: Clever, LibInsight."""
    return list(_SOURCES)


def get(name: str) -> Source:
    for s in _SOURCES:
        if s.name == name:
            return s
    raise KeyError(f"unknown source {name!r}: use {', '.join(s.name for s in _SOURCES)}")
