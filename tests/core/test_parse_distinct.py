"""Parsing distinct texts then gathering gives exactly what parsing every row gives."""

from __future__ import annotations

import pyarrow as pa
import pytest

from edulake.core.csvproc import _parse, _parse_distinct

CASES = {
    "date": ["2022-01-03", " 2022-01-03", "", "2022-13-01", "2022-01-1", "x"],
    "bool": ["True", "FALSE", "t", "", "maybe", " yes "],
    "int64": ["1", " 2 ", "-3", "", "1.5", "x", "007"],  # "+2" makes _parse raise (reported)
    "float64": ["1.5", ".5", "1e3", "", "nan?", "-2"],
    "timestamp": ["2022-01-03 10:00:00", "", "2022-01-03"],
}


@pytest.mark.parametrize("spec_type", sorted(CASES))
@pytest.mark.parametrize("repeat", [1, 50])  # 1: mostly distinct (fallback), 50: repeated
def test_parse_distinct_equals_parse(spec_type, repeat):
    texts = pa.array(CASES[spec_type] * repeat, pa.string())
    values, failed = _parse(texts, spec_type)
    d_values, d_failed = _parse_distinct(texts, spec_type)
    assert d_values.equals(values)
    assert d_failed.equals(failed)
