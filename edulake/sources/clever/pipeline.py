"""The Clever pipeline's steps as plain functions: discover, land, process.

The Prefect tasks in ``tasks/clever.py`` wrap these; tests call them directly.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from edulake.catalog import CatalogTable
from edulake.connectors.files import (
    FileSource,
    Misplaced,
    ScannableSource,
    SourceRootError,
    find_misplaced,
)
from edulake.core.faults import crashpoint
from edulake.core.index import RecordIndex
from edulake.core.lake import Lake, Zone
from edulake.core.landing import LandingResult, Ledger, LedgerEntry, SourceFile, land_file
from edulake.core.memory import trim_memory
from edulake.core.settings import get_settings
from edulake.core.versions import abandon_rewrite, is_version_segment, purge_retired
from edulake.privacy.forget import suppressed_pseudonyms
from edulake.privacy.keys import ensure_key
from edulake.privacy.lookup import IdentityTracker, lookup_catalog_table, merge_lookup
from edulake.privacy.pseudonym import Pseudonymizer
from edulake.sources.clever.decisions import decided
from edulake.sources.clever.names import (
    EXPECTED_LAYOUT,
    FOLDERS,
    NotAReport,
    ReportName,
    is_report_path,
    landing_key,
    looks_like_report,
    parse_report_name,
)
from edulake.sources.clever.process import (
    SOURCE,
    FileResult,
    process_file,
    processed_key,
    remove_stale_outputs,
)
from edulake.specs import TableSpec, load_spec

log = logging.getLogger(__name__)
_T = TypeVar("_T")
_R = TypeVar("_R")


def specs() -> dict[str, TableSpec]:
    """The Clever report specs by table name."""
    return {n: load_spec(SOURCE, n) for n in ("daily_participation", "resource_usage")}


@dataclass
class Discovery:
    """Files a source offers: the reports to consider and everything ignored, with why."""

    reports: list[tuple[SourceFile, ReportName]] = field(default_factory=list)
    ignored: list[tuple[str, str]] = field(default_factory=list)
    out_of_range: int = 0
    # files that look meant for the pipeline but are not where Clever puts reports
    misplaced: list[Misplaced] = field(default_factory=list)
    missing_folders: list[str] = field(default_factory=list)  # report folders absent
    # report dates on offer per report, date range or not (freshness looks at all of them)
    available: dict[str, set[dt.date]] = field(default_factory=dict)

    def misplaced_message(self, limit: int = 20) -> str | None:
        """One line listing every misplaced file (the first ``limit``), or None."""
        if not self.misplaced:
            return None
        shown = "; ".join(f"{m.path} ({m.why})" for m in self.misplaced[:limit])
        more = len(self.misplaced) - limit
        return (
            f"{len(self.misplaced)} file(s) are not where Clever puts reports, so they were "
            f"not landed: {shown}{f'; and {more} more' if more > 0 else ''}. "
            f"Expected layout: {EXPECTED_LAYOUT}"
        )


def discover(
    source: FileSource, report_from: dt.date | None = None, report_to: dt.date | None = None
) -> Discovery:
    """List the report folders and keep well-formed report names in the date range.

    A source over a real place is scanned first: a missing, unreadable or empty root,
    one holding none of the report folders, or an SFTP root missing any of them, is a
    :class:`SourceRootError`; files in the wrong places are collected once in
    ``misplaced`` (not also in ``ignored``).
    """
    found = Discovery()
    if isinstance(source, ScannableSource):
        tree = source.scan()
        found.misplaced = find_misplaced(tree.files, FOLDERS, is_report_path, looks_like_report)
        found.missing_folders = [f for f in FOLDERS if f not in tree.folders]
        hint = found.misplaced_message() or f"Expected layout: {EXPECTED_LAYOUT}"
        if len(found.missing_folders) == len(FOLDERS):
            raise SourceRootError(
                f"{tree.root} holds none of Clever's report folders "
                f"({', '.join(f + '/' for f in FOLDERS)}): is the path right? {hint}"
            )
        if found.missing_folders and tree.server:
            # Clever's server always has both report folders: a missing one is a wrong root
            raise SourceRootError(
                f"{tree.root} has no {', '.join(f + '/' for f in found.missing_folders)} "
                f"folder: Clever's server always has every report folder; is the root "
                f"right? {hint}"
            )
    near = {m.path for m in found.misplaced}
    for f in source.list_files(FOLDERS):
        try:
            name = parse_report_name(f.name)
        except NotAReport as exc:
            if f.name not in near:
                found.ignored.append((f.name, str(exc)))
            continue
        found.available.setdefault(name.report, set()).add(name.report_date)
        if (report_from and name.report_date < report_from) or (
            report_to and name.report_date > report_to
        ):
            found.out_of_range += 1
            continue
        found.reports.append((f, name))
    return found


def land_reports(
    lake: Lake,
    source: FileSource,
    reports: list[tuple[SourceFile, ReportName]],
    *,
    concurrency: int = 4,
    flow_run_id: str | None = None,
    on_done: Callable[[LandingResult], None] | None = None,
    now: dt.datetime | None = None,
) -> list[LandingResult]:
    """Land every offered report not already in the ledger (I/O bound: a bounded pool).

    ``now`` fixes the landing time (tests; default: the clock).
    """
    ledger = Ledger(lake, SOURCE)

    def one(item: tuple[SourceFile, ReportName]) -> LandingResult:
        f, name = item
        result = land_file(
            lake,
            ledger,
            f,
            source.open,
            lambda _f, day: landing_key(name, day),
            attrs={"report": name.report, "role": name.role, "report_date": str(name.report_date)},
            flow_run_id=flow_run_id,
            now=now,
        )
        if on_done:
            on_done(result)
        return result

    errors: list[BaseException] = []

    def guarded(item: tuple[SourceFile, ReportName]) -> LandingResult | None:
        # One bad file must not stop the others: land what can be landed, then fail.
        try:
            return one(item)
        except FileNotFoundError:
            log.warning("%s vanished from the source before it was landed", item[0].name)
            return LandingResult(item[0].name, "vanished", None, None)
        except Exception as exc:
            errors.append(exc)
            return None

    results = _map(guarded, reports, concurrency, "land")
    if errors:
        landed = sum(1 for r in results if r is not None and r.landed)
        raise LandingFailed(
            f"{len(errors)} of {len(reports)} files could not be landed ({landed} landed this "
            f"attempt and are kept): {errors[0]}"
        ) from errors[0]
    return [r for r in results if r is not None]


class LandingFailed(RuntimeError):
    """Some files could not be landed; the others were."""


def _map(fn: Callable[[_T], _R], items: list[_T], workers: int, name: str) -> list[_R]:
    """``fn`` over ``items`` in order: in a bounded thread pool, or inline for one worker."""
    if workers <= 1 or len(items) <= 1:
        return [fn(i) for i in items]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name) as pool:
        return list(pool.map(fn, items))


def pending(
    lake: Lake, report_from: dt.date | None = None, report_to: dt.date | None = None
) -> list[LedgerEntry]:
    """Newest landed version of each report file that has not been processed yet.

    Versions skipped by decision (:mod:`edulake.sources.clever.decisions`) are left out:
    they stay in stage1np, unprocessed, and the run summary lists them.
    """
    head = len(f"processed/{SOURCE}/")
    processed = {
        tuple(k[head : -len(".json")].rsplit("/", 1)) for k in processed_index(lake).load().records
    }
    skipped = decided(lake)
    out = []
    for name, record in sorted(Ledger(lake, SOURCE).latest_records().items()):
        version = (name, record["sha256"])
        if version in processed or version in skipped:
            continue  # a long history: only what is pending is parsed and converted
        day = parse_report_name(name).report_date
        if (report_from and day < report_from) or (report_to and day > report_to):
            continue
        out.append(LedgerEntry.from_json(record))
    return out


@dataclass
class ProcessingResult:
    """What processing a set of landed files did."""

    files: list[FileResult]
    changed: dict[str, list[str]]  # table -> partition values written or removed
    lookups: dict[str, int]  # lookup column -> rows in the merged lookup
    stale_removed: int = 0

    @property
    def failed(self) -> list[FileResult]:
        return [f for f in self.files if f.status not in ("processed", "empty")]


def process_pending(
    lake: Lake,
    entries: list[LedgerEntry],
    pseudonymizer: Pseudonymizer,
    *,
    max_quarantine_share: float = 0.01,
    workers: int | None = None,
    on_done: Callable[[FileResult], None] | None = None,
    check_key: bool = True,
) -> ProcessingResult:
    """Process landed files, merge the identity lookups, then record what was processed.

    Refuses (before writing anything) a key that differs from the lake's. ``changed``
    (the partitions this run wrote or removed) is for reports and events only: publishing
    compares the catalog with the lake itself, so nothing needs to be remembered for a
    run killed before publishing.
    """
    if check_key:
        ensure_key(lake, SOURCE, pseudonymizer.key_id)
        # (the caller holds the lake lease) a rewrite a killed erasure left is dropped,
        # and table versions retired past their grace period are deleted
        abandon_rewrite(lake, SOURCE)
        purge_retired(lake, SOURCE, get_settings().versions.grace_s)
    table_specs = specs()
    suppressed = suppressed_pseudonyms(lake, SOURCE, pseudonymizer)
    lookup_cols = sorted({c.name for s in table_specs.values() for c in s.lookup_columns})
    trackers = {c: IdentityTracker(pseudonymizer.key_id, pseudonymizer) for c in lookup_cols}

    def one(entry: LedgerEntry) -> FileResult:
        spec = table_specs[parse_report_name(entry.name).table]
        result = process_file(
            lake,
            entry,
            spec,
            pseudonymizer,
            trackers,
            max_quarantine_share=max_quarantine_share,
            suppressed=suppressed,
        )
        trim_memory()
        if on_done:
            on_done(result)
        return result

    workers = workers or get_settings().processing.workers
    results = _map(one, entries, workers, "process")
    # Hand Arrow's cached buffers back before the lookups and the catalog publish, which
    # would otherwise stack their own memory on top of it (once per run: cheap).
    trim_memory(limit=0)

    lookups = {
        col: merge_lookup(lake, SOURCE, col, t.table(), pseudonymizer.key_id)
        for col, t in trackers.items()
    }
    crashpoint("process.lookups_merged")
    changed: dict[str, set[str]] = {}
    done = []
    for entry, res in zip(entries, results, strict=True):
        if res.status not in ("processed", "empty"):
            continue  # not recorded: reported now, retried next run
        previous = _previous_record(lake, entry)
        parts = changed.setdefault(res.table, set())
        parts.update(res.partitions)
        if previous:
            parts.update(_partitions_of(previous.get("outputs", [])))
        done.append((entry, res, previous))
    stale = 0
    index = processed_index(lake)
    for entry, res, previous in done:
        stale += remove_stale_outputs(lake, previous, res)
        crashpoint("process.recording")
        record = res.to_json() | {
            "key_id": pseudonymizer.key_id,
            "path": entry.path,
            "processed_at": dt.datetime.now(dt.UTC).isoformat(),
        }
        key = processed_key(entry.name, entry.sha256)
        lake.write_json(Zone.SYSTEM, key, record)
        crashpoint("process.recorded")
        index.add(key, record)  # after the record: the index never claims more
    compact_state(lake)
    return ProcessingResult(results, {t: sorted(p) for t, p in changed.items()}, lookups, stale)


def processed_index(lake: Lake) -> RecordIndex:
    """The index of the processed records (their keys are what ``pending`` needs)."""
    return RecordIndex(lake, f"processed/{SOURCE}", slim=_slim_processed)


def _slim_processed(record: dict[str, Any]) -> dict[str, Any]:
    return {k: record.get(k) for k in ("name", "sha256", "status", "processed_at")}


def compact_state(lake: Lake) -> dict[str, bool]:
    """Fold this run's ledger and processed journals into their manifests (end of a run,
    under the lake lease); which were rewritten. Free when nothing changed."""
    out = {"ledger": Ledger(lake, SOURCE).compact()}
    out["processed"] = processed_index(lake).compact()
    return out


def _previous_record(lake: Lake, entry: LedgerEntry) -> dict[str, Any] | None:
    """The processed record of the newest earlier version of the same file, if any."""
    prefix = f"processed/{SOURCE}/{entry.name}"
    records = [
        lake.read_json(Zone.SYSTEM, o.key)
        for o in lake.list(Zone.SYSTEM, prefix)
        if not o.key.endswith(f"/{entry.sha256}.json")
    ]
    return max(records, key=lambda r: r.get("processed_at", ""), default=None) if records else None


def _partitions_of(keys: list[str]) -> set[str]:
    out = set()
    for key in keys:
        for seg in key.split("/"):
            if "=" in seg and not is_version_segment(seg):
                out.add(seg.split("=", 1)[1])
    return out


def catalog_tables(lake: Lake, key_id: str) -> list[CatalogTable]:
    """The Clever tables to publish: the stage2p tables, then the stage2np lookups."""
    props = {"key_id": key_id, "source": SOURCE}
    out = [CatalogTable.from_spec(lake, s, props) for s in specs().values()]
    for col in sorted({c.name for s in specs().values() for c in s.lookup_columns}):
        out.append(lookup_catalog_table(lake, SOURCE, col, key_id))
    return out
