"""Storage faults: S3 throttling and 5xx are retried; exhausted retries fail clearly."""

from __future__ import annotations

import pytest

from edulake.connectors.files import FolderSource
from edulake.core.lake import Lake, S3Options, StorageUnavailableError, Zone
from edulake.sources.clever import pipeline
from tasks.clever import land_files, pseudonymize_reports

from ..clever.helpers import DP_HEADER, write
from ..servers.faulty_s3 import faulty_s3
from .helpers import DP, KEY


def _lake(url: str, **kw) -> Lake:
    opts = S3Options(endpoint_url=url, access_key_id="k", secret_access_key="s", **kw)
    return Lake("s3://bucket/lake", s3=opts)


@pytest.mark.parametrize("status", [503, 500])
def test_throttling_and_5xx_are_retried_by_default(status):
    with faulty_s3(failures=3, status=status) as s3:
        lake = _lake(s3.url)  # the default configuration, as the flow builds it
        assert lake.exists(Zone.STAGE2P, "clever/x.parquet") is False
        assert lake.list(Zone.SYSTEM, "ledger/clever") == []
        assert s3.requests > 3  # the three failures were retried, then it answered


def test_exhausted_retries_fail_the_task_saying_what_to_do():
    with faulty_s3(failures=10_000) as s3:
        lake = _lake(s3.url, max_attempts=3)
        with pytest.raises(StorageUnavailableError) as err:
            pseudonymize_reports.fn(lake, KEY, None, None, 0.01)
        assert s3.requests == 3  # exactly the configured attempts
    msg = str(err.value)
    assert "s3://bucket/lake" in msg and "kept failing after retries" in msg
    assert "What to do" in msg and "re-running the flow is safe" in msg
    assert "503" in msg


def test_exhausted_retries_while_landing_say_what_to_do(tmp_path):
    src = str(tmp_path / "src")
    write(src, DP, DP_HEADER + "\n")
    source = FolderSource(src)
    reports = pipeline.discover(source).reports
    with faulty_s3(failures=10_000) as s3:
        lake = _lake(s3.url, max_attempts=2)
        with pytest.raises(StorageUnavailableError, match="What to do"):
            land_files.fn(lake, source, reports, 1)


def test_non_storage_errors_are_not_disguised(tmp_path):
    lake = Lake(str(tmp_path / "lake"))
    with pytest.raises(Exception) as err:  # a bug stays a bug, not a storage message
        land_files.fn(lake, None, [("not", "a report")], 1)
    assert not isinstance(err.value, StorageUnavailableError)


# -- one transient-error vocabulary: what a task retry can fix, and what it cannot ---------
def _attempts(state) -> int:
    """How many times Prefect ran the task of this (final) state, read back from the API."""
    import asyncio

    from prefect.client.orchestration import get_client

    async def read() -> int:
        async with get_client() as client:
            run = await client.read_task_run(state.state_details.task_run_id)
            return run.run_count

    return asyncio.run(read())


def _in_a_flow(call):
    """Run ``call`` (which calls a task with return_state=True) inside a flow; its state."""
    from prefect import flow

    held = []

    @flow(name="retry-probe")
    def probe() -> None:
        held.append(call())  # kept aside: a failed state returned would fail the flow

    probe()
    return held[0]


FAST = {"retry_delay_seconds": 0}  # the task's real retry count and condition, no waiting


@pytest.mark.usefixtures("prefect_harness")
def test_a_key_mismatch_is_attempted_exactly_once(tmp_path):
    from edulake.privacy.keys import record_key
    from edulake.privacy.lookup import KeyMismatchError

    from .helpers import OTHER_KEY

    lake = Lake(str(tmp_path / "lake"))
    record_key(lake, "clever", OTHER_KEY.key_id)  # the lake was built with another key
    task = pseudonymize_reports.with_options(**FAST)
    assert task.retries >= 1  # it is a retried task: the condition is what saves the time
    state = _in_a_flow(lambda: task(lake, KEY, None, None, 0.01, return_state=True))
    assert state.is_failed()
    with pytest.raises(KeyMismatchError):
        state.result()
    assert _attempts(state) == 1


