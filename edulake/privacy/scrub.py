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
* :func:`scrub` turns any exception into one that may leave a task or a flow: a safe
  exception stays itself (its cause and context chain scrubbed in turn); any other
  becomes a :class:`ScrubbedError` whose message is :func:`safe_message`, which keeps the
  original type's name (``type_name``, ``type_names``) and the frames of its traceback
  (file, line, code: never a message), and drops its chain. Its class keeps what retries
  need: :class:`ScrubbedTransientError` for what :func:`edulake.core.errors.is_transient`
  calls transient, :class:`ScrubbedDeterministicError` for a chain with a deterministic
  error in it, so the one retry condition decides as it would have on the original.
* :func:`safe_handle_error` replaces Python's report of a failing log handler (a
  closed stream, a full disk), which prints the exception being handled at the time and
  the record's message and arguments in clear, by one line of names only. It is
  installed for every handler when edulake is imported (:func:`guard_logging_errors`).
* :func:`scrubbed` wraps a function (a task, a flow) so that whatever it raises leaves it
  through :func:`scrub`: the state message, the log lines and traceback Prefect writes,
  and the exception it pickles into its result storage hold only that.

Which types are safe: :class:`DataError`, the types named in :data:`SAFE_CLASS_NAMES`
(edulake's own errors, whose messages are built from counts, names from the specs,
settings, paths and key ids; the CLI shows these as they are) and any type given to
:func:`mark_safe`.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import re
import sys
import traceback
from collections.abc import Callable
from typing import Any, TypeVar

from edulake.core.errors import DeterministicError, TransientError, classify, is_transient

__all__ = [
    "SAFE_CLASS_NAMES",
    "DataError",
    "ScrubbedDeterministicError",
    "ScrubbedError",
    "ScrubbedTransientError",
    "guard_logging_errors",
    "mark_safe",
    "safe_handle_error",
    "safe_message",
    "safe_traceback",
    "scrub",
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
    """An exception whose message was withheld: only its type and a label remain.

    ``type_name`` is the original exception's class name, ``type_names`` the qualified
    names of its classes (the CLI classifies by them), ``causes`` the qualified class
    names of its cause/context chain, outermost first (names only, for debugging)."""

    def __init__(
        self,
        message: str,
        type_name: str = "",
        type_names: tuple[str, ...] = (),
        causes: tuple[str, ...] = (),
    ):
        super().__init__(message)
        self.type_name = type_name or type(self).__name__
        self.type_names = tuple(type_names)
        self.causes = tuple(causes)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self), self.type_name, self.type_names, self.causes))


class ScrubbedTransientError(ScrubbedError, TransientError):
    """A scrubbed exception that was transient: the retry condition still retries it."""


class ScrubbedDeterministicError(ScrubbedError, DeterministicError):
    """A scrubbed exception with a deterministic error in its chain: never retried."""


# edulake's own errors whose messages are built from counts, spec and setting names,
# paths, key ids and redacted URLs, never from row data or secrets (by qualified name:
# the privacy layer imports neither flows/ nor tasks/). The CLI's expected errors are
# these (a test checks that every name resolves to a class and that the CLI's lists
# are covered).
SAFE_CLASS_NAMES = frozenset(
    {
        "edulake.core.settings.ConfigError",
        "edulake.core.clock.ClockError",
        "edulake.core.layout.RawFilesUnderLakeRoot",
        "edulake.core.lease.LeaseError",
        "edulake.core.lake.StorageUnavailableError",
        "edulake.core.landing.IncompleteTransferError",
        "edulake.connectors.files.SourceRootError",
        "edulake.connectors.sftp.SftpError",
        "edulake.connectors.sftp.SftpConfigError",
        "edulake.connectors.sftp.HostKeyError",
        "edulake.connectors.sftp.SftpAuthError",
        "edulake.connectors.aws.S3AccessError",
        "edulake.connectors.http.client.HttpError",
        "edulake.connectors.http.paging.PageFormatError",
        "edulake.connectors.http.paging.PagesChangedError",
        "edulake.catalog.athena.AthenaQueryFailed",
        "edulake.privacy.pseudonym.WeakKeyError",
        "edulake.privacy.pseudonym.MissingKeyError",
        "edulake.privacy.keys.DemoKeyError",
        "edulake.privacy.keys.KeyRotationInProgress",
        "edulake.privacy.lookup.KeyMismatchError",
        "edulake.specs.HeaderMismatch",
        "edulake.specs.IdentifierPolicyError",
        "edulake.sources.clever.decisions.SkipError",
        "edulake.sources.clever.pipeline.LandingFailed",
        "edulake.sources.libinsight.config.DatasetMismatchError",
        "edulake.sources.libinsight.pipeline.DriftError",
        "edulake.sources.libinsight.windows.NoStartError",
        "edulake.sources.registry.UnknownTableError",
        "edulake.sources.registry.StaleSourceMissing",
        "edulake.privacy.rotation.RotationIncomplete",
        "edulake.fanout.ChildrenFailed",
        "edulake.report.NoCatalogError",
        "edulake.report.NothingPublishedError",
        "edulake.report.browser.BrowserMissingError",
        "edulake.sources.libinsight.rotate.RotationError",
        "flows.clever_participation.FilesFailed",
        "flows.clever_participation.SourceStale",
        "tasks.audit.LeakFound",
        "tasks.libinsight.FutureWatermarkError",
        "tasks.libinsight.LegacyTableError",
        "tasks.libinsight.MissingClientSecretError",
        "tasks.libinsight.TableOwnedError",
        "tasks.maintenance.ForgetIncomplete",
    }
)


