"""One vocabulary for "worth retrying later" across every connector.

A task retry waits seconds to minutes. It can only help when the failure is in the
world (a server throttling, a 5xx, a dropped connection, a timeout), never when it is in
the run itself (a wrong key, a typo in a setting, missing credentials, a 4xx, a bug).

- :class:`TransientError` is the base class of the connectors' own transient errors:
  ``TransientHttpError`` (HTTP) and ``SftpTransientError`` (SFTP). S3 storage errors
  (pyarrow's, botocore's) and Athena's API errors (pyathena wraps botocore's) are
  classified from the library exception at the bottom of the chain.
- :func:`is_transient` classifies any exception, including ones raised by libraries
  (botocore, pyarrow's S3 client, pyathena, the standard library), by walking its
  ``__cause__`` / ``__context__`` chain: **a deterministic error anywhere in the chain
  wins** (an S3 ``AccessDenied`` restated as a storage error is still not retried);
  otherwise a transient one makes it transient; anything unknown is *not* retried
  (fail loudly, never silently green).

``tasks.common.retry_if_transient`` turns this into the one task retry condition.
This module imports nothing from the rest of edulake (the core layer), so the
deterministic errors of other packages are named here by their qualified class name;
a test checks that every name still resolves to a class.
"""

from __future__ import annotations

import errno
import re
from collections.abc import Iterator

__all__ = [
    "DETERMINISTIC_CLASS_NAMES",
    "DeterministicError",
    "TransientError",
    "classify",
    "is_transient",
]


class TransientError(Exception):
    """A failure in the world, not in the run: retrying later may succeed."""


class DeterministicError(Exception):
    """A failure no retry can fix (configuration, credentials, data): fail at once."""


# Errors of other edulake packages (and of libraries) that retrying cannot fix, by
# qualified class name (subclasses count too).
DETERMINISTIC_CLASS_NAMES = frozenset(
    {
        # keys and privacy: a wrong key stays wrong
        "edulake.privacy.lookup.KeyMismatchError",
        "edulake.privacy.pseudonym.MissingKeyError",
        "edulake.privacy.keys.KeyRotationInProgress",
        # SFTP: login, host key, settings, unsafe names (SftpTransientError is not one)
        "edulake.connectors.sftp.SftpConfigError",
        "edulake.connectors.sftp.HostKeyError",
        "edulake.connectors.sftp.SftpAuthError",
        "edulake.connectors.sftp.UnsafeRemoteName",
        # S3 refused the credentials or the bucket (checked up front by connect_lake)
        "edulake.connectors.aws.S3AccessError",
        # an Athena query that ran and FAILED: running it again fails again
        "edulake.catalog.athena.AthenaQueryFailed",
        # LibInsight schema drift the config must classify: it would recur on every retry
        "edulake.sources.libinsight.pipeline.DriftError",
        # botocore: no credentials, no region, a bad parameter
        "botocore.exceptions.NoCredentialsError",
        "botocore.exceptions.PartialCredentialsError",
        "botocore.exceptions.NoRegionError",
        "botocore.exceptions.ParamValidationError",
        "botocore.exceptions.UnknownServiceError",
        "botocore.exceptions.ProfileNotFound",
        "botocore.exceptions.CredentialRetrievalError",
        "botocore.exceptions.UnauthorizedSSOTokenError",
        "botocore.exceptions.TokenRetrievalError",
        # pydantic: a setting that does not parse (also a ValueError)
        "pydantic_core._pydantic_core.ValidationError",
        # DuckDB: SQL or catalog errors (the classes live in its _duckdb extension module)
        "_duckdb.CatalogException",
        "_duckdb.BinderException",
        "_duckdb.ParserException",
        "_duckdb.ConversionException",
        "_duckdb.InvalidInputException",
    }
)

# Bugs and bad input: retrying the same code on the same data fails the same way.
_DETERMINISTIC_BUILTINS: tuple[type[BaseException], ...] = (
    ValueError,  # includes UnicodeError, pydantic's ValidationError, config errors
    TypeError,
    LookupError,  # KeyError, IndexError
    AttributeError,
    NameError,
    NotImplementedError,
    AssertionError,
    ArithmeticError,
    ImportError,
    PermissionError,  # a local folder we may not write: fix the permissions
    FileNotFoundError,  # a local path that is not there: fix the path
    NotADirectoryError,
    IsADirectoryError,
)

_TRANSIENT_BUILTINS: tuple[type[BaseException], ...] = (
    ConnectionError,  # refused, reset, aborted, broken pipe
    TimeoutError,  # socket.timeout is TimeoutError
)
_TRANSIENT_ERRNOS = frozenset(
    {
        errno.EAGAIN,
        errno.EBUSY,
        errno.EINTR,
        errno.ETIMEDOUT,
        errno.ECONNRESET,
        errno.ECONNREFUSED,
        errno.ECONNABORTED,
        errno.ENETDOWN,
        errno.ENETUNREACH,
        errno.EHOSTUNREACH,
        errno.EPIPE,
    }
)

