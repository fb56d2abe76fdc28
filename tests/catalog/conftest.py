"""Fixtures of the catalog tests: a 3-day Clever source and its first day alone."""

from __future__ import annotations

import pytest

from .helpers import first_days, source


@pytest.fixture(scope="module")
def full_source(tmp_path_factory) -> str:
    return source(str(tmp_path_factory.mktemp("clever-src") / "src"), days=3)


@pytest.fixture(scope="module")
def day1_source(full_source, tmp_path_factory) -> str:
    return first_days(full_source, str(tmp_path_factory.mktemp("clever-day1") / "src"), 1)
