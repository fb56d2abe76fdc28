"""Erasure: remove a person from stage2np and stage2p, and keep them out.

A request names raw identifiers (a ``sis_id``/``staff_id`` or a ``clever_user_id``).
They are looked up in the stage2np lookups (and hashed with the lake's key, so ids that
never reached a lookup are found too), extended to the person's linked identities (the
other hashed columns on their stage2p rows: forgetting a sis_id also forgets the
clever_user_id on the same rows), then:

1. the raw values are added to the **suppression list** (protected root,
   ``stage2np/<source>/_suppressed/suppressed.parquet``) - first, so a crash half-way
   is repaired by re-running, and so processing drops their rows from every file landed
   or reprocessed later (a re-delivered report or a key rotation never resurrects them);
2. every table holding their rows gets a new **table version**
   (:mod:`edulake.core.versions`): the files holding their rows rewritten without them
   (a file left empty is left out), the others copied; readers switch to it in one step,
   and the old version is deleted right after the switch (no grace period for erasure);
3. their rows are removed from the lookups and from quarantine files.

The same code serves every source: what it needs of one (its name and table specs: the
hashed columns, the lookups) comes from the source registry (:mod:`edulake.sources.registry`).
Quarantine files are Clever's CSVs and LibInsight's JSON lines (``{"reason", "record"}``):
a JSON line goes when any string in its record is one of the forgotten values (a staff
name is several words, so JSON is matched by value, CSV by token).

The lake's key is checked first (:func:`edulake.privacy.keys.ensure_key`): with another
key no pseudonym would match, so lookups would lose the person while stage2p kept them.

stage1np keeps the raw files unchanged: they are the legal record of what was received
(delete them by your retention policy); the suppression list keeps them from coming back.
Counts are reported; raw values are never logged.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from edulake.core.faults import crashpoint
from edulake.core.lake import Lake, Zone
from edulake.core.versions import (
    begin_rewrite,
    copy_file,
    is_version_segment,
    purge_retired,
    read_prefix,
    switch,
    table_keys,
    write_prefix,
)
from edulake.privacy.keys import ensure_key
from edulake.privacy.lookup import lookup_key, read_lookup
from edulake.privacy.pseudonym import Pseudonymizer
from edulake.specs import TableSpec

SUPPRESSED_SCHEMA = pa.schema(
    [
        pa.field("column", pa.string()),
        pa.field("value", pa.string()),
        pa.field("forgotten_at", pa.string()),
    ]
)
_TOKEN = re.compile(r"[^\s,;\"'|<>(){}\[\]=:\\]+")


def suppressed_key(source: str) -> str:
    return f"{source}/_suppressed/suppressed.parquet"


def read_suppressed(lake: Lake, source: str) -> pa.Table:
    """The suppression list: (column, raw value, forgotten_at), empty when none."""
    key = suppressed_key(source)
    if not lake.exists(Zone.STAGE2NP, key):
        return SUPPRESSED_SCHEMA.empty_table()
    with lake.open_input_file(Zone.STAGE2NP, key) as f:
        return pq.read_table(f).cast(SUPPRESSED_SCHEMA)


def suppressed_pseudonyms(lake: Lake, source: str, pseudonymizer: Pseudonymizer) -> set[str]:
    """Pseudonyms (under the current key) whose rows processing must drop."""
    values = set(read_suppressed(lake, source)["value"].to_pylist())
    return {pseudonymizer.pseudonym(v) for v in values if v}


@dataclass
class ForgetResult:
    """What a forget request removed (counts only: no identifiers)."""

    identities: dict[str, int] = field(default_factory=dict)  # column -> identities forgotten
    stage2p_rows: dict[str, int] = field(default_factory=dict)  # table -> rows removed
    files_rewritten: int = 0
    files_deleted: int = 0
    lookup_rows: dict[str, int] = field(default_factory=dict)
    quarantine_rows: int = 0
    export_rows: int = 0  # rows of query extracts (exports/athena/) removed
    changed: dict[str, list[str]] = field(default_factory=dict)  # table -> partitions
    not_found: int = 0  # requested ids found nowhere

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def forget(
    lake: Lake,
    source: str,
    raw_ids: list[str],
    pseudonymizer: Pseudonymizer,
    specs: list[TableSpec],
) -> ForgetResult:
    """Remove the people behind ``raw_ids`` from stage2np, stage2p and quarantine.

    Refuses (before any change) a key that is not the one the source's tables use."""
    ensure_key(lake, source, pseudonymizer.key_id, record=False)
    # Retired table versions (kept a grace period after a key rotation, their pseudonyms
    # under the old key) go first: erasure does not wait for the grace period.
    purge_retired(lake, source, None)
    hashed = sorted({c.name for s in specs for c in s.columns if c.is_hashed})
    lookups = {c: t for c in hashed if (t := _lookup(lake, source, c)) is not None}
    wanted = {v.strip() for v in raw_ids if v and v.strip()}
    # raw values per column: requested ids plus what an earlier, interrupted request saved
    earlier = read_suppressed(lake, source)
    values: dict[str, set[str]] = {c: set(wanted) for c in hashed}
    for col, value in zip(earlier["column"].to_pylist(), earlier["value"].to_pylist(), strict=True):
        values.setdefault(col, set()).add(value)
    result = ForgetResult()
    found: dict[str, set[str]] = {}
    pseudos = _pseudonyms(values, pseudonymizer)
    for _ in range(3):  # linked identities: the other ids on the person's rows
        linked = _linked(lake, source, specs, pseudos)
        new = False
        for col, ps in linked.items():
            if col not in lookups:
                continue
            table = lookups[col]
            mask = pc.is_in(table["pseudonym"], pa.array(sorted(ps), pa.string()))
            for v in table.filter(mask)["value"].to_pylist():
                if v not in values[col]:
                    values[col].add(v)
                    new = True
        pseudos = _pseudonyms(values, pseudonymizer)
        if not new:
            break
    for col, table in lookups.items():
        hit = table.filter(pc.is_in(table["value"], pa.array(sorted(values[col]), pa.string())))
        found[col] = set(hit["value"].to_pylist())
    # only values that are really this person's (in a lookup or on their rows) are kept
    present = _present(lake, source, specs, pseudos)
    keep = {
        col: {
            v
            for v in vs
            if v in found.get(col, set()) or pseudonymizer.pseudonym(v) in present.get(col, set())
        }
        for col, vs in values.items()
    }
    result.not_found = len(wanted - set().union(*keep.values()))
    result.identities = {c: len(v) for c, v in keep.items() if v}
    _save_suppressed(lake, source, keep, earlier)
    crashpoint("forget.suppressed")
    pseudos = _pseudonyms(keep, pseudonymizer)
    _rewrite_stage2p(lake, source, specs, pseudos, result)
    crashpoint("forget.stage2p")
    for col, table in lookups.items():
        mask = pc.is_in(table["value"], pa.array(sorted(keep.get(col, set())), pa.string()))
        removed = int(pc.sum(pc.cast(mask, pa.int64())).as_py() or 0)
        if removed:
            kept = table.filter(pc.invert(mask))
            with lake.atomic_write(Zone.STAGE2NP, lookup_key(source, col)) as out:
                pq.write_table(kept, out, compression="zstd")
        result.lookup_rows[col] = removed
    tokens = set().union(*keep.values()) if keep else set()
    result.quarantine_rows = _scrub_quarantine(lake, source, tokens)
    result.export_rows = _scrub_extracts(lake, set().union(*pseudos.values()) if pseudos else set())
    return result


