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


SECRET = "s3cr3t-Pl4nted-9f2b"  # planted, not a credential


def _raised(exc: BaseException) -> BaseException:
    try:
        raise exc
    except BaseException as caught:
        return caught


def test_scrub_keeps_what_the_retry_condition_decides_on():
    from edulake.core.errors import is_transient
    from edulake.privacy.scrub import (
        ScrubbedDeterministicError,
        ScrubbedTransientError,
        scrub,
    )

    cases = [
        (ConnectionResetError(f"peer reset while sending {ROW} {SECRET}"), True),
        (TimeoutError(f"read timed out on {ROW}"), True),
        (ValueError(f"bad row {ROW}"), False),
        (RuntimeError(f"who knows {ROW}"), False),
    ]
    for exc, transient in cases:
        out = scrub(_raised(exc))
        assert is_transient(out) is transient is is_transient(exc), type(exc)
        assert out.type_name == type(exc).__name__  # type: ignore[attr-defined]
        assert f"builtins.{type(exc).__name__}" in out.type_names  # type: ignore[attr-defined]
        assert "LEAKSIS0001" not in str(out) and SECRET not in str(out)
        again = pickle.loads(pickle.dumps(out))
        assert type(again) is type(out) and str(again) == str(out)
        assert again.type_name == out.type_name  # type: ignore[attr-defined]
        assert b"LEAKSIS0001" not in pickle.dumps(out)
        assert out.__traceback__ is not None  # the frames stay, for debugging
    assert isinstance(scrub(_raised(cases[0][0])), ScrubbedTransientError)
    assert isinstance(scrub(_raised(cases[2][0])), ScrubbedDeterministicError)
    # a deterministic error anywhere in the chain wins, as in is_transient
    with pytest.raises(ConnectionError) as outer:
        try:
            raise ValueError(f"row {ROW}")
        except ValueError as inner:
            raise ConnectionError("reset") from inner
    assert not is_transient(outer.value) and not is_transient(scrub(outer.value))
    assert scrub(outer.value).causes == ("builtins.ValueError",)


def test_a_safe_error_keeps_its_message_and_loses_the_data_in_its_chain():
    import traceback

    from edulake.core.errors import is_transient
    from edulake.core.lake import StorageUnavailableError
    from edulake.privacy.scrub import scrub

    with pytest.raises(StorageUnavailableError) as raised:
        try:
            raise OSError(f"AWS Error SLOW_DOWN during PutObject of {ROW} key {SECRET}")
        except OSError as cause:
            raise StorageUnavailableError("s3://bucket/lake kept failing after retries") from cause
    out = scrub(raised.value)
    assert out is raised.value and str(out) == "s3://bucket/lake kept failing after retries"
    printed = "".join(traceback.format_exception(out))
    assert "LEAKSIS0001" not in printed and SECRET not in printed
    assert "OSError" in printed and "kept failing" in printed
    assert is_transient(out)  # the cause still says "later"


def test_the_cli_shows_a_scrubbed_error_by_its_original_type():
    from edulake import cli
    from edulake.privacy.scrub import scrub

    line, code = cli.error_line(scrub(_raised(ValueError(f"row {ROW}"))))
    assert line == "edulake: failed with ValueError (run with --debug for details)" and code == 1


def test_every_safe_name_is_a_class_and_covers_the_cli_expected_errors():
    import importlib

    from edulake import cli
    from edulake.privacy.scrub import SAFE_CLASS_NAMES

    for qualified in sorted(SAFE_CLASS_NAMES):
        module, _, name = qualified.rpartition(".")
        cls = getattr(importlib.import_module(module), name)
        assert isinstance(cls, type) and issubclass(cls, BaseException), qualified
        assert f"{cls.__module__}.{cls.__qualname__}" == qualified, qualified
    expected = set(cli.USAGE_ERRORS) | set(cli.RUN_ERRORS)
    assert expected - {"edulake.privacy.scrub.DataError"} <= SAFE_CLASS_NAMES


def test_every_task_and_flow_is_made_with_the_scrubber():
    """Every Prefect task in tasks/ is an ``edulake_task``, every flow an ``edulake_flow``."""
    import importlib
    import pkgutil

    from prefect import Flow, Task

    import flows
    import tasks
    from edulake.privacy.scrub import SCRUBBED_ATTR

    found: dict[str, bool] = {}
    for package, kind in ((tasks, Task), (flows, Flow)):
        for info in pkgutil.iter_modules(package.__path__):
            module = importlib.import_module(f"{package.__name__}.{info.name}")
            for name, obj in vars(module).items():
                if isinstance(obj, kind) and obj.fn.__module__ == module.__name__:
                    found[f"{module.__name__}.{name}"] = getattr(obj.fn, SCRUBBED_ATTR, False)
    unscrubbed = sorted(n for n, ok in found.items() if not ok)
    assert unscrubbed == [], unscrubbed
    assert len(found) > 20


@pytest.mark.usefixtures("prefect_harness")
def test_a_scrubbed_transient_error_is_still_retried():
    from prefect import flow

    from tasks.common import edulake_task, retry_if_transient

    calls = []

    @edulake_task(
        name="flaky", retries=2, retry_delay_seconds=0, retry_condition_fn=retry_if_transient
    )
    def flaky(kind: str) -> int:
        calls.append(kind)
        if len(calls) == 1:
            error = ConnectionResetError if kind == "transient" else ValueError
            raise error(f"while sending {ROW} with {SECRET}")
        return len(calls)

    @flow
    def run(kind: str) -> int:
        return flaky(kind)

    assert run("transient") == 2  # retried once, then it worked
    calls.clear()
    state = run("deterministic", return_state=True)
    assert state.is_failed() and calls == ["deterministic"]  # not retried
    exc = state.result(raise_on_failure=False)
    assert str(exc) == "ValueError" and exc.type_name == "ValueError"


def test_a_validation_error_names_its_fields_not_their_values():
    from pydantic import BaseModel, ValidationError

    class Config(BaseModel):
        dataset_id: int

    with pytest.raises(ValidationError) as raised:
        Config(dataset_id="LEAKSIS0001")
    assert safe_message(raised.value) == "ValidationError: invalid field(s) dataset_id"
