"""Resolution shared by every flow: the lake, the pseudonymization key, the catalog;
and the decorators every task and flow is made with (:func:`edulake_task`,
:func:`edulake_flow`): Prefect's, plus the one scrubber for whatever leaves them.

Block names come in as flow parameters (with defaults); nothing here loads a block by a
hard-coded name. Secrets are read here and passed on as objects, never as parameters.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
import typing
from collections.abc import Callable, Mapping
from typing import Any, ParamSpec, TypeVar
from uuid import UUID

from prefect import Flow, Task, flow, get_run_logger, task
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.blocks.system import Secret
from prefect.context import FlowRunContext, TaskRunContext
from prefect.exceptions import MissingContextError

from edulake.catalog import Catalog, open_catalog
from edulake.core.errors import is_transient
from edulake.core.lake import Lake, S3Options, StorageUnavailableError, explain_storage_error
from edulake.core.layout import check_layout
from edulake.core.settings import (
    CATALOG_KINDS,
    SOURCE_KINDS,
    ConfigError,
    Settings,
    check_setting_names,
    get_settings,
    resolve_np_root,
)
from edulake.privacy.keys import DemoKeyError, refuse_real_key_on_demo_lake
from edulake.privacy.pseudonym import PseudonymKey, WeakKeyError
from edulake.privacy.scrub import scrubbed


def logger() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    """The run logger inside a run, the module logger outside (plain function use)."""
    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger("edulake")


F = TypeVar("F", bound=Callable[..., Any])
P = ParamSpec("P")
R = TypeVar("R")


def edulake_task(**options: Any) -> Callable[[Callable[P, R]], Task[P, R]]:
    """``prefect.task(**options)`` over the function, made to leak nothing when it fails.

    Whatever exception leaves the task goes through :func:`edulake.privacy.scrub.scrub`
    first: edulake's own (safe) errors keep their message, anything else keeps only its
    type and a short label, and no cause or context chain carries the original along.
    So the task run's state message, the log lines and traceback Prefect writes, the
    ``retry_condition_fn`` and the exception pickled into the result storage see no row
    data, header cells or secrets. Retrying still works: a transient error stays
    transient for :func:`retry_if_transient` (see ``ScrubbedTransientError``).
    """

    def decorate(fn: Callable[P, R]) -> Task[P, R]:
        return task(**options)(scrubbed(fn))  # type: ignore[no-any-return]

    return decorate


def edulake_flow(**options: Any) -> Callable[[Callable[P, R]], Flow[P, R]]:
    """``prefect.flow(**options)`` whose own failures are scrubbed like a task's (the
    flow run's state message and the exception of its failed state)."""

    def decorate(fn: Callable[P, R]) -> Flow[P, R]:
        # Prefect validates parameters against the annotations, resolved in the globals of
        # the function it is given (the wrapper's): resolve them here, in the flow's module.
        fn.__annotations__ = typing.get_type_hints(fn, include_extras=True)
        return flow(**options)(scrubbed(fn))  # type: ignore[no-any-return]

    return decorate


def _failure(state: Any) -> BaseException | None:
    """The exception a failed task state holds (or None)."""
    data = getattr(state, "data", None)
    if isinstance(data, BaseException):
        return data
    try:
        exc = state.result(raise_on_failure=False)
    except Exception as raised:  # a result that cannot be read raises its own error
        exc = raised
    return exc if isinstance(exc, BaseException) else None


def retry_if_transient(task: Any, task_run: Any, state: Any) -> bool:
    """The one task retry condition: retry only what retrying can fix.

    Transient (throttling, 5xx, 429/408, dropped connections, timeouts) is retried;
    deterministic (a wrong key, a bad setting, missing credentials, another 4xx, a bug)
    and unknown errors fail at once. See :func:`edulake.core.errors.is_transient`.
    """
    exc = _failure(state)
    retry = exc is not None and is_transient(exc)
    if exc is not None:
        # The exception type only: a message may quote a path or a server's answer.
        logging.getLogger("edulake.retry").info(
            "%s failed with %s: %s",
            getattr(task, "name", "task"),
            type(exc).__name__,
            "transient, retrying" if retry else "not retried (no retry can fix it)",
        )
    return retry


