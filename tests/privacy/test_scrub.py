"""The one scrubber: what an exception may say once it leaves a processing task."""

from __future__ import annotations

import pickle

import pyarrow as pa
import pytest

from edulake.core.csvproc import HeaderError, MarkedStream, NotCsvError, describe_header, unmark
from edulake.privacy.scrub import DataError, ScrubbedError, safe_message, safe_traceback, scrubbed
from edulake.specs import load_spec

ROW = "2022-01-03,LEAKSIS0001,LEAK-UUID-0001,s1,Caf\ufffd,True,1,1,9"


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (
            pa.ArrowInvalid(f"CSV parse error: Expected 8 columns, got 9: {ROW}"),
            "ArrowInvalid: CSV parse error",
        ),
        (ValueError(f"invalid literal for int() with base 10: '{ROW}'"), "ValueError"),
        (KeyError("LEAKSIS0001"), "KeyError"),
        (RuntimeError(ROW), "RuntimeError"),
        (DataError("3 of 33 rows failed"), "3 of 33 rows failed"),
        (NotCsvError("the file is a zip archive"), "the file is a zip archive"),
    ],
)
def test_safe_message(exc, expected):
    assert safe_message(exc) == expected


def test_safe_traceback_has_the_stack_and_no_message():
    def parse():
        raise pa.ArrowInvalid(f"CSV parse error: {ROW}")

    try:
        parse()
    except pa.ArrowInvalid as exc:
        text = safe_traceback(exc)
    assert "LEAKSIS0001" not in text and "in parse" in text and "test_scrub.py" in text


def test_scrubbed_lets_nothing_with_data_leave_and_keeps_safe_errors():
    @scrubbed
    def task(kind: str) -> None:
        if kind == "data":
            raise ValueError(f"bad row {ROW}")
        raise DataError("header does not match (column 9 (unrecognised, 11 chars))")

    with pytest.raises(ScrubbedError) as info:
        task("data")
    assert "LEAKSIS0001" not in str(info.value) and info.value.__suppress_context__
    # what Prefect pickles into its result storage holds no data either
    assert b"LEAKSIS0001" not in pickle.dumps(info.value)
    with pytest.raises(DataError, match="unrecognised"):
        task("safe")


def test_header_error_pickles_without_the_cells():
    spec = load_spec("clever", "daily_participation")
    header = [c.name for c in spec.columns][:-1] + [
        "num_resources_accessed2022-01-03",
        "LEAKSIS0001",
    ]
    err = describe_header(header, spec)
    assert isinstance(err, HeaderError)
    assert "LEAKSIS0001" not in str(err) and b"LEAKSIS0001" not in pickle.dumps(err)
    again = pickle.loads(pickle.dumps(err))
    assert str(again) == str(err) and again.known == err.known == 7


def test_marked_stream_keeps_every_byte_that_matters_to_csv():
    import io

    raw = b'a,b\n"x\xe9\n,y",\xff\xfe\n\xe2\x82'  # a cut multi-byte sequence at the end
    out = MarkedStream(io.BytesIO(raw), chunk=3).read()
    text = out.decode("utf-8")  # always valid UTF-8
    assert [text.count(ch) for ch in ',\n"'] == [raw.count(ch.encode()) for ch in ',\n"']
    assert unmark(text) == 'a,b\n"x\ufffd\n,y",\ufffd\ufffd\n\ufffd\ufffd'
