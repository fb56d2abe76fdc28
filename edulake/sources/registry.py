"""The source registry: what each source system gives the privacy layer.

One entry per source: its name (the ``source`` of its specs, its lake folders and its key
record), its table specs (from which the hashed and lookup columns follow), the catalog
tables it publishes, its ``forget`` hook, its ``rotation`` hooks (how to rebuild its
tables under a new key, :mod:`edulake.privacy.rotation`) and what the PII audit needs:
``raw_ids`` (the raw identifiers of its stage1np files) and ``inputs_of`` (the stage1np
files behind stage2p files). Erasure (:mod:`edulake.privacy.forget`), key rotation, their
verification, the republish after them and the audit (:mod:`edulake.privacy.audit`:
``edulake audit`` and every run's audit before publishing) take what they need from
here, so no privacy or maintenance code imports one source's modules to serve another.

- ``clever``: the two report specs (``daily_participation``, ``resource_usage``).
- ``libinsight``: the spec of every table with month files in the lake, from the record
  each commit writes (``_system/libinsight/<t>/table.json``), or, for tables committed
  before that record, the bundled config the table is named after plus its schema state.
  A table found by neither is an error: erasure must not skip a table it cannot read.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from edulake.catalog import CatalogTable
from edulake.core.errors import DeterministicError
from edulake.core.lake import Lake
from edulake.privacy.forget import ForgetResult, forget
from edulake.privacy.pseudonym import Pseudonymizer
from edulake.specs import TableSpec

if TYPE_CHECKING:
    from edulake.privacy.audit import AuditScope


class UnknownTableError(RuntimeError):
    """A table in the lake whose spec cannot be found (no record, no bundled config)."""


@dataclass(frozen=True)
class RotationHooks:
    """What a key rotation needs of a source (see :mod:`edulake.privacy.rotation`).

    ``rewrite(lake, key, max_quarantine_share, result)`` writes the new version of every
    table in ``tables(lake)`` (writers write there while the rewrite is in progress) and
    adds its per-file results to ``result``; ``after_switch(lake, key)`` runs once the new
    version is live (idempotent: a re-run after a kill repeats it). ``prepare(lake)``, if
    given, makes the rotation resumable: it runs once, after the new version is begun,
    and ``rewrite`` then does only what the writing version does not hold yet."""

    tables: Callable[[Lake], list[str]]
    rewrite: Callable[[Lake, Pseudonymizer, float, Any], None]
    after_switch: Callable[[Lake, Pseudonymizer], None] | None = None
    prepare: Callable[[Lake], None] | None = None


@dataclass(frozen=True)
class Source:
    """What a source provides to the privacy layer (see the module docstring)."""

    name: str
    specs: Callable[[Lake], list[TableSpec]]
    catalog_tables: Callable[[Lake, str], list[CatalogTable]]  # (lake, key id)
    forget: Callable[[Lake, list[str], Pseudonymizer], ForgetResult]
    rotation: RotationHooks
    # (lake, stage1np keys or None for all of the source's, extra configs) -> raw ids
    raw_ids: Callable[[Lake, list[str] | None, Sequence[Any]], set[str]]
    # (lake, stage2p keys, landed versions (name, sha256)) -> the stage1np keys behind them
    inputs_of: Callable[[Lake, list[str], Sequence[tuple[str, str]]], list[str]]
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


def _clever_raw_ids(lake: Lake, keys: list[str] | None, _extra: Sequence[Any] = ()) -> set[str]:
    """Identifier columns and stray header cells of Clever's stage1np CSVs (see
    :func:`edulake.privacy.audit.stage1np_csv_ids`), each read with its report's spec."""
    from edulake.core.lake import Zone
    from edulake.privacy.audit import stage1np_csv_ids
    from edulake.sources.clever.names import REPORTS

    specs = {t.name: t for t in _clever_specs(lake)}
    if keys is None:
        keys = [o.key for o in lake.list(Zone.STAGE1NP, "clever")]
    out: set[str] = set()
    for key in keys:
        parts = key.split("/")
        table = REPORTS.get(parts[1]) if len(parts) > 2 else None
        out |= stage1np_csv_ids(lake, key, specs.get(table) if table else None)
    return out


def _clever_inputs_of(
    lake: Lake, stage2p_keys: list[str], versions: Sequence[tuple[str, str]] = ()
) -> list[str]:
    """The landed files behind stage2p files (``<unit>.parquet`` is named after the
    source file's stem: the ledger's newest version of it) and behind ``versions``
    ((name, sha256) of landed files; a version no longer the newest is left out)."""
    from edulake.core.landing import Ledger
    from edulake.sources.clever.names import parse_report_name

    latest = Ledger(lake, "clever").latest()
    out = [e.path for n, sha in versions if (e := latest.get(n)) is not None and e.sha256 == sha]
    by_stem = {parse_report_name(n).stem: e for n, e in latest.items()}
    for key in stage2p_keys:
        entry = by_stem.get(key.rsplit("/", 1)[-1].removesuffix(".parquet"))
        if entry is not None:
            out.append(entry.path)
    return out