def _is_storage_error(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and "AWS Error" in str(exc)


def explain_storage_errors(fn: F) -> F:
    """Restate S3 errors that exhausted the client's retries with what to do next."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except StorageUnavailableError:
            raise
        except Exception as exc:
            cause: BaseException | None = exc  # wrappers (LandingFailed) keep it as cause
            while cause is not None and not _is_storage_error(cause):
                cause = cause.__cause__
            if not isinstance(cause, OSError):
                raise
            lakes = [a for a in (*args, *kwargs.values()) if isinstance(a, Lake)]
            raise explain_storage_error(cause, lakes[0] if lakes else None) from exc

    return wrapper  # type: ignore[return-value]


def s3_options(aws_credentials_block: str | None, settings: Settings) -> S3Options | None:
    """S3 options from a prefect-aws AwsCredentials block, or settings, or None (AWS chain)."""
    if aws_credentials_block:
        from edulake.connectors.aws import s3_options_from_block  # type: ignore[import-not-found,unused-ignore]

        return s3_options_from_block(aws_credentials_block)  # type: ignore[no-any-return,unused-ignore]
    return settings.s3.options()


def open_lake(
    lake_root: str | None,
    np_root: str | None,
    aws_credentials_block: str | None = None,
    catalog: str | None = None,
) -> Lake:
    """:func:`validate_run` (every check that needs no write), then :func:`make_lake`: how a
    run that needs nothing else checked first opens its lake."""
    validate_run(
        lake_root=lake_root,
        np_root=np_root,
        catalog=catalog,
        aws_credentials_block=aws_credentials_block,
    )
    return make_lake(lake_root, np_root, aws_credentials_block)


def make_lake(
    lake_root: str | None, np_root: str | None, aws_credentials_block: str | None = None
) -> Lake:
    """The lake for this run: flow parameters override settings."""
    from edulake.connectors.aws import connect_lake

    settings = get_settings()
    root = lake_root or settings.lake.root
    protected = resolve_np_root(root, np_root or settings.lake.np_root)
    if protected is None:
        logger().warning(
            "NO NP ROOT: the protected zones (stage1np raw files, stage2np lookups, quarantine) "
            "share the lake "
            "root %s with the analysts' tables; keep analysts out of them by IAM prefix, or "
            "set EDULAKE_LAKE__NP_ROOT / np_root to a separate bucket (see docs/aws.md)",
            root,
        )
    # An S3 lake's access is checked here: a wrong key fails at once, naming the bucket,
    # endpoint and key id (never the secret), not deep inside a task.
    lake = connect_lake(root, protected, s3_options(aws_credentials_block, settings))
    check_layout(lake)  # raw files left under the lake root by an older edulake: refused
    return lake


def _block_secret(block_name: str) -> str | None:
    """The key text in the block of that name: a Prefect ``Secret``, else a prefect-aws
    ``AwsSecret`` (AWS Secrets Manager, read with the block's credentials); None when
    neither type has a block of that name."""
    from prefect_aws.secrets_manager import AwsSecret

    try:
        return str(Secret.load(block_name, _sync=True).get())  # type: ignore[call-arg,union-attr]
    except (ValueError, RuntimeError):
        pass  # not a Secret block
    try:
        aws = AwsSecret.load(block_name, _sync=True)  # type: ignore[call-arg]
    except (ValueError, RuntimeError):
        return None
    value = aws.read_secret(_sync=True)  # type: ignore[union-attr]
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def resolve_key(
    hmac_key_block: str | None,
    demo: bool,
    *,
    demo_refusal: str | None = None,
    lake: Lake | None = None,
    source: str | None = None,
) -> PseudonymKey:
    """The pseudonymization key: the block (a Prefect ``Secret`` or a prefect-aws
    ``AwsSecret``, by name), else EDULAKE_HMAC_KEY, else the demo key (demo only).

    ``demo_refusal`` (from :func:`edulake.privacy.keys.demo_refusal`) refuses demo mode on
    a source that may hold real data; with ``lake`` and ``source``, a real key is refused on
    a lake that ever held the demo key. The key text is 32 bytes in hex or base64; errors
    never show it."""
    if demo and demo_refusal:
        raise DemoKeyError(demo_refusal)
    secret: str | None = None
    origin = f"block {hmac_key_block!r}"
    if hmac_key_block:
        secret = _block_secret(hmac_key_block)  # no such block: fall back to the environment
    if not secret:
        env = get_settings().hmac_key
        secret = env.get_secret_value() if env else None
        origin = "EDULAKE_HMAC_KEY"
    try:
        key = PseudonymKey.resolve(secret, demo=demo and not secret)
    except WeakKeyError as exc:  # say where it came from; the message never holds the key
        raise WeakKeyError(f"{origin}: {exc}") from None
    if lake is not None and source is not None:
        refuse_real_key_on_demo_lake(lake, source, key.key_id)
    if key.demo:
        logger().warning(
            "DEMO MODE: pseudonyms use the public demo key (key_id %s); they protect nothing. "
            "Never run demo mode on real student data.",
            key.key_id,
        )
    else:
        logger().info("pseudonymization key loaded (key_id %s)", key.key_id)
    return key


def make_catalog(lake: Lake, catalog: str | None = None) -> Catalog:
    """The catalog for this run: parameter overrides settings."""
    settings = get_settings()
    c = settings.catalog
    return open_catalog(
        catalog or c.kind,
        lake,
        duckdb_path=c.duckdb_path,
        database_prefix=c.glue_database_prefix,
    )


def _is_s3(root: str | None) -> bool:
    return bool(root) and str(root).startswith("s3://")


def validate_run(
    *,
    lake_root: str | None = None,
    np_root: str | None = None,
    catalog: str | None = None,
    source: str | None = None,
    source_path: str | None = None,
    aws_credentials_block: str | None = None,
) -> Settings:
    """Every check that needs no write, before the first write: a bad run fails here, at once.

    Settings parse (a bad ``EDULAKE_*`` value is one line naming the variable; a misspelt
    ``EDULAKE_<SECTION>__<FIELD>`` name is refused instead of silently ignored), the catalog
    kind, the Clever source and its folder, and, for an S3 lake or the Glue catalog, that
    AWS credentials can be found. Raises :class:`ConfigError` (never retried).
    """
    settings = get_settings()
    check_setting_names(dict(os.environ))
    kind = catalog or settings.catalog.kind
    if kind not in CATALOG_KINDS:
        raise ConfigError(f"unknown catalog {kind!r}: use {' or '.join(CATALOG_KINDS)}")
    if source is not None:
        if source not in SOURCE_KINDS:
            raise ConfigError(f"unknown source {source!r}: use {', '.join(SOURCE_KINDS)}")
        if source == "folder":
            if not source_path:
                raise ConfigError(
                    "source='folder' needs source_path: a folder laid out like Clever's SFTP"
                )
            if not os.path.isdir(source_path):
                raise ConfigError(f"source_path {source_path!r} is not a folder")
    roots = [lake_root or settings.lake.root, np_root or settings.lake.np_root]
    if any(_is_s3(r) for r in roots) or kind == "glue":
        _check_aws_credentials(aws_credentials_block, settings, kind)
    return settings


def _check_aws_credentials(block: str | None, settings: Settings, kind: str) -> None:
    """AWS credentials must be resolvable (keys, a block, or the default chain)."""
    from edulake.connectors.aws import boto3_session

    try:
        options = s3_options(block, settings)
    except ValueError as exc:  # no such block, or a block that does not load
        raise ConfigError(f"the AwsCredentials block {block!r} cannot be loaded") from exc
    if options is not None and options.access_key_id:
        return
    if boto3_session(options).get_credentials() is None:
        needs = "the Glue catalog" if kind == "glue" else "an s3:// lake root"
        raise ConfigError(
            f"{needs} needs AWS credentials and none were found: set EDULAKE_S3__ACCESS_KEY_ID "
            "and EDULAKE_S3__SECRET_ACCESS_KEY, pass aws_credentials_block, or give the worker "
            "a role (AWS default chain)"
        )


# -- run reports: words, not reprs ---------------------------------------------------------


def count_words(counts: Mapping[str, int], words: Mapping[str, str] | None = None) -> str:
    """``18 landed, 2 already landed``: counts in words (largest first), never a dict repr.

    ``words`` names each key for people (``{"unchanged": "already landed"}``); a key
    without a word is shown as it is (a table or column name)."""
    words = words or {}
    parts = [
        f"{n:,} {words.get(k, k)}"
        for k, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        if n
    ]
    return ", ".join(parts) or "none"


def top_reasons(reasons: Mapping[str, int], limit: int = 3) -> str:
    """``x: not a valid date (12), expected 9 fields, got 8 (1)``: the commonest first."""
    ranked = sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))
    text = ", ".join(f"{reason} ({n:,})" for reason, n in ranked[:limit])
    more = len(ranked) - limit
    return text + (f" and {more} other reason(s)" if more > 0 else "")


class Progress:
    """A progress artifact for long work, updated as the work advances.

    Updates are throttled: one when ``min_interval`` seconds have passed since the last
    and the share moved, or when the work is done, so a thousand files do not make a
    thousand API calls. Callable from worker threads. Progress is for people watching:
    a failed update is logged and never fails the work, and outside a flow or task run
    (a plain function call) nothing is sent.
    """

    def __init__(
        self,
        key: str,
        total: int,
        description: str,
        *,
        min_interval: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.key, self.total, self.description = key, total, description
        self.done = 0
        self._finished = False
        self.min_interval = min_interval
        self._clock = clock
        self._lock = threading.Lock()
        self._sent = -1.0
        self._sent_at = clock()
        self.updates = 0  # how many updates reached the API (tests, reports)
        self.artifact_id: UUID | None = None
        if FlowRunContext.get() is None and TaskRunContext.get() is None:
            return  # a plain call (tests, the benchmark): nobody watches, no API to tell
        try:
            self.artifact_id = create_progress_artifact(  # type: ignore[assignment]
                progress=self.percent, key=key, description=self._text()
            )
            self._sent = self.percent
        except Exception as exc:  # progress is for watching: never fail the work
            logger().warning("progress artifact %s not created (%s)", key, type(exc).__name__)

    @property
    def percent(self) -> float:
        """Share done, 0-100; a total not known yet (0) is 0 until :meth:`finish`."""
        if self._finished:
            return 100.0
        return 0.0 if self.total <= 0 else min(100.0, 100.0 * self.done / self.total)

    def _text(self) -> str:
        return f"{self.description}: {self.done:,} of {self.total:,}"

    def set_total(self, total: int) -> None:
        """The total learnt late (LibInsight's page count arrives with page 1)."""
        with self._lock:
            self.total = total
        self.advance(0)

    def restart(self) -> None:
        """The work starts over (a fetch whose pages changed under it)."""
        with self._lock:
            self.done = 0

    def advance(self, n: int = 1) -> None:
        """``n`` more items done; sends an update when it is due."""
        with self._lock:
            self.done += n
            now = self._clock()
            finished = self.total > 0 and self.done >= self.total
            due = now - self._sent_at >= self.min_interval
            if self.percent == self._sent or not (finished or due):
                return
            self._send(now)

    def finish(self) -> None:
        """The work is over (also when fewer items than announced were done)."""
        with self._lock:
            self.done = max(self.done, self.total)
            self._finished = True
            if self.percent != self._sent:
                self._send(self._clock())

    def _send(self, now: float) -> None:
        if self.artifact_id is None:
            return
        try:
            update_progress_artifact(self.artifact_id, self.percent, description=self._text())
        except Exception as exc:
            logger().warning("progress artifact %s not updated (%s)", self.key, type(exc).__name__)
            return
        self._sent, self._sent_at = self.percent, now
        self.updates += 1