@pytest.mark.usefixtures("prefect_harness")
def test_missing_aws_credentials_are_attempted_exactly_once(tmp_path, monkeypatch):
    import botocore.exceptions

    from edulake.catalog.athena import AthenaConfig, AthenaRunner
    from tasks.athena import run_athena_query

    for name in [v for v in list(__import__("os").environ) if v.startswith("AWS_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no instance role on this host
    runner = AthenaRunner(AthenaConfig(region="us-east-1", output_location="s3://r/"))
    task = run_athena_query.with_options(**FAST)
    assert task.retries >= 1
    state = _in_a_flow(
        lambda: task(runner, "libinsight_tableau_extract", "select", "csv", return_state=True)
    )
    assert state.is_failed()
    exc = state.result(raise_on_failure=False)
    chain = []
    while exc is not None:
        chain.append(exc)
        exc = exc.__cause__ or exc.__context__
    # the task's error is scrubbed: the chain's classes are kept by name (no messages)
    names = {n for e in chain for n in getattr(e, "causes", ())}
    assert "botocore.exceptions.NoCredentialsError" in names or any(
        isinstance(e, botocore.exceptions.NoCredentialsError) for e in chain
    )
    assert _attempts(state) == 1


@pytest.mark.slow  # a real HTTP server (the LibInsight stand-in) on 127.0.0.1
@pytest.mark.usefixtures("prefect_harness")
def test_a_5xx_burst_that_outlasts_the_client_is_retried_by_the_task():
    import datetime as dt

    from edulake.connectors.http.client import RetryPolicy
    from edulake.demo.libinsight_server import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, DEMO_DATASET_ID
    from edulake.sources.libinsight.api import LibInsightClient
    from edulake.sources.libinsight.windows import Window
    from tasks.paging import fetch_all_pages

    from ..servers.libinsight import libinsight_server

    window = Window(dt.date(2022, 1, 1), dt.date(2022, 1, 31))
    # The client tries 3 times, the server fails 3 times: the first task attempt gives
    # up with a transient error, and the task's retry finds the server healthy.
    retry = RetryPolicy(base_delay=0.01, max_delay=0.02, max_attempts=3)
    with libinsight_server(burst_500=3) as srv:
        client = LibInsightClient(srv.base_url, DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, retry=retry)
        try:
            path, paginator = client.data_grid_request(DEMO_DATASET_ID, window, None)
            task = fetch_all_pages.with_options(**FAST)
            state = _in_a_flow(
                lambda: task(client.http, path, paginator, label="probe", return_state=True)
            )
        finally:
            client.close()
    assert state.is_completed(), state.message
    assert state.result().records > 0
    assert _attempts(state) == 2


@pytest.mark.parametrize(
    ("make", "transient"),
    [
        ("KeyMismatchError", False),
        ("NoCredentialsError", False),
        ("ClientError AccessDenied 403", False),
        ("ClientError ThrottlingException 400", True),
        ("ClientError 503", True),
        ("ClientError ValidationException 400", False),
        ("pyathena OperationalError from NoCredentialsError", False),
        ("pyathena OperationalError from ThrottlingException", True),
        ("S3 503 restated as StorageUnavailableError", True),
        ("S3 ACCESS_DENIED restated as StorageUnavailableError", False),
        ("S3 connection refused", True),
        ("SftpTransientError wrapped in LandingFailed", True),
        ("SftpAuthError wrapped in LandingFailed", False),
        ("TransientHttpError 429", True),
        ("HttpError 404", False),
        ("ConfigError", False),
        ("ConnectionResetError", True),
        ("a bug (TypeError) while handling a timeout", False),
        ("an unknown RuntimeError", False),
    ],
)
def test_is_transient_vocabulary(make, transient):
    import botocore.exceptions
    from pyathena.error import OperationalError

    from edulake.connectors.http.client import HttpError, TransientHttpError
    from edulake.connectors.sftp import SftpAuthError, SftpTransientError
    from edulake.core.errors import is_transient
    from edulake.core.lake import explain_storage_error
    from edulake.core.settings import ConfigError
    from edulake.privacy.lookup import KeyMismatchError
    from edulake.sources.clever.pipeline import LandingFailed

    def client_error(code: str, status: int) -> Exception:
        response = {"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}
        return botocore.exceptions.ClientError(response, "StartQueryExecution")

    def raised(exc: BaseException, outer: type[BaseException] | BaseException) -> BaseException:
        try:
            try:
                raise exc
            except BaseException as inner:
                raise (outer("wrapped") if isinstance(outer, type) else outer) from inner
        except BaseException as final:
            return final

    def s3(text: str) -> OSError:
        return OSError(f"When reading key 'k' in bucket 'b': AWS Error {text} during GetObject")

    def while_handling() -> BaseException:
        try:
            try:
                raise TimeoutError("timed out")
            except TimeoutError:
                raise TypeError("bug")  # the timeout is its context, not its cause
        except TypeError as exc:
            return exc

    cases = {
        "KeyMismatchError": lambda: KeyMismatchError("two keys"),
        "NoCredentialsError": botocore.exceptions.NoCredentialsError,
        "ClientError AccessDenied 403": lambda: client_error("AccessDeniedException", 403),
        "ClientError ThrottlingException 400": lambda: client_error("ThrottlingException", 400),
        "ClientError 503": lambda: client_error("ServiceUnavailable", 503),
        "ClientError ValidationException 400": lambda: client_error("InvalidRequestException", 400),
        "pyathena OperationalError from NoCredentialsError": lambda: raised(
            botocore.exceptions.NoCredentialsError(), OperationalError
        ),
        "pyathena OperationalError from ThrottlingException": lambda: raised(
            client_error("ThrottlingException", 400), OperationalError
        ),
        "S3 503 restated as StorageUnavailableError": lambda: raised(
            s3("UNKNOWN (HTTP status 503)"),
            explain_storage_error(s3("UNKNOWN (HTTP status 503)"), None),
        ),
        "S3 ACCESS_DENIED restated as StorageUnavailableError": lambda: raised(
            s3("ACCESS_DENIED"), explain_storage_error(s3("ACCESS_DENIED"), None)
        ),
        "S3 connection refused": lambda: s3("NETWORK_CONNECTION (curlCode: 7)"),
        "SftpTransientError wrapped in LandingFailed": lambda: raised(
            SftpTransientError("dropped"), LandingFailed
        ),
        "SftpAuthError wrapped in LandingFailed": lambda: raised(
            SftpAuthError("refused"), LandingFailed
        ),
        "TransientHttpError 429": lambda: TransientHttpError("429 x5", status=429),
        "HttpError 404": lambda: HttpError("not found", status=404),
        "ConfigError": lambda: ConfigError("EDULAKE_CATALOG__KIND='glu'"),
        "ConnectionResetError": lambda: ConnectionResetError(104, "reset by peer"),
        "a bug (TypeError) while handling a timeout": while_handling,
        "an unknown RuntimeError": lambda: RuntimeError("?"),
    }
    assert is_transient(cases[make]()) is transient


def test_every_named_deterministic_class_exists():
    """The names in edulake.core.errors are real classes (a rename would silently retry)."""
    import importlib

    from edulake.core.errors import DETERMINISTIC_CLASS_NAMES

    for qualified in sorted(DETERMINISTIC_CLASS_NAMES):
        module, _, name = qualified.rpartition(".")
        cls = getattr(importlib.import_module(module), name)
        assert isinstance(cls, type) and issubclass(cls, BaseException), qualified
        assert f"{cls.__module__}.{cls.__qualname__}" == qualified, qualified


def test_every_retried_task_uses_the_one_retry_condition():
    import importlib
    import pkgutil

    from prefect import Task

    import tasks
    from tasks.common import retry_if_transient

    retried = []
    for info in pkgutil.iter_modules(tasks.__path__):
        module = importlib.import_module(f"tasks.{info.name}")
        for obj in vars(module).values():
            if isinstance(obj, Task) and obj.retries:
                retried.append(obj.name)
                assert obj.retry_condition_fn is retry_if_transient, obj.name
    assert {"land-files", "pseudonymize-reports", "publish-tables", "fetch-pages"} <= set(retried)


# -- validate before the first write ------------------------------------------------------
def _nothing_under(root) -> bool:
    return not root.exists() or not any(root.rglob("*"))


@pytest.mark.usefixtures("prefect_harness")
def test_a_catalog_kind_typo_fails_the_clever_flow_before_any_write(tmp_path, monkeypatch):
    from edulake.core.settings import ConfigError
    from flows.clever_participation import clever_participation

    monkeypatch.setenv("EDULAKE_CATALOG__KIND", "glu")
    lake_root = tmp_path / "lake"
    with pytest.raises(ConfigError) as err:
        clever_participation(
            source="testdata", lake_root=str(lake_root), demo=True, testdata={"days": 1}
        )
    msg = str(err.value)
    assert "\n" not in msg  # one line
    assert "EDULAKE_CATALOG__KIND='glu'" in msg and "'duckdb' or 'glue'" in msg
    assert _nothing_under(lake_root)


@pytest.mark.usefixtures("prefect_harness")
def test_a_catalog_kind_typo_fails_the_libinsight_flow_before_any_write(tmp_path, monkeypatch):
    from edulake.core.settings import ConfigError
    from flows.libinsight_dataset import libinsight_dataset

    monkeypatch.setenv("EDULAKE_CATALOG__KIND", "glu")
    lake_root = tmp_path / "lake"
    with pytest.raises(ConfigError, match="EDULAKE_CATALOG__KIND"):
        libinsight_dataset(
            base_url="http://127.0.0.1:9", dataset_id=1, client_id="x", lake_root=str(lake_root)
        )
    assert _nothing_under(lake_root)


@pytest.mark.usefixtures("prefect_harness")
def test_a_catalog_parameter_typo_is_refused_before_the_flow_starts(tmp_path):
    from flows.clever_participation import clever_participation

    lake_root = tmp_path / "lake"
    state = clever_participation(
        source="testdata", lake_root=str(lake_root), demo=True, catalog="glu", return_state=True
    )
    assert state.is_failed()
    assert "catalog" in (state.message or "")
    assert _nothing_under(lake_root)


@pytest.mark.usefixtures("prefect_harness")
def test_a_missing_source_folder_fails_before_any_write(tmp_path):
    from edulake.core.settings import ConfigError
    from flows.clever_participation import clever_participation

    lake_root = tmp_path / "lake"
    with pytest.raises(ConfigError, match="is not a folder"):
        clever_participation(
            source="folder", source_path=str(tmp_path / "nope"), lake_root=str(lake_root), demo=True
        )
    assert _nothing_under(lake_root)


@pytest.mark.usefixtures("prefect_harness")
def test_an_s3_lake_without_credentials_fails_at_once(tmp_path, monkeypatch):
    from edulake.core.settings import ConfigError
    from flows.forget import forget_flow

    for name in [v for v in list(__import__("os").environ) if v.startswith("AWS_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    ids = tmp_path / "ids.txt"
    ids.write_text("nobody\n")
    with pytest.raises(ConfigError, match="needs AWS credentials and none were found"):
        forget_flow(ids_file=str(ids), lake_root="s3://edulake-lake/lake", demo=True)


def test_a_bad_setting_is_one_line_naming_the_variable_and_never_a_secret(monkeypatch):
    from edulake.core.settings import ConfigError, get_settings

    monkeypatch.setenv("EDULAKE_MAX_QUARANTINE_SHARE", "lots")
    monkeypatch.setenv("EDULAKE_CATALOG__KIND", "glu")
    with pytest.raises(ConfigError) as err:
        get_settings()
    msg = str(err.value)
    assert "\n" not in msg
    assert "EDULAKE_MAX_QUARANTINE_SHARE='lots'" in msg and "EDULAKE_CATALOG__KIND='glu'" in msg
    monkeypatch.delenv("EDULAKE_MAX_QUARANTINE_SHARE")
    monkeypatch.delenv("EDULAKE_CATALOG__KIND")
    monkeypatch.setenv("EDULAKE_S3__SECRET_ACCESS_KEY", "[1, 2]")
    monkeypatch.setenv("EDULAKE_S3", "not-json-secret-value")
    with pytest.raises(ConfigError) as err:
        get_settings()
    assert "not-json-secret-value" not in str(err.value)


@pytest.mark.usefixtures("prefect_harness")
def test_a_misspelt_setting_name_fails_before_any_write(tmp_path, monkeypatch):
    """EDULAKE_CATALOG__KNID=glue would be ignored and the run would publish to DuckDB."""
    from edulake.core.settings import ConfigError
    from flows.clever_participation import clever_participation

    monkeypatch.setenv("EDULAKE_CATALOG__KNID", "glue")
    lake_root = tmp_path / "lake"
    with pytest.raises(ConfigError) as err:
        clever_participation(source="testdata", lake_root=str(lake_root), demo=True)
    assert "EDULAKE_CATALOG__KNID" in str(err.value) and "EDULAKE_CATALOG__KIND" in str(err.value)
    assert "glue" not in str(err.value).replace("EDULAKE_CATALOG__GLUE", "")  # no values
    assert _nothing_under(lake_root)


@pytest.mark.slow  # a subprocess with Prefect's temporary server
def test_the_cli_reports_a_bad_setting_in_one_line(tmp_path):
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith(("EDULAKE_", "PREFECT_API"))}
    env.update({"EDULAKE_CATALOG__KIND": "glu", "PREFECT_HOME": str(tmp_path / "home")})
    lake_root = tmp_path / "lake"
    done = subprocess.run(
        [sys.executable, "-m", "edulake", "demo", "--lake-root", str(lake_root)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    # Prefect logs the flow run's failure (with its traceback); the CLI's own word on it
    # is one line.
    ours = [line for line in done.stderr.splitlines() if line.startswith("edulake: ")]
    assert ours == [
        "edulake: ConfigError: invalid edulake setting: EDULAKE_CATALOG__KIND='glu': "
        "Input should be 'duckdb' or 'glue'"
    ]
    assert _nothing_under(lake_root)
