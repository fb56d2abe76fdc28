"""The audit's reading of a stage1np CSV: every identifier, however broken the file, and
nothing on the console.

pyarrow's fast reader cannot hand a malformed row that is not UTF-8 to its invalid-row
handler: it decodes the row first, fails, and Python prints "Exception ignored in ..."
with a traceback to stderr (the worker's console). Such a file goes straight to the
careful, row-by-row reading instead."""

from __future__ import annotations

import pytest

from edulake.privacy.audit import _ids_in_csv
from edulake.specs import load_spec

from ..clever.helpers import DP_HEADER

GOOD = "2022-01-03,1001,c001,s1,A,True,1,1"
BROKEN = (
    (DP_HEADER + f"\n{GOOD}\n").encode()
    + b"2022-01-03,LEAKSIS0001,LEAK-UUID-0001,s1,Caf\xe9,True,1,1,9\n"
    + (GOOD.replace("1001", "1003") + "\n").encode()
)


@pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")
def test_a_malformed_row_that_is_not_utf8_is_read_without_a_console_report(capfd):
    spec = load_spec("clever", "daily_participation")
    ids = _ids_in_csv(BROKEN, spec)
    assert {"1001", "1003", "LEAKSIS0001", "LEAK-UUID-0001"} <= ids
    assert "Exception ignored" not in capfd.readouterr().err
