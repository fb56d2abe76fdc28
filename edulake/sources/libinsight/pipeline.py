"""The LibInsight pipeline's steps as plain functions (the Prefect tasks wrap these)."""

from __future__ import annotations

import datetime as dt
import json
import time
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from edulake.core.faults import crashpoint
from edulake.core.lake import Lake, Zone
from edulake.core.settings import get_settings
from edulake.core.versions import abandon_rewrite, purge_retired
from edulake.privacy.forget import mentions, read_suppressed
from edulake.privacy.keys import ensure_key
from edulake.privacy.lookup import merge_lookup
from edulake.privacy.pseudonym import Pseudonymizer
from edulake.sources.libinsight.api import LibInsightClient
from edulake.sources.libinsight.config import DatasetConfig
from edulake.sources.libinsight.store import (
    LandedPage,
    PageLander,
    export_csv,
    read_page_records,
    read_schema_state,
    write_months,
    write_schema_state,
    write_table_record,
)
from edulake.sources.libinsight.transform import DriftReport, TransformResult, transform
from edulake.sources.libinsight.windows import Window
from edulake.specs import TableSpec


@dataclass
class FetchResult:
    """Pages fetched and landed for a range."""

    pages: list[LandedPage] = field(default_factory=list)
    records: int = 0
    seconds: float = 0.0
    requests: int = 0
    retries: int = 0
    token_fetches: int = 0
    duplicate_ids: int = 0
    empty_pages: list[str] = field(default_factory=list)
    restarts: int = 0

    @property
    def keys(self) -> list[str]:
        return [p.key for p in self.pages]

    def summary(self) -> dict[str, Any]:
        landed = sum(1 for p in self.pages if p.outcome in ("landed", "new-version"))
        return {
            "pages": len(self.pages),
            "pages landed (new content)": landed,
            "records": self.records,
            "requests": self.requests,
            "retries": self.retries,
            "token fetches": self.token_fetches,
            "duplicate ids": self.duplicate_ids,
            "empty pages": len(self.empty_pages),
            "fetches started over": self.restarts,
            "seconds": round(self.seconds, 2),
        }


def fetch_and_land(
    client: LibInsightClient,
    lake: Lake,
    dataset_id: int,
    windows: list[Window],
    *,
    request_id: int | str | None = None,
    concurrency: int = 8,
    rps: float | None = None,
    flow_run_id: str | None = None,
) -> FetchResult:
    """Fetch every page of every window and land each raw page as it arrives."""
    out = FetchResult()
    started = time.monotonic()
    for window in windows:
        lander = PageLander(lake, dataset_id, window, flow_run_id)
        _, stats = client.data_grid(
            dataset_id,
            window,
            request_id=request_id,
            concurrency=concurrency,
            rps=rps,
            on_page=lander,
            keep=False,
            on_restart=lander.reset,
        )
        out.pages += lander.pages
        out.records += stats.records
        out.duplicate_ids += stats.duplicate_ids
        out.empty_pages += [f"{window} page {n}" for n in stats.empty_pages]
        out.restarts += stats.restarts
    out.seconds = time.monotonic() - started
    out.requests = client.http.stats["requests"]
    out.retries = client.http.stats["retries"]
    out.token_fetches = client.auth.fetched
    return out


class DriftError(RuntimeError):
    """Schema drift that fails the run (``on_drift: error``): names fields, never values."""

    def __init__(self, table: str, errors: list[str]):
        self.table, self.errors = table, errors
        super().__init__(
            f"schema drift in libinsight.{table}, nothing written (the raw pages are in "
            f"stage1np; the watermark did not move): " + " | ".join(errors)
        )


@dataclass
class ProcessResult:
    """What processing a fetched range wrote."""

    spec: TableSpec
    records: int
    rows: int
    months: dict[str, int]
    drift: DriftReport
    lookups: dict[str, int]
    export_key: str
    export_rows: int
    quarantine_key: str | None = None
    quarantined: int = 0
    suppressed: int = 0  # rows and quarantined records of forgotten people, dropped


