"""LibInsight records -> a typed, pseudonymized Arrow table, with schema drift reported.

Generic: everything dataset-specific comes from the :class:`DatasetConfig`. Per field:
labels are mapped to stable snake_case columns; single-choice arrays become values and
multi-selects stay lists; numbers sent as strings are coerced; ``_start_date`` becomes a
millisecond timestamp; free text loses newlines (if configured) and mojibake; PII fields
are pseudonymized with the project's keyed HMAC.

Drift is never absorbed silently. A field the config does not know is held back by
default (``unknown_fields: hold``: it stays in the raw pages in stage1np, is counted and
reported, and reaches no column until the config classifies it); with
``unknown_fields: add`` it becomes a new column, remembered in the table's schema state,
unless it is named like an identifier (:mod:`edulake.privacy.identifiers`), which is
always held. A configured field absent from every record is reported missing (unless it
says ``expected: false``); missing and new fields with similar names are paired as
likely renames; a configured field that stops while a new one appears is a drift error
(``drift.errors``; the pipeline fails the run on it unless ``on_drift: warn``). A value
that does not fit its column's type is kept in ``<column>_as_string`` and reported,
never nulled. Reports name fields, never values.
"""

from __future__ import annotations

import datetime as dt
import difflib
import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from edulake.core import clock
from edulake.core.types import arrow_type
from edulake.privacy.identifiers import is_identifier, normalize
from edulake.privacy.lookup import IdentityTracker
from edulake.privacy.pseudonym import Pseudonymizer, clean_ids
from edulake.sources.libinsight.config import DatasetConfig, FieldConfig, snake_case, unique_name
from edulake.specs import OutputColumn, PiiOp, TableSpec


class _Bad:
    """Marker: a value that does not fit the column type."""


BAD = _Bad()
_NEWLINES = re.compile(r"\s*[\r\n]+\s*")
_MOJIBAKE = ("\u00c3", "\u00c2", "\u00e2\u20ac")


@dataclass(frozen=True)
class DiscoveredColumn:
    """A column added by drift: a new field (``label``) or a type-change overflow (``of``)."""

    name: str
    type: str
    label: str | None = None
    of: str | None = None
    first_seen: str = ""

    def output(self) -> OutputColumn:
        if self.of:
            comment = f"values of {self.of} that did not fit its type (schema drift)"
        else:
            comment = f"LibInsight: {self.label} (added by schema drift on {self.first_seen})"
        return OutputColumn(name=self.name, type=self.type, comment=comment)


@dataclass
class SchemaState:
    """The columns drift has added to a table so far (persisted between runs)."""

    columns: list[DiscoveredColumn] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"columns": [asdict(c) for c in self.columns]}

    @classmethod
    def from_json(cls, obj: dict[str, Any] | None) -> SchemaState:
        return cls([DiscoveredColumn(**c) for c in (obj or {}).get("columns", [])])

    def by_label(self, label: str) -> DiscoveredColumn | None:
        return next((c for c in self.columns if c.label == label), None)

    def overflow_of(self, name: str) -> DiscoveredColumn | None:
        return next((c for c in self.columns if c.of == name), None)

    def outputs(self) -> list[OutputColumn]:
        return [c.output() for c in self.columns]