def _lookup(lake: Lake, source: str, column: str) -> pa.Table | None:
    if not lake.exists(Zone.STAGE2NP, lookup_key(source, column)):
        return None
    return read_lookup(lake, source, column)


def _pseudonyms(values: dict[str, set[str]], pseudonymizer: Pseudonymizer) -> dict[str, set[str]]:
    return {c: {pseudonymizer.pseudonym(v) for v in vs} for c, vs in values.items()}


def _tables(lake: Lake, source: str, specs: list[TableSpec]) -> list[tuple[TableSpec, str]]:
    """Every Parquet file of the live version of each table."""
    out = []
    for spec in specs:
        for key in table_keys(lake, source, spec.name):
            if key.endswith(".parquet"):
                out.append((spec, key))
    return out


def _mask(table: pa.Table, spec: TableSpec, pseudos: dict[str, set[str]]) -> pa.Array:
    mask = pa.array([False] * table.num_rows)
    for c in spec.columns:
        if c.is_hashed and pseudos.get(c.name):
            hit = pc.is_in(table[c.output_name], pa.array(sorted(pseudos[c.name]), pa.string()))
            mask = pc.or_(mask, pc.fill_null(hit, False))
    return mask


def _read(lake: Lake, key: str) -> pa.Table:
    with lake.open_input_file(Zone.STAGE2P, key) as f:
        return pq.read_table(f)


