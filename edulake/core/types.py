"""The one type vocabulary of table specs, rendered for Arrow, DuckDB and Athena/Glue."""

from __future__ import annotations

import pyarrow as pa

# spec type -> (arrow, duckdb, athena/glue)
_TYPES: dict[str, tuple[pa.DataType, str, str]] = {
    "string": (pa.string(), "VARCHAR", "string"),
    "int64": (pa.int64(), "BIGINT", "bigint"),
    "float64": (pa.float64(), "DOUBLE", "double"),
    "bool": (pa.bool_(), "BOOLEAN", "boolean"),
    "date": (pa.date32(), "DATE", "date"),
    # Athena reads Parquet timestamps at millisecond precision: write them so.
    "timestamp": (pa.timestamp("ms"), "TIMESTAMP", "timestamp"),
    "list<string>": (pa.list_(pa.string()), "VARCHAR[]", "array<string>"),
}

SPEC_TYPES = frozenset(_TYPES)


def arrow_type(spec_type: str) -> pa.DataType:
    return _TYPES[spec_type][0]


def duckdb_type(spec_type: str) -> str:
    return _TYPES[spec_type][1]


def athena_type(spec_type: str) -> str:
    return _TYPES[spec_type][2]


def spec_type_of(arrow: pa.DataType) -> str:
    """The spec type of an Arrow type (for schema-drift reports)."""
    for name, (atype, _, _) in _TYPES.items():
        if atype.equals(arrow):
            return name
    if pa.types.is_integer(arrow):
        return "int64"
    if pa.types.is_floating(arrow):
        return "float64"
    if pa.types.is_timestamp(arrow):
        return "timestamp"
    if pa.types.is_list(arrow):
        return "list<string>"
    return "string"