@dataclass
class DriftReport:
    """What changed in the source's shape during a run."""

    new_fields: list[dict[str, str]] = field(default_factory=list)
    missing_fields: list[str] = field(default_factory=list)
    possible_renames: list[dict[str, str]] = field(default_factory=list)
    type_changes: list[dict[str, Any]] = field(default_factory=list)
    multi_in_single: dict[str, int] = field(default_factory=dict)
    dropped_rows: dict[str, int] = field(default_factory=dict)
    duplicate_records: int = 0  # records replaced by a later one with the same id
    held_fields: dict[str, int] = field(default_factory=dict)  # label -> records holding it
    held_since: dict[str, str] = field(default_factory=dict)  # label -> first record's day
    hints: list[str] = field(default_factory=list)  # one line per held field: how to classify
    errors: list[str] = field(default_factory=list)  # drift that fails the run by default

    @property
    def has_drift(self) -> bool:
        return bool(self.new_fields or self.missing_fields or self.type_changes or self.held_fields)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def rows(self) -> list[dict[str, str]]:
        """One row per finding (for a table artifact)."""
        out = [{"kind": "drift error", "field": "-", "detail": e} for e in self.errors]
        out += [
            {
                "kind": "held back",
                "field": label,
                "detail": f"in {n} records (first {self.held_since.get(label) or '?'}); "
                "kept in stage1np only until the config classifies it",
            }
            for label, n in self.held_fields.items()
        ]
        out += [
            {
                "kind": "new field",
                "field": f["label"],
                "detail": f"column {f['column']} ({f['type']})",
            }
            for f in self.new_fields
            if f["label"] not in self.held_fields
        ]
        out += [
            {"kind": "missing field", "field": m, "detail": "in no record"}
            for m in self.missing_fields
        ]
        out += [
            {"kind": "possible rename", "field": r["from"], "detail": f"-> {r['to']}"}
            for r in self.possible_renames
        ]
        out += [
            {
                "kind": "type change",
                "field": t["column"],
                "detail": f"{t['count']} values not {t['expected']}, kept in {t['kept_in']}",
            }
            for t in self.type_changes
        ]
        out += [
            {
                "kind": "several values in a single choice",
                "field": k,
                "detail": f"{v} rows, joined with '; '",
            }
            for k, v in self.multi_in_single.items()
        ]
        out += [
            {"kind": "bad records", "field": k, "detail": f"{v} (in the quarantine)"}
            for k, v in self.dropped_rows.items()
        ]
        if self.duplicate_records:
            out.append(
                {
                    "kind": "duplicate ids",
                    "field": "id",
                    "detail": f"{self.duplicate_records} records replaced by a later one",
                }
            )
        return out


@dataclass
class TransformResult:
    """The typed table, its spec (with drift columns), the updated schema state, the report."""

    table: pa.Table
    spec: TableSpec
    state: SchemaState
    drift: DriftReport
    identities: dict[str, pa.Table]  # hashed column -> (value, pseudonym, first/last seen)
    key_id: str | None
    # Records not kept (no date, no id), raw, with the reason: for the protected quarantine.
    rejected: list[dict[str, Any]] = field(default_factory=list)

    @property
    def held(self) -> dict[str, int]:
        """Fields held back (label -> records holding it): in stage1np only."""
        return self.drift.held_fields

    @property
    def hints(self) -> list[str]:
        return self.drift.hints


# -- value coercion ------------------------------------------------------------------------


def fix_mojibake(text: str) -> str:
    """Undo UTF-8 read as Windows-1252 (``donâ€™t`` -> ``don't``); unchanged when unsure."""
    if not any(m in text for m in _MOJIBAKE):
        return text
    try:
        return text.encode("cp1252").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return text


def clean_text(value: str, cfg: DatasetConfig) -> str | None:
    text = value.replace("\x00", "")
    if cfg.fix_mojibake:
        text = fix_mojibake(text)
    if cfg.newlines == "space":
        text = _NEWLINES.sub(" ", text)
    text = text.strip()
    return text or None


def _scalar_text(v: Any, cfg: DatasetConfig) -> str | None:
    if v is None:
        return None
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    if isinstance(v, dict):
        return json.dumps(v, ensure_ascii=False, sort_keys=True)
    return clean_text(str(v), cfg)


_INT64 = (-(2**63), 2**63 - 1)


def _int64(v: int) -> Any:
    return v if _INT64[0] <= v <= _INT64[1] else BAD