def mark_safe(*types: type[BaseException]) -> None:
    """Declare exception types whose messages are built without data (shown as is)."""
    for t in types:
        if t not in _SAFE_TYPES:
            _SAFE_TYPES.append(t)


def _qualified_names(exc: BaseException) -> tuple[str, ...]:
    return tuple(f"{c.__module__}.{c.__qualname__}" for c in type(exc).__mro__)


def is_safe(exc: BaseException) -> bool:
    """Whether ``exc``'s own message is built without data (it is shown as is)."""
    if isinstance(exc, (DataError, ScrubbedError, *_SAFE_TYPES)):
        return True
    return not SAFE_CLASS_NAMES.isdisjoint(_qualified_names(exc))


def safe_message(exc: BaseException) -> str:
    """Text for ``exc`` that holds no row data, identifier or secret.

    A :class:`DataError` or a type marked safe keeps its message. Anything else becomes
    ``<type>`` or ``<type>: <label>``, the label being the start of the message up to
    the first colon when it is only letters and spaces (``ArrowInvalid: CSV parse
    error``); the rest of the message, where data would be, is dropped. A pydantic
    ``ValidationError`` (a config or settings model) names the fields that failed, never
    the input values.
    """
    if is_safe(exc):
        return str(exc)
    name = type(exc).__name__
    errors = getattr(exc, "errors", None)
    if name == "ValidationError" and callable(errors):
        try:
            locs = sorted({".".join(str(p) for p in e.get("loc", ())) or "?" for e in errors()})
        except Exception:  # not pydantic's: the generic rule below
            locs = []
        if locs:
            return f"{name}: invalid field(s) {', '.join(locs)}"
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


def safe_handle_error(self: logging.Handler, record: logging.LogRecord) -> None:
    """What a log handler does when its ``emit`` fails: one line of names, no data.

    Python's own ``Handler.handleError`` prints the handler's traceback, with the
    exception being handled at the time chained onto it (its message may quote a row),
    then the record's message and arguments: all in clear, on stderr, which the worker's
    console and its log collector keep. This prints which handler failed with which error
    type, for which logger and call site. Like Python's, it prints nothing when
    ``logging.raiseExceptions`` is off, and it never raises.
    """
    if not logging.raiseExceptions or sys.stderr is None:
        return
    exc = sys.exc_info()[1]
    failed = type(exc).__name__ if exc is not None else "an error"
    with contextlib.suppress(Exception):  # stderr is what failed: nothing left to tell
        sys.stderr.write(
            "--- Logging error (edulake: details withheld) ---\n"
            f"{type(self).__name__} failed with {failed} on a record of logger "
            f"{record.name!r} from {record.filename}:{record.lineno} in {record.funcName}\n"
        )


def guard_logging_errors() -> None:
    """Make :func:`safe_handle_error` every handler's report (Prefect's defer to it)."""
    logging.Handler.handleError = safe_handle_error  # type: ignore[method-assign]


F = TypeVar("F", bound=Callable[..., Any])


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and what caused it, as Python prints it (cause, else context)."""
    out: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not e for e in out):
        out.append(current)
        current = current.__cause__ or (
            None if current.__suppress_context__ else current.__context__
        )
    return out


def scrub(exc: BaseException, _seen: set[int] | None = None) -> BaseException:
    """``exc`` as it may leave a task or a flow (see the module docstring).

    A safe exception is returned itself, its ``__cause__`` and ``__context__`` replaced
    by their scrubbed forms; any other is replaced by a :class:`ScrubbedError` (or its
    transient or deterministic kind, as :func:`~edulake.core.errors.is_transient` judged
    the whole chain) with the original's traceback frames and no chain.
    """
    seen = _seen if _seen is not None else set()
    if id(exc) in seen:
        return exc
    seen.add(id(exc))
    if is_safe(exc):
        if exc.__cause__ is not None:
            exc.__cause__ = scrub(exc.__cause__, seen)
        if exc.__context__ is not None:
            exc.__context__ = scrub(exc.__context__, seen)
        return exc
    chain = _chain(exc)
    kind: type[ScrubbedError]
    if any(classify(e) is False for e in chain):
        kind = ScrubbedDeterministicError
    elif is_transient(exc):
        kind = ScrubbedTransientError
    else:
        kind = ScrubbedError
    causes = tuple(_qualified_names(e)[0] for e in chain[1:])
    out = kind(safe_message(exc), type(exc).__name__, _qualified_names(exc), causes)
    out.__suppress_context__ = True
    return out.with_traceback(exc.__traceback__)


SCRUBBED_ATTR = "__edulake_scrubbed__"


def scrubbed(fn: F) -> F:
    """Let nothing leave ``fn`` whose message could hold data (see :func:`scrub`)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            out = scrub(exc)
            if out is exc:
                raise
        # raised outside the except block: the original is not even its __context__
        raise out

    setattr(wrapper, SCRUBBED_ATTR, True)
    return wrapper  # type: ignore[return-value]