def _linked(
    lake: Lake, source: str, specs: list[TableSpec], pseudos: dict[str, set[str]]
) -> dict[str, set[str]]:
    """Pseudonyms of every hashed column on rows that match ``pseudos``."""
    out: dict[str, set[str]] = {}
    for spec, key in _tables(lake, source, specs):
        table = _read(lake, key)
        rows = table.filter(_mask(table, spec, pseudos))
        for c in spec.columns:
            if c.is_hashed and rows.num_rows:
                out.setdefault(c.name, set()).update(
                    v for v in rows[c.output_name].to_pylist() if v
                )
    return out


def _present(
    lake: Lake, source: str, specs: list[TableSpec], pseudos: dict[str, set[str]]
) -> dict[str, set[str]]:
    present: dict[str, set[str]] = {}
    for spec, key in _tables(lake, source, specs):
        table = _read(lake, key)
        for c in spec.columns:
            if c.is_hashed and pseudos.get(c.name):
                col = set(table[c.output_name].to_pylist())
                present.setdefault(c.name, set()).update(pseudos[c.name] & col)
    return present


def _save_suppressed(lake: Lake, source: str, keep: dict[str, set[str]], earlier: pa.Table) -> None:
    now = dt.datetime.now(dt.UTC).isoformat()
    seen = set(zip(earlier["column"].to_pylist(), earlier["value"].to_pylist(), strict=True))
    rows = [(c, v) for c, vs in sorted(keep.items()) for v in sorted(vs) if (c, v) not in seen]
    if not rows:
        return
    new = pa.table(
        {
            "column": [c for c, _ in rows],
            "value": [v for _, v in rows],
            "forgotten_at": [now] * len(rows),
        },
        schema=SUPPRESSED_SCHEMA,
    )
    with lake.atomic_write(Zone.STAGE2NP, suppressed_key(source)) as out:
        pq.write_table(pa.concat_tables([earlier, new]), out, compression="zstd")


def _rewrite_stage2p(
    lake: Lake,
    source: str,
    specs: list[TableSpec],
    pseudos: dict[str, set[str]],
    result: ForgetResult,
) -> None:
    """Write a new version of every table holding matching rows, without them; switch.

    The affected files are rewritten and the others copied into the new version
    (:mod:`edulake.core.versions`), then readers switch to it in one step, so no reader
    sees the person gone from one partition and present in another. A run killed before
    the switch leaves the old version live; the re-run starts the rewrite over."""
    changed: dict[str, set[str]] = {}
    affected: dict[str, set[str]] = {}
    for spec, key in _tables(lake, source, specs):
        table = _read(lake, key)
        mask = _mask(table, spec, pseudos)
        removed = int(pc.sum(pc.cast(mask, pa.int64())).as_py() or 0)
        if not removed:
            continue
        affected.setdefault(spec.name, set()).add(key)
        result.stage2p_rows[spec.name] = result.stage2p_rows.get(spec.name, 0) + removed
        part = next(
            (
                seg.split("=", 1)[1]
                for seg in key.split("/")
                if "=" in seg and not is_version_segment(seg)
            ),
            None,
        )
        if part is not None:
            changed.setdefault(spec.name, set()).add(part)
    result.changed = {t: sorted(p) for t, p in changed.items()}
    if not affected:
        return
    begin_rewrite(lake, source, sorted(affected))
    for spec in specs:
        if spec.name not in affected:
            continue
        live, target = read_prefix(lake, source, spec.name), write_prefix(lake, source, spec.name)
        for key in table_keys(lake, source, spec.name):
            dst = f"{target}/{key[len(live) :].lstrip('/')}"
            if key not in affected[spec.name]:
                copy_file(lake, key, dst)
                continue
            table = _read(lake, key)
            kept = table.filter(pc.invert(_mask(table, spec, pseudos)))
            if kept.num_rows == 0:
                result.files_deleted += 1
                continue
            with lake.atomic_write(Zone.STAGE2P, dst) as out:
                pq.write_table(kept, out, compression="zstd")
            result.files_rewritten += 1
            crashpoint("forget.rewriting")
    switch(lake, source)
    crashpoint("forget.switched")
    # erasure: the version that still holds them goes at once, no grace period (the
    # publish that follows switches Glue's locations; until then Athena finds the
    # affected tables empty, never the person)
    purge_retired(lake, source, None)