# AWS error codes (botocore ClientError, pyarrow's "AWS Error <CODE>") that mean "later".
_TRANSIENT_AWS_CODES = frozenset(
    {
        "throttling",
        "throttlingexception",
        "throttledexception",
        "toomanyrequestsexception",
        "requestlimitexceeded",
        "slowdown",
        "slow_down",
        "requesttimeout",
        "requesttimeoutexception",
        "request_timeout",
        "requestthrottled",
        "requestthrottledexception",
        "provisionedthroughputexceededexception",
        "internalerror",
        "internal_failure",
        "internalfailure",
        "internalserverexception",
        "internalservererror",
        "serviceunavailable",
        "service_unavailable",
        "serviceunavailableexception",
        "network_connection",
        "transactionconflictexception",
        "concurrentmodificationexception",
        "priorrequestnotcomplete",
        "ec2throttledexception",
        "toomanyrequests",
    }
)
_TRANSIENT_BOTOCORE = frozenset(
    {
        "EndpointConnectionError",
        "ConnectionClosedError",
        "ConnectTimeoutError",
        "ReadTimeoutError",
        "ProxyConnectionError",
        "HTTPClientError",
        "ResponseStreamingError",
    }
)
_PYARROW_AWS = re.compile(r"AWS Error ([A-Z_]+)(?: \(HTTP status (\d{3})\))?")
_HTTP_STATUS = re.compile(r"(?:HTTP status|status code|HTTP)\s*:?\s*(\d{3})\b", re.IGNORECASE)


def _transient_status(status: int) -> bool:
    """429 (too many requests), 408 (request timeout) and 5xx mean "later"; other 4xx never."""
    return status in (408, 425, 429) or 500 <= status <= 599


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception and what caused it, as Python prints it (cause, else context)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        if current.__cause__ is not None:
            current = current.__cause__
        elif not current.__suppress_context__:
            current = current.__context__
        else:
            current = None


def _qualified_names(exc: BaseException) -> Iterator[str]:
    for cls in type(exc).__mro__:
        yield f"{cls.__module__}.{cls.__qualname__}"


def _aws_client_error(exc: BaseException) -> bool | None:
    """A botocore ClientError: its error code and HTTP status decide."""
    response = getattr(exc, "response", None)
    if not isinstance(response, dict) or "Error" not in response:
        return None
    code = str(response.get("Error", {}).get("Code", "")).lower()
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    if code in _TRANSIENT_AWS_CODES:
        return True
    if isinstance(status, int):
        return _transient_status(status)
    return False  # a coded AWS refusal without a status: AccessDenied, ValidationException ...


def _storage_os_error(exc: OSError) -> bool | None:
    """pyarrow's S3 errors are plain OSErrors whose text carries the AWS error."""
    text = str(exc)
    match = _PYARROW_AWS.search(text)
    if match is None:
        return None
    code, status = match.group(1).lower(), match.group(2)
    if code in _TRANSIENT_AWS_CODES:
        return True
    if status is not None:
        return _transient_status(int(status))
    # No HTTP answer at all (curl: connection, DNS, timeout) is transient; a coded refusal
    # (ACCESS_DENIED, NO_SUCH_BUCKET, INVALID_ACCESS_KEY_ID, ...) is not.
    return "curl" in text.lower()


def classify(exc: BaseException) -> bool | None:
    """One exception alone (not its chain): True transient, False deterministic, None unknown."""
    if isinstance(exc, DeterministicError):
        return False
    if isinstance(exc, TransientError):
        return True
    names = set(_qualified_names(exc))
    if names & DETERMINISTIC_CLASS_NAMES:
        return False
    # HTTP errors that carry a status (edulake's HttpError, httpx.HTTPStatusError).
    status = getattr(exc, "status", None)
    if status is None:
        response = getattr(exc, "response", None)
        status = getattr(response, "status_code", None)
    if isinstance(status, int) and 100 <= status <= 599:
        return _transient_status(status)
    aws = _aws_client_error(exc)
    if aws is not None:
        return aws
    if type(exc).__module__.startswith("botocore") and type(exc).__name__ in _TRANSIENT_BOTOCORE:
        return True
    if isinstance(exc, _DETERMINISTIC_BUILTINS):
        return False
    if isinstance(exc, OSError):
        storage = _storage_os_error(exc)
        if storage is not None:
            return storage
        if isinstance(exc, _TRANSIENT_BUILTINS) or exc.errno in _TRANSIENT_ERRNOS:
            return True
        return None
    if isinstance(exc, _TRANSIENT_BUILTINS):
        return True
    names_text = " ".join(names).lower()
    if "httpx." in names_text and ("timeout" in names_text or "networkerror" in names_text):
        return True  # httpx transport trouble (the HTTP client restates it, this is a fallback)
    if "duckdb." in names_text and "could not set lock" in str(exc).lower():
        return True  # another process holds the catalog file for a moment
    return None


def is_transient(exc: BaseException) -> bool:
    """Whether retrying later could help: deterministic anywhere in the chain wins, unknown is no."""
    verdicts = [classify(e) for e in _chain(exc)]
    if False in verdicts:
        return False
    return True in verdicts
