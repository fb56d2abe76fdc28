"""The one place an exception becomes text: messages that never carry row data.

Row text reaches exception messages in ways the code does not control: pyarrow quotes
the offending row in ``CSV parse error: Expected 8 columns, got 9: <the row>``, a
conversion error quotes the value, a header error would list the cells of a first line
that is really data. Every such message may end up in a log line, a flow-run state
message, an artifact, an event or the exception Prefect pickles into its result storage.

So:

* :class:`DataError` is the type for problems with a file's content. Its message is
  built by edulake code from counts, column positions, record numbers, byte offsets and
  names from the spec's vocabulary only; it is shown as is.
* :func:`safe_message` renders any exception. A :class:`DataError` (or another type
  marked safe with :func:`mark_safe`) keeps its message; anything else is reduced to its
  type name and, when the message starts with a short label made of letters and spaces
  (``CSV parse error: ...``), that label: never the text after it.
* :func:`safe_traceback` is the stack of an exception (file, line, function) without
  any message, for a log line that helps debugging without quoting data.
* :func:`scrubbed` wraps a function (a task) so that whatever it raises leaves it as a
  :class:`ScrubbedError` carrying only :func:`safe_message` (safe types pass unchanged,
  so retry logic that looks at them keeps working).
"""

from __future__ import annotations

import functools
import re
import traceback
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = [
    "DataError",
    "ScrubbedError",
    "mark_safe",
    "safe_message",
    "safe_traceback",
    "scrubbed",
]

_LABEL = re.compile(r"^([A-Za-z][A-Za-z ]{0,59})(?::|$)")
_SAFE_TYPES: list[type[BaseException]] = []


class DataError(ValueError):
    """A problem with a file's content, described without any of its data.

    Build the message from counts, column positions, record numbers, byte offsets and
    the spec's own column names only. It is shown as is everywhere.
    """


class ScrubbedError(RuntimeError):
    """An exception whose message was withheld: only its type and a label remain."""


def mark_safe(*types: type[BaseException]) -> None:
    """Declare exception types whose messages are built without data (shown as is)."""
    for t in types:
        if t not in _SAFE_TYPES:
            _SAFE_TYPES.append(t)


def is_safe(exc: BaseException) -> bool:
    return isinstance(exc, (DataError, ScrubbedError, *_SAFE_TYPES))


def safe_message(exc: BaseException) -> str:
    """Text for ``exc`` that holds no row data, identifier or secret.

    A :class:`DataError` or a type marked safe keeps its message. Anything else becomes
    ``<type>`` or ``<type>: <label>``, the label being the start of the message up to
    the first colon when it is only letters and spaces (``ArrowInvalid: CSV parse
    error``); the rest of the message, where data would be, is dropped.
    """
    if is_safe(exc):
        return str(exc)
    name = type(exc).__name__
    m = _LABEL.match(str(exc).strip())
    label = m.group(1).strip() if m else ""
    return f"{name}: {label}" if label and label != name else name


def safe_traceback(exc: BaseException) -> str:
    """Where ``exc`` was raised (file:line in function, innermost last), no message."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = " <- ".join(
        f"{f.filename.rsplit('/', 1)[-1]}:{f.lineno} in {f.name}" for f in frames[::-1]
    )
    return f"{safe_message(exc)} at {where}" if where else safe_message(exc)


F = TypeVar("F", bound=Callable[..., Any])


def scrubbed(fn: F) -> F:
    """Let nothing leave ``fn`` whose message could hold data (see :func:`safe_message`)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            if is_safe(exc):
                raise
            raise ScrubbedError(safe_message(exc)) from None

    return wrapper  # type: ignore[return-value]