def _scrub_extracts(lake: Lake, pseudonyms: set[str]) -> int:
    """Drop rows holding one of ``pseudonyms`` from the query extracts in
    ``exports/athena/`` (CSV and Parquet: the Tableau extracts of the DuckDB catalog).

    They are derived from the catalog and would otherwise serve the person until the
    next query run. Athena's own results bucket is outside the lake (see guarantees)."""
    if not pseudonyms:
        return 0
    removed = 0
    values = pa.array(sorted(pseudonyms), pa.string())
    for obj in lake.list(Zone.EXPORTS, "athena"):
        if obj.key.endswith(".csv"):
            text = lake.read_bytes(Zone.EXPORTS, obj.key).decode("utf-8")
            rows = list(csv.reader(io.StringIO(text)))
            kept = rows[:1] + [r for r in rows[1:] if not pseudonyms & set(r)]
            if len(kept) == len(rows):
                continue
            buf = io.StringIO()
            csv.writer(buf, lineterminator="\n").writerows(kept)
            with lake.atomic_write(Zone.EXPORTS, obj.key) as out:
                out.write(buf.getvalue().encode("utf-8"))
            removed += len(rows) - len(kept)
        elif obj.key.endswith(".parquet"):
            with lake.open_input_file(Zone.EXPORTS, obj.key) as f:
                table = pq.read_table(f)
            mask = pa.array([False] * table.num_rows, pa.bool_())
            for name, typ in zip(table.column_names, table.schema.types, strict=True):
                if pa.types.is_string(typ) or pa.types.is_large_string(typ):
                    hit = pc.is_in(table[name].cast(pa.string()), value_set=values)
                    mask = pc.or_(mask, pc.fill_null(hit, False))
            n = int(pc.sum(pc.cast(mask, pa.int64())).as_py() or 0)
            if n:
                with lake.atomic_write(Zone.EXPORTS, obj.key) as out:
                    pq.write_table(table.filter(pc.invert(mask)), out, compression="zstd")
                removed += n
    return removed


def mentions(obj: Any, values: set[str]) -> bool:
    """Whether any string in a JSON value (trimmed) is one of ``values``."""
    if isinstance(obj, str):
        return obj.strip() in values
    if isinstance(obj, dict):
        return any(mentions(v, values) for v in obj.values())
    if isinstance(obj, list):
        return any(mentions(v, values) for v in obj)
    return False


def _scrub_jsonl(lake: Lake, key: str, values: set[str]) -> int:
    """Drop JSON lines whose record mentions one of ``values``; rows removed."""
    lines = lake.read_bytes(Zone.QUARANTINE, key).decode("utf-8").splitlines()
    kept = [line for line in lines if not (line.strip() and mentions(json.loads(line), values))]
    if len(kept) == len(lines):
        return 0
    if not any(line.strip() for line in kept):
        lake.delete(Zone.QUARANTINE, key)
    else:
        lake.write_bytes(Zone.QUARANTINE, key, "".join(f"{x}\n" for x in kept).encode("utf-8"))
    return len(lines) - len(kept)


def _scrub_quarantine(lake: Lake, source: str, values: set[str]) -> int:
    """Drop quarantined rows that hold one of ``values`` (CSV: as a token; JSON: a value)."""
    if not values:
        return 0
    removed = 0
    for obj in lake.list(Zone.QUARANTINE, source):
        if obj.key.endswith(".jsonl"):
            removed += _scrub_jsonl(lake, obj.key, values)
            continue
        if not obj.key.endswith(".csv"):
            continue
        rows = list(csv.reader(io.StringIO(lake.read_bytes(Zone.QUARANTINE, obj.key).decode())))
        kept = [rows[0]] + [r for r in rows[1:] if not values & set(_TOKEN.findall(",".join(r)))]
        if len(kept) == len(rows):
            continue
        removed += len(rows) - len(kept)
        if len(kept) == 1:
            lake.delete(Zone.QUARANTINE, obj.key)
            continue
        buf = io.StringIO()
        csv.writer(buf).writerows(kept)
        lake.write_bytes(Zone.QUARANTINE, obj.key, buf.getvalue().encode())
    return removed