def drop_suppressed(
    lake: Lake, source: str, result: TransformResult, pseudonymizer: Pseudonymizer
) -> int:
    """Drop the rows, identities and rejected records of forgotten people (in place).

    The suppression list (:mod:`edulake.privacy.forget`) holds raw values: their
    pseudonyms under this run's key leave the table and the lookups, and a rejected
    record mentioning one of them never reaches the quarantine. Returns how many went.
    """
    listed = read_suppressed(lake, source)
    values = {v for v in listed["value"].to_pylist() if v}
    if not values:
        return 0
    pseudos = pa.array(sorted({pseudonymizer.pseudonym(v) for v in values}), pa.string())
    table = result.table
    drop = pa.array([False] * table.num_rows, pa.bool_())
    for c in result.spec.columns:
        if c.is_hashed and c.output_name in table.column_names:
            hit = pc.fill_null(pc.is_in(table[c.output_name], value_set=pseudos), False)
            drop = pc.or_(drop, hit)
    dropped = int(pc.sum(pc.cast(drop, pa.int64())).as_py() or 0)
    if dropped:
        result.table = table.filter(pc.invert(drop))
    for col, seen in list(result.identities.items()):
        result.identities[col] = seen.filter(
            pc.invert(pc.fill_null(pc.is_in(seen["pseudonym"], value_set=pseudos), False))
        )
    kept = [r for r in result.rejected if not mentions(r.get("record"), values)]
    dropped += len(result.rejected) - len(kept)
    result.rejected = kept
    return dropped


def process_range(
    lake: Lake,
    cfg: DatasetConfig,
    page_keys: list[str],
    window: Window,
    pseudonymizer: Pseudonymizer,
    today: dt.date | None = None,
    *,
    table: str | None = None,
) -> ProcessResult:
    """Raw pages -> typed rows -> month files, lookups, schema state, CSV export.

    ``table`` is the dataset's table (:meth:`DatasetConfig.table_name`; the flow always
    passes it, the config's name is only a default for direct calls): its month files,
    schema state, quarantine and export are its own. Drift errors raise
    :class:`DriftError` before anything is written, unless the config says
    ``on_drift: warn``.

    Privacy, as for Clever: the key check (:func:`edulake.privacy.keys.ensure_key`,
    source ``libinsight``) comes before anything is read or written, so a run with another
    key is refused with nothing written; every month file carries ``edulake.key_id``; and
    the rows of forgotten people (the suppression list, read now: the caller holds the
    lake lease) are dropped before the months, lookups, quarantine and export are written.
    """
    table = table or cfg.name
    ensure_key(lake, cfg.source, pseudonymizer.key_id)
    abandon_rewrite(lake, cfg.source)  # a rewrite a killed erasure left
    purge_retired(lake, cfg.source, get_settings().versions.grace_s)  # past their grace
    records = read_page_records(lake, page_keys)
    state = read_schema_state(lake, table)
    result = transform(records, cfg, state, pseudonymizer, today, table=table)
    if result.drift.errors and cfg.on_drift == "error":
        raise DriftError(table, result.drift.errors)
    suppressed = drop_suppressed(lake, cfg.source, result, pseudonymizer)
    write_table_record(lake, result.spec, cfg.name)
    months = write_months(
        lake,
        result.spec,
        result.table,
        window,
        cfg.id_column,
        cfg.date_column,
        key_id=pseudonymizer.key_id,
    )
    lookups = {
        col: merge_lookup(lake, cfg.source, col, seen, pseudonymizer.key_id)
        for col, seen in result.identities.items()
        if seen.num_rows
    }
    crashpoint("libinsight.lookups_merged")
    write_schema_state(lake, table, result.state)
    quarantine_key = quarantine_records(lake, cfg.source, table, window, result.rejected)
    export_key, export_rows = export_csv(lake, result.spec)
    return ProcessResult(
        spec=result.spec,
        records=len(records),
        rows=result.table.num_rows,
        months=months,
        drift=result.drift,
        lookups=lookups,
        export_key=export_key,
        export_rows=export_rows,
        quarantine_key=quarantine_key,
        quarantined=len(result.rejected),
        suppressed=suppressed,
    )


def quarantine_records(
    lake: Lake, source: str, table: str, window: Window, rejected: list[dict[str, Any]]
) -> str | None:
    """Records not kept, raw, with the reason, as JSON lines under the protected root.

    Nothing is lost: the raw pages stay in stage1np too. One file per fetched range, so a
    re-run of the same range replaces it (and a clean re-run removes it).
    """
    key = f"{source}/{table}/{window}.jsonl".replace("..", "_to_")
    if not rejected:
        if lake.exists(Zone.QUARANTINE, key):
            lake.delete(Zone.QUARANTINE, key)  # the records were repaired upstream
        return None
    body = "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in rejected)
    lake.write_bytes(Zone.QUARANTINE, key, body.encode("utf-8"))
    return key
