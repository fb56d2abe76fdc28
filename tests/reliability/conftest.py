from __future__ import annotations

import pytest

from edulake.lake import Lake
from edulake.pseudonym import Pseudonymizer

from .helpers import KEY


@pytest.fixture
def lake(tmp_path) -> Lake:
    return Lake(str(tmp_path / "lake"), np_root=str(tmp_path / "np"))


@pytest.fixture
def pseudonymizer() -> Pseudonymizer:
    return Pseudonymizer(KEY)
