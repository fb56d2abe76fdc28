"""A LibInsight dataset configured as data: fields, types, PII operations, derived columns.

One YAML file per dataset under ``edulake/specs/libinsight/`` (or any path). The generic
transform reads it; no dataset gets code of its own. The config also yields the
:class:`~edulake.specs.TableSpec` the catalog publishes, including the columns schema
drift added since.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from importlib import resources
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, Field, field_validator, model_validator

from edulake.core.types import SPEC_TYPES
from edulake.privacy.identifiers import is_identifier
from edulake.specs import ColumnSpec, IdentifierPolicyError, OutputColumn, PiiOp, TableSpec

SOURCE = "libinsight"


def snake_case(label: str) -> str:
    """A stable snake_case column name for a display label.

    ``Duration (in minutes)`` -> ``duration_in_minutes``; ``Comments/Notes`` -> ``comments_notes``.
    """
    text = unicodedata.normalize("NFKD", label).encode("ascii", "ignore").decode()
    text = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", text)  # camelCase -> camel_case
    name = re.sub(r"[^0-9a-zA-Z]+", "_", text).strip("_").lower()
    if not name:
        name = "field"
    if name[0].isdigit():
        name = "f_" + name
    return name


def unique_name(name: str, taken: set[str]) -> str:
    """``name``, or ``name_2``, ``name_3``... when already taken (collisions between labels)."""
    if name not in taken:
        return name
    n = 2
    while f"{name}_{n}" in taken:
        n += 1
    return f"{name}_{n}"


class FieldConfig(BaseModel):
    """One LibInsight field (keyed by its display label) and what becomes of it."""

    label: str
    name: str | None = Field(None, description="Column name; default: the label in snake_case.")
    type: str = "string"
    op: PiiOp = PiiOp.KEEP
    choice: Literal["single", "multi"] | None = Field(
        None, description="single: a one-element array becomes a value; multi: kept as a list."
    )
    aliases: list[str] = Field(default_factory=list, description="Former labels (renames).")
    comment: str = ""
    expected: bool = Field(
        True, description="false: an instance may lack this field (not reported missing)."
    )
    allow_identifier: bool = Field(
        False, description="Reviewed: named like an identifier, but may be kept in clear."
    )

    @field_validator("type")
    @classmethod
    def _known_type(cls, v: str) -> str:
        if v not in SPEC_TYPES:
            raise ValueError(f"unknown type {v!r}; use one of {sorted(SPEC_TYPES)}")
        return v

    @model_validator(mode="after")
    def _multi_is_list(self) -> FieldConfig:
        if self.choice == "multi":
            self.type = "list<string>"
        return self

    @property
    def column(self) -> str:
        return self.name or snake_case(self.label)

    @property
    def keeps_identifier(self) -> bool:
        """Kept in clear although its label, column or a former label names an identifier."""
        if self.op is not PiiOp.KEEP or self.allow_identifier:
            return False
        return any(is_identifier(n) for n in (self.label, self.column, *self.aliases))


class DerivedConfig(BaseModel):
    """A column computed from others (after typing): for now, text concatenation."""

    name: str
    concat: list[str]
    sep: str = " "
    comment: str = ""


class DatasetConfig(BaseModel):
    """A LibInsight custom dataset and the table it becomes."""

    name: str
    source: str = SOURCE
    description: str = ""
    dataset_id: int | None = None
    backfill_from: dt.date | None = None
    id_field: str = "_id"
    date_field: str = "_start_date"
    newlines: Literal["space", "keep"] = "space"
    fix_mojibake: bool = True
    # hold: a field the config does not know stays in stage1np and is reported until the
    # config classifies it (closed by default); add: it becomes a column (never when it is
    # named like an identifier); ignore: reported once per run, never written.
    unknown_fields: Literal["hold", "add", "ignore"] = "hold"
    # error: a configured field that stops receiving values while a new field appears
    # (a rename) fails the run before anything is written; warn: reported, run goes on.
    on_drift: Literal["error", "warn"] = "error"
    fields: list[FieldConfig]
    derived: list[DerivedConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check(self) -> DatasetConfig:
        labels = [f.label for f in self.fields]
        for must in (self.id_field, self.date_field):
            if must not in labels:
                raise ValueError(f"dataset {self.name}: field {must!r} must be configured")
        names = [f.column for f in self.fields if f.op is not PiiOp.DROP] + [
            d.name for d in self.derived
        ]
        dupes = {n for n in names if names.count(n) > 1}
        if dupes:
            raise ValueError(f"dataset {self.name}: duplicate column names {sorted(dupes)}")
        return self

    def table_name(self, dataset_id: int) -> str:
        """The table of ``dataset_id``: one per dataset, so no run touches another's rows.

        A config bound to a dataset (``dataset_id:`` in the YAML) names its table and
        refuses every other id; a shared config (no ``dataset_id``) gets ``<name>_<id>``.
        """
        if self.dataset_id is None:
            return f"{self.name}_{dataset_id}"
        if self.dataset_id != dataset_id:
            raise DatasetMismatchError(
                f"dataset config {self.name!r} is bound to dataset {self.dataset_id}, "
                f"but this run is for dataset {dataset_id}: pass the config of dataset "
                f"{dataset_id} (dataset_config=...), or a config without dataset_id"
            )
        return self.name

    def kept_identifiers(self) -> list[str]:
        """Labels of fields kept in clear that are named like identifiers."""
        return [f.label for f in self.fields if f.keeps_identifier]

    def field_for(self, label: str) -> FieldConfig | None:
        for f in self.fields:
            if label == f.label or label in f.aliases:
                return f
        return None

    @property
    def id_column(self) -> str:
        f = self.field_for(self.id_field)
        assert f is not None
        return f.column

    @property
    def date_column(self) -> str:
        f = self.field_for(self.date_field)
        assert f is not None
        return f.column

    def reserved_names(self) -> set[str]:
        """Column names owned by configured fields (discovered fields must avoid them)."""
        out = {f.column for f in self.fields} | {d.name for d in self.derived}
        out |= {
            f"{f.column}_pseudonym"
            for f in self.fields
            if f.op in (PiiOp.HASH, PiiOp.HASH_NO_LOOKUP)
        }
        return out | {"month"}

    def table_spec(
        self, discovered: list[OutputColumn] | None = None, table: str | None = None
    ) -> TableSpec:
        """The stage2p table (``table``, default the config's name): configured columns,
        derived ones, then what drift added."""
        columns = [
            ColumnSpec(
                name=f.column, type=f.type, op=f.op, comment=f.comment or f"LibInsight: {f.label}"
            )
            for f in self.fields
        ]
        extra = [OutputColumn(name=d.name, type="string", comment=d.comment) for d in self.derived]
        return TableSpec(
            name=table or self.name,
            source=self.source,
            description=self.description,
            columns=columns,
            partition_by=self.date_column,
            partition_granularity="month",
            extra_columns=extra + list(discovered or []),
        )


class DatasetMismatchError(ValueError):
    """A config bound to one dataset used for another."""


def load_dataset_config(name_or_path: str) -> DatasetConfig:
    """A bundled config by name (``reference_desk``) or a YAML file path.

    A config keeping in clear a field named like an identifier is refused
    (:class:`~edulake.specs.IdentifierPolicyError`) unless the field says
    ``allow_identifier: true``.
    """
    if name_or_path.endswith((".yaml", ".yml")) or "/" in name_or_path:
        text = Path(name_or_path).read_text("utf-8")
    else:
        text = (
            resources.files("edulake.specs")
            .joinpath(SOURCE, f"{name_or_path}.yaml")
            .read_text("utf-8")
        )
    cfg = DatasetConfig.model_validate(yaml.safe_load(text))
    bad = cfg.kept_identifiers()
    if bad:
        raise IdentifierPolicyError(f"LibInsight dataset config {cfg.name!r}", bad)
    return cfg
