"""Declarative table specs: columns, types and PII operations as data, read by generic code.

One :class:`TableSpec` drives parsing, pseudonymization, the Parquet schema and every
catalog renderer (DuckDB and Glue): one description, several consumers.
"""

from __future__ import annotations

from enum import StrEnum
from importlib import resources
from typing import Literal

import pyarrow as pa
import yaml
from pydantic import BaseModel, Field, field_validator

from edulake.core.types import SPEC_TYPES, arrow_type
from edulake.privacy.identifiers import is_identifier


class PiiOp(StrEnum):
    """What happens to a column on the way to stage2p (as in the OEA reference)."""

    KEEP = "keep"  # kept as is in stage2p
    HASH = "hash"  # <col>_pseudonym in stage2p, raw + pseudonym in the stage2np lookup
    HASH_NO_LOOKUP = "hash-no-lookup"  # <col>_pseudonym in stage2p, nothing in stage2np
    MASK = "mask"  # replaced by "*" in stage2p
    DROP = "drop"  # not written anywhere past stage1np


class ColumnSpec(BaseModel):
    name: str
    type: str = "string"
    op: PiiOp = PiiOp.KEEP
    aliases: list[str] = Field(default_factory=list, description="Other header names accepted.")
    comment: str = ""
    required: bool = True
    allow_identifier: bool = Field(
        False, description="Reviewed: this name looks like an identifier but may be kept."
    )

    @field_validator("type")
    @classmethod
    def _known_type(cls, v: str) -> str:
        if v not in SPEC_TYPES:
            raise ValueError(f"unknown column type {v!r}; use one of {sorted(SPEC_TYPES)}")
        return v

    @property
    def output_name(self) -> str:
        return f"{self.name}_pseudonym" if self.is_hashed else self.name

    @property
    def output_type(self) -> str:
        return "string" if self.op in (PiiOp.HASH, PiiOp.HASH_NO_LOOKUP, PiiOp.MASK) else self.type

    @property
    def is_hashed(self) -> bool:
        return self.op in (PiiOp.HASH, PiiOp.HASH_NO_LOOKUP)


class OutputColumn(BaseModel):
    """A column as published: name, spec type, comment."""

    name: str
    type: str
    comment: str = ""


class TableSpec(BaseModel):
    """A source table: input columns with their operations, and how output is partitioned."""

    name: str
    source: str
    description: str = ""
    columns: list[ColumnSpec]
    partition_by: str | None = None
    partition_granularity: Literal["day", "month"] = "day"
    extra_columns: list[OutputColumn] = Field(
        default_factory=list, description="Columns the pipeline adds (e.g. role from file name)."
    )

    def column(self, name: str) -> ColumnSpec:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)

    def resolve_header(self, header: list[str]) -> dict[str, str]:
        """Map each header name to its spec column; raise :class:`HeaderMismatch` on drift."""
        lookup: dict[str, str] = {}
        for c in self.columns:
            for n in (c.name, *c.aliases):
                lookup[n.strip().lower()] = c.name
        mapping: dict[str, str] = {}
        unknown = []
        for h in header:
            canon = lookup.get(h.strip().lower())
            if canon is None or canon in mapping.values():
                unknown.append(h)
            else:
                mapping[h] = canon
        missing = [c.name for c in self.columns if c.required and c.name not in mapping.values()]
        if unknown or missing:
            raise HeaderMismatch(self.name, missing=missing, unknown=unknown)
        return mapping

    @property
    def partition_column(self) -> OutputColumn | None:
        if self.partition_by is None:
            return None
        if self.partition_granularity == "month":
            return OutputColumn(
                name="month", type="string", comment="YYYY-MM of " + self.partition_by
            )
        c = self.column(self.partition_by)
        return OutputColumn(name=c.name, type=c.type, comment=c.comment)

    def output_columns(self) -> list[OutputColumn]:
        """stage2p data columns in stable order (partition column excluded when day-partitioned)."""
        out = []
        for c in self.columns:
            if c.op is PiiOp.DROP:
                continue
            if self.partition_granularity == "day" and c.name == self.partition_by:
                continue  # lives in the path (Hive style), as Athena expects
            out.append(OutputColumn(name=c.output_name, type=c.output_type, comment=c.comment))
        return out + list(self.extra_columns)

    def arrow_schema(self) -> pa.Schema:
        return pa.schema([pa.field(c.name, arrow_type(c.type)) for c in self.output_columns()])

    @property
    def lookup_columns(self) -> list[ColumnSpec]:
        return [c for c in self.columns if c.op is PiiOp.HASH]


class HeaderMismatch(ValueError):
    """A file's header does not match its spec: schema drift, reported, never absorbed."""

    def __init__(self, table: str, missing: list[str], unknown: list[str]):
        self.table, self.missing, self.unknown = table, missing, unknown
        parts = []
        if missing:
            parts.append("missing columns: " + ", ".join(missing))
        if unknown:
            parts.append("unknown columns: " + ", ".join(unknown))
        super().__init__(f"header does not match the {table} spec ({'; '.join(parts)})")


class IdentifierPolicyError(ValueError):
    """A spec or config keeps in clear a field named like an identifier (names only)."""

    def __init__(self, where: str, fields: list[str]):
        self.where, self.fields = where, fields
        super().__init__(
            f"{where}: {', '.join(fields)} "
            f"{'is' if len(fields) == 1 else 'are'} named like a personal identifier but "
            "would be kept in clear (op: keep): set op to hash, hash-no-lookup, mask or drop, "
            "or, if it is not personal data, add `allow_identifier: true` to that field"
        )


def kept_identifiers(columns: list[ColumnSpec]) -> list[str]:
    """Columns kept in clear whose name or an alias is on the identifier list."""
    return [
        c.name
        for c in columns
        if c.op is PiiOp.KEEP
        and not c.allow_identifier
        and any(is_identifier(n) for n in (c.name, *c.aliases))
    ]


def check_identifiers(spec: TableSpec) -> TableSpec:
    """Refuse a spec keeping an identifier in clear (see :mod:`edulake.privacy.identifiers`)."""
    bad = kept_identifiers(spec.columns)
    if bad:
        raise IdentifierPolicyError(f"spec {spec.source}/{spec.name}", bad)
    return spec


def spec_from_dict(data: object) -> TableSpec:
    """A spec from its parsed YAML, checked against the identifier policy."""
    return check_identifiers(TableSpec.model_validate(data))


def load_spec(source: str, name: str) -> TableSpec:
    """Load a bundled spec: ``edulake/specs/<source>/<name>.yaml`` (identifier policy checked)."""
    text = resources.files("edulake.specs").joinpath(source, f"{name}.yaml").read_text("utf-8")
    return spec_from_dict(yaml.safe_load(text))