def clever_scope(files: Iterable[Any], changed: dict[str, list[str]]) -> AuditScope:
    """The audit scope of a Clever run: ``files`` are its per-file results (``name``,
    ``sha256``, ``status``, ``error``): the landed versions processed are its inputs, their
    processed records and messages are scanned with the ``changed`` partitions."""
    from edulake.privacy.audit import AuditScope
    from edulake.sources.clever.process import processed_key

    files = list(files)
    return AuditScope(
        "clever",
        changed,
        versions=[(f.name, f.sha256) for f in files],
        results=[(f"result of {f.name}", f"{f.status}: {f.error or ''}") for f in files],
        system_keys=[processed_key(f.name, f.sha256) for f in files],
    )


def _clever_tables(_lake: Lake) -> list[str]:
    return sorted(s.name for s in _clever_specs(_lake))


def _clever_prepare(lake: Lake) -> None:
    """Forget the old key's lookups and processed records (once per rotation): every
    landed report is then pending, to be reprocessed into the new version."""
    from edulake.core.faults import crashpoint
    from edulake.core.lake import Zone

    for obj in lake.list(Zone.STAGE2NP, "clever"):
        if obj.key.endswith("_lookup/lookup.parquet"):
            lake.delete(Zone.STAGE2NP, obj.key)
    lake.delete_prefix(Zone.SYSTEM, "processed/clever")
    crashpoint("rotate.cleared")


def clever_rewrite_window(
    lake: Lake,
    new: Pseudonymizer,
    share: float,
    report_from: dt.date | None = None,
    report_to: dt.date | None = None,
) -> Any:
    """Reprocess the landed reports of ``report_from..report_to`` (default: all) that the
    writing version does not hold yet; lookups merged, processed records written. Returns
    the :class:`~edulake.sources.clever.pipeline.ProcessingResult` (a re-run after a kill
    finds the recorded files done: idempotent)."""
    from edulake.sources.clever import pipeline

    entries = pipeline.pending(lake, report_from, report_to)
    return pipeline.process_pending(lake, entries, new, max_quarantine_share=share, check_key=False)


def clever_landed_dates(lake: Lake) -> list[dt.date]:
    """The report dates of every landed Clever report (newest version of each name)."""
    from edulake.core.landing import Ledger
    from edulake.sources.clever.names import parse_report_name

    names = Ledger(lake, "clever").latest_records()
    return sorted({parse_report_name(n).report_date for n in names})


class StaleSourceMissing(DeterministicError):
    """Live stage2p files come from raw versions the ledger no longer holds."""


def _clever_rewrite(lake: Lake, new: Pseudonymizer, share: float, result: Any) -> None:
    """Reprocess every landed report not yet in the new version (after
    :func:`_clever_prepare`: all of them on a first run, the rest after a kill).

    The newest version of each report first; then any older version whose output the
    live version still serves (its newer version failed) is rebuilt from its own raw
    file (``edulake.source_sha256``), as the live table holds it. Lookups and processed
    records are rebuilt on the way."""
    from edulake.core.faults import crashpoint
    from edulake.core.landing import Ledger
    from edulake.privacy.rotation import stage2p_key_ids
    from edulake.sources.clever import pipeline

    live_shas = {sha for _, sha in stage2p_key_ids(lake, "clever").values()}
    done = clever_rewrite_window(lake, new, share)
    result.files += done.files
    crashpoint("rotate.reprocessed")
    written = {sha for _, sha in stage2p_key_ids(lake, "clever", writing=True).values()}
    stale = live_shas - written
    if stale:
        by_sha = {e.sha256: e for e in Ledger(lake, "clever").entries()}
        missing = sorted(stale - set(by_sha))
        if missing:
            raise StaleSourceMissing(
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


def _libinsight_raw_ids(lake: Lake, keys: list[str] | None, extra: Sequence[Any] = ()) -> set[str]:
    """Protected fields (and unlisted identifier-named ones) of the landed raw pages."""
    from edulake.privacy.audit import libinsight_configs, libinsight_ids

    return libinsight_ids(lake, libinsight_configs(lake, extra), keys)


def _libinsight_inputs_of(
    _lake: Lake, _stage2p_keys: list[str], _versions: Sequence[tuple[str, str]] = ()
) -> list[str]:
    """A month file is made from every page ever fetched for its month: not traced. The
    audit still has the run's own pages and every identity in the lookups."""
    return []


def libinsight_scope(
    table: str, months: Iterable[str], pages: Iterable[str], export_key: str | None
) -> AuditScope:
    """The audit scope of a LibInsight run: the month files it rewrote, the raw pages
    it read (``pages``: stage1np keys) and its CSV export."""
    from edulake.privacy.audit import AuditScope

    return AuditScope(
        "libinsight",
        {table: sorted(months)},
        inputs=sorted(pages),
        exports=[export_key] if export_key else [],
    )


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
        raw_ids=_clever_raw_ids,
        inputs_of=_clever_inputs_of,
        rotation=RotationHooks(_clever_tables, _clever_rewrite, prepare=_clever_prepare),
        views_for="clever",
    ),
    Source(
        "libinsight",
        _libinsight_specs,
        _libinsight_catalog_tables,
        _libinsight_forget,
        raw_ids=_libinsight_raw_ids,
        inputs_of=_libinsight_inputs_of,
        rotation=RotationHooks(_libinsight_tables, _libinsight_rewrite, _libinsight_after_switch),
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