def to_number(v: Any, integer: bool) -> Any:
    if v is None:
        return None
    if isinstance(v, list):
        if not v:
            return None
        return to_number(v[0], integer) if len(v) == 1 else BAD
    if isinstance(v, bool):
        return BAD
    if isinstance(v, int):
        return _int64(v) if integer else float(v)
    if isinstance(v, float):
        if not integer:
            return v
        return _int64(int(v)) if v.is_integer() else BAD
    if isinstance(v, str):
        s = v.strip().replace(",", "")
        if not s:
            return None
        try:
            f = float(s)
        except ValueError:
            return BAD
        if not integer:
            return f
        return _int64(int(f)) if f.is_integer() else BAD
    return BAD


def to_timestamp(v: Any) -> Any:
    if v is None or (isinstance(v, str) and not v.strip()):
        return None
    if not isinstance(v, str):
        return BAD
    try:
        ts = dt.datetime.fromisoformat(v.strip())
    except ValueError:
        return BAD
    return ts.replace(tzinfo=None, microsecond=ts.microsecond // 1000 * 1000)


def to_date(v: Any) -> Any:
    ts = to_timestamp(v)
    return ts.date() if isinstance(ts, dt.datetime) else ts


def to_bool(v: Any) -> Any:
    if v is None:
        return None
    if isinstance(v, bool):
        return v
    s = str(v).strip().lower()
    if not s:
        return None
    if s in ("true", "yes", "y", "1"):
        return True
    if s in ("false", "no", "n", "0"):
        return False
    return BAD


def to_list(v: Any, cfg: DatasetConfig) -> Any:
    if v is None:
        return None
    items = v if isinstance(v, list) else [v]
    out = [_scalar_text(x, cfg) for x in items]
    return [x for x in out if x is not None]


def _structured(v: Any) -> bool:
    return isinstance(v, dict) or (
        isinstance(v, list) and any(isinstance(x, list | dict) for x in v)
    )


def coerce(v: Any, type_: str, cfg: DatasetConfig, multi: list[int]) -> Any:
    """A raw JSON value as the column type, or :data:`BAD`. ``multi`` counts joined choices.

    An object (or a list holding objects or lists) is never text: in a text or list column
    it is :data:`BAD`, so it lands in the overflow column and is reported, not flattened.
    """
    if type_ in ("string", "list<string>") and _structured(v):
        return BAD
    if type_ == "string":
        if isinstance(v, list):
            texts = [t for t in (_scalar_text(x, cfg) for x in v) if t is not None]
            if len(texts) > 1:
                multi[0] += 1
            return "; ".join(texts) if texts else None
        return _scalar_text(v, cfg)
    if type_ == "int64":
        return to_number(v, integer=True)
    if type_ == "float64":
        return to_number(v, integer=False)
    if type_ == "timestamp":
        return to_timestamp(v)
    if type_ == "date":
        return to_date(v)
    if type_ == "bool":
        return to_bool(v)
    if type_ == "list<string>":
        return to_list(v, cfg)
    raise ValueError(f"unsupported type {type_}")


def infer_type(values: list[Any]) -> str:
    """The type of a field nobody configured, from the values seen."""
    seen = [v for v in values if v is not None and v != ""]
    if any(isinstance(v, list) for v in seen):
        return "list<string>"
    if seen and all(isinstance(v, bool) for v in seen):
        return "bool"
    if seen and all(isinstance(v, int) and not isinstance(v, bool) for v in seen):
        return "int64"
    if seen and all(isinstance(v, int | float) and not isinstance(v, bool) for v in seen):
        return "float64"
    return "string"


def overflow_text(v: Any) -> str:
    return json.dumps(v, ensure_ascii=False) if isinstance(v, list | dict) else str(v)


# -- the transform -----------------------------------------------------------------------


def _json_kind(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, list):
        return "a list"
    return "a string" if isinstance(v, str) else "a number"


def _reject_reason(
    cfg: DatasetConfig,
    row: dict[str, Any],
    i: int,
    bad: dict[str, dict[int, Any]],
    pii: dict[str, str],
) -> str | None:
    """Why a typed row cannot be kept (None: it can)."""
    id_col, date_col = cfg.id_column, cfg.date_column
    if row.get(date_col) is None:
        return f"{'bad' if i in bad.get(date_col, {}) else 'no'} {cfg.date_field}"
    if row.get(id_col) is None:
        return f"{'bad' if i in bad.get(id_col, {}) else 'no'} {cfg.id_field}"
    for col, label in pii.items():
        if i in bad.get(col, {}):
            return f"bad {label} (personal data that does not fit its type)"
    return None


def _labels(records: list[dict[str, Any]]) -> list[str]:
    seen: dict[str, None] = {}
    for r in records:
        for k in r:
            seen.setdefault(k, None)
    return list(seen)


def classify_hint(label: str) -> str:
    """One line saying how to classify a held field in the dataset config."""
    op = "hash" if is_identifier(label) else "keep"
    return (
        f"{label}: add `- {{label: {json.dumps(label)}, op: {op}}}` to the dataset config's "
        "fields (op: keep, hash, mask or drop), or add it to the aliases of the field it replaces"
    )


def _tokens(label: str) -> set[str]:
    return {t for t in normalize(label).split("_") if t}


def _similar(a: str, b: str) -> float:
    """How much two labels look like one field renamed (0..1)."""
    ta, tb = _tokens(a), _tokens(b)
    if ta and tb and (ta <= tb or tb <= ta):
        return 0.9 + 0.1 * len(ta & tb) / len(ta | tb)
    return difflib.SequenceMatcher(None, normalize(a), normalize(b)).ratio()


def rename_hints(missing: list[str], new: list[str]) -> list[dict[str, str]]:
    """Missing and new fields paired as likely renames (works with other fields missing too).

    One missing and one new: a pair. Otherwise each new field pairs with the missing field
    whose name it resembles most (a shared token set, or similar spelling), each once.
    """
    if len(missing) == 1 and len(new) == 1:
        return [{"from": missing[0], "to": new[0]}]
    scored = sorted(((_similar(m, n), m, n) for m in missing for n in new), key=lambda t: -t[0])
    out, used_m, used_n = [], set(), set()
    for score, m, n in scored:
        if score >= 0.6 and m not in used_m and n not in used_n:
            out.append({"from": m, "to": n})
            used_m.add(m)
            used_n.add(n)
    return out


def _drift_error(stopped: list[str], new: list[str], renames: list[dict[str, str]]) -> str:
    pairs = "; ".join(f"{r['from']} -> {r['to']}" for r in renames)
    example = renames[0] if renames else {"from": stopped[0], "to": new[0]}
    return (
        f"configured field(s) {', '.join(stopped)} received no values while new field(s) "
        f"{', '.join(new)} appeared"
        + (f" (likely renamed: {pairs})" if pairs else "")
        + ": classify the new field in the dataset config - add it to the aliases of the "
        f"field it replaces (on {json.dumps(example['from'])}: "
        f"`aliases: [{json.dumps(example['to'])}]`) or list it with its own op "
        "(keep, hash, mask, drop); `on_drift: warn` in the config makes this a warning"
    )


def _plan_columns(
    cfg: DatasetConfig,
    state: SchemaState,
    labels: list[str],
    records: list[dict[str, Any]],
    today: str,
) -> tuple[dict[str, tuple[str, str]], SchemaState, DriftReport]:
    """Map each seen label to (column, type); unknown labels are held back or discovered."""
    drift = DriftReport()
    taken = cfg.reserved_names() | {c.name for c in state.columns}
    columns = list(state.columns)
    plan: dict[str, tuple[str, str]] = {}
    for label in labels:
        f = cfg.field_for(label)
        if f is not None:
            if f.op is not PiiOp.DROP:
                plan[label] = (f.column, f.type)
            continue
        known = state.by_label(label)
        identifier = is_identifier(label)
        if known is None or identifier:
            # Closed by default: only a config decision lets an unknown field into stage2p,
            # and never one named like an identifier (a column added before is held too).
            if cfg.unknown_fields == "ignore" and not identifier:
                drift.new_fields.append({"label": label, "column": "(ignored)", "type": "-"})
                continue
            if cfg.unknown_fields == "hold" or identifier:
                holding = [r for r in records if label in r]
                drift.held_fields[label] = len(holding)
                days = [d[:10] for r in holding if isinstance(d := r.get(cfg.date_field), str)]
                drift.held_since[label] = min((d for d in days if d.strip()), default="")
                drift.hints.append(classify_hint(label))
                if known is None:
                    drift.new_fields.append({"label": label, "column": "(held back)", "type": "-"})
                continue
            type_ = infer_type([r.get(label) for r in records])
            name = unique_name(snake_case(label), taken)
            taken.add(name)
            known = DiscoveredColumn(name=name, type=type_, label=label, first_seen=today)
            columns.append(known)
            drift.new_fields.append({"label": label, "column": name, "type": type_})
        plan[label] = (known.name, known.type)
    if records:
        present = set(labels)
        configured = [f.label for f in cfg.fields if f.expected]
        expected = configured + [c.label for c in state.columns if c.label]
        for f_label in expected:
            f = cfg.field_for(f_label)
            names = [f_label, *(f.aliases if f else [])]
            if not any(n in present for n in names):
                drift.missing_fields.append(f_label)
        new = [n["label"] for n in drift.new_fields]
        drift.possible_renames = rename_hints(drift.missing_fields, new)
        stopped = [m for m in drift.missing_fields if m in configured]
        if stopped and new:
            drift.errors.append(_drift_error(stopped, new, drift.possible_renames))
    return plan, SchemaState(columns), drift


def transform(
    records: list[Any],
    cfg: DatasetConfig,
    state: SchemaState | None = None,
    pseudonymizer: Pseudonymizer | None = None,
    today: dt.date | None = None,
    table: str | None = None,
) -> TransformResult:
    """Type, clean and pseudonymize records; report drift. Rows are de-duplicated by id.

    ``table``: the table's name (default: the config's; a run uses the dataset's table).

    Records not kept go to ``rejected`` with the reason (for the protected quarantine):
    an entry that is not a JSON object, no or a bad ``_id`` or ``_start_date``, and a
    value of a PII field that does not fit its type (it must not reach an overflow column
    in stage2p unhashed). Of records sharing an id the last one wins (the order given:
    windows, then pages in order); the others are counted in ``drift.duplicate_records``.
    """
    state = state or SchemaState()
    day = (today or clock.today()).isoformat()
    rejected: list[dict[str, Any]] = []
    drift_rejects: dict[str, int] = {}
    objects: list[dict[str, Any]] = []
    for r in records:
        if isinstance(r, dict):
            objects.append(r)
        else:
            reason = f"not a JSON object ({_json_kind(r)})"
            drift_rejects[reason] = drift_rejects.get(reason, 0) + 1
            rejected.append({"reason": reason, "record": r})
    records = objects
    labels = _labels(records)
    plan, state, drift = _plan_columns(cfg, state, labels, records, day)
    drift.dropped_rows.update(drift_rejects)

    # Typed values per column; values that do not fit go to an overflow column.
    id_col, date_col = cfg.id_column, cfg.date_column
    by_label = {label: plan[label] for label in labels if label in plan}
    pii = {f.column: f.label for f in cfg.fields if f.op is not PiiOp.KEEP}
    rows: list[dict[str, Any]] = []
    bad: dict[str, dict[int, Any]] = {}  # column -> row index -> raw value
    multi: dict[str, list[int]] = {}
    for rec in records:
        row: dict[str, Any] = {}
        for label, (col, type_) in by_label.items():
            if label not in rec:
                continue
            counter = multi.setdefault(col, [0])
            v = coerce(rec[label], type_, cfg, counter)
            if v is BAD:
                bad.setdefault(col, {})[len(rows)] = rec[label]
                v = None
            row[col] = v
        rows.append(row)

    keep: list[int] = []
    for i, row in enumerate(rows):
        why = _reject_reason(cfg, row, i, bad, pii)
        if why is None:
            keep.append(i)
            continue
        drift.dropped_rows[why] = drift.dropped_rows.get(why, 0) + 1
        rejected.append({"reason": why, "record": records[i]})
    # Last occurrence wins: a record seen twice in one run (pages shifted) counts once.
    last: dict[Any, int] = {}
    for i in keep:
        last[rows[i][id_col]] = i
    drift.duplicate_records = len(keep) - len(last)
    keep = sorted(last.values())
    kept = set(keep)
    bad = {c: {i: v for i, v in vs.items() if i in kept} for c, vs in bad.items()}
    bad = {c: vs for c, vs in bad.items() if vs}

    for col, values in bad.items():
        if col in (id_col, date_col):
            continue
        over = state.overflow_of(col)
        if over is None:
            taken = cfg.reserved_names() | {c.name for c in state.columns}
            over = DiscoveredColumn(
                name=unique_name(f"{col}_as_string", taken), type="string", of=col, first_seen=day
            )
            state.columns.append(over)
        expected = next(t for c, t in plan.values() if c == col)
        drift.type_changes.append(
            {"column": col, "expected": expected, "count": len(values), "kept_in": over.name}
        )
        for i, raw in values.items():
            rows[i][over.name] = overflow_text(raw)
    drift.multi_in_single = {c: n[0] for c, n in multi.items() if n[0]}

    spec = cfg.table_spec(state.outputs(), table=table)
    kept_rows = [rows[i] for i in keep]
    for d in cfg.derived:
        for row in kept_rows:
            parts = [str(row[c]) for c in d.concat if row.get(c) not in (None, "")]
            row[d.name] = d.sep.join(parts) if parts else None

    result = _assemble(cfg, spec, kept_rows, pseudonymizer, state, drift)
    result.rejected = rejected
    return result


def _assemble(
    cfg: DatasetConfig,
    spec: TableSpec,
    rows: list[dict[str, Any]],
    pseudonymizer: Pseudonymizer | None,
    state: SchemaState,
    drift: DriftReport,
) -> TransformResult:
    arrays: dict[str, pa.Array] = {}
    identities: dict[str, pa.Table] = {}
    dates = pa.array([r[cfg.date_column] for r in rows], pa.timestamp("ms"))
    for c in spec.columns:
        if c.op is PiiOp.DROP:
            continue
        values = [r.get(c.name) for r in rows]
        if c.is_hashed:
            if pseudonymizer is None:
                raise ValueError(f"column {c.name} is pseudonymized: a Pseudonymizer is required")
            raw = clean_ids(pa.array(values, pa.string()))
            pseudo = pseudonymizer.pseudonymize(raw)
            arrays[c.output_name] = pseudo
            if c.op is PiiOp.HASH:
                tracker = IdentityTracker(pseudonymizer.key_id)
                tracker.add(raw, pseudo, pc.cast(dates, pa.date32()))
                identities[c.name] = tracker.table()
        elif c.op is PiiOp.MASK:
            arrays[c.output_name] = pa.array(
                [None if v is None else "*" for v in values], pa.string()
            )
        else:
            arrays[c.output_name] = pa.array(values, arrow_type(c.type))
    for extra in spec.extra_columns:
        arrays[extra.name] = pa.array([r.get(extra.name) for r in rows], arrow_type(extra.type))
    schema = spec.arrow_schema()
    table = pa.table([arrays[f.name] for f in schema], schema=schema)
    return TransformResult(
        table=table,
        spec=spec,
        state=state,
        drift=drift,
        identities=identities,
        key_id=pseudonymizer.key_id if pseudonymizer else None,
    )


__all__ = [
    "DiscoveredColumn",
    "DriftReport",
    "FieldConfig",
    "SchemaState",
    "TransformResult",
    "coerce",
    "fix_mojibake",
    "infer_type",
    "transform",
]
