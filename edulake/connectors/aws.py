"""AWS plumbing: S3 options from a prefect-aws credentials block, boto3 sessions, access checks.

No Prefect import here: the ``AwsCredentials`` block is read by attribute (duck typing), so
``edulake`` stays importable and testable without loading Prefect.
"""

from __future__ import annotations

import contextlib
import uuid
from typing import TYPE_CHECKING, Any

import boto3
import pyarrow.fs as pafs

from edulake.core.lake import TMP_DIR, Lake, S3Options, Store

if TYPE_CHECKING:  # typing only: importing prefect_aws loads Prefect
    from prefect_aws import AwsCredentials


class S3AccessError(RuntimeError):
    """The lake's S3 store refused us (wrong credentials, endpoint or permissions)."""


def s3_options_from_credentials(credentials: AwsCredentials | None = None) -> S3Options:
    """S3 options from a prefect-aws ``AwsCredentials`` block, or the default AWS chain.

    Explicit keys and ``aws_client_parameters.endpoint_url`` (S3-compatible stores) are
    passed through. A block that names a profile or a role to assume is resolved through
    its boto3 session: those credentials are temporary (typically one hour), fine for a
    flow run. Without a block, every field is ``None`` and pyarrow/boto3 use the default
    chain (environment, profile, instance or task role), which refreshes by itself.
    """
    if credentials is None:
        return S3Options()
    params = getattr(credentials, "aws_client_parameters", None)
    endpoint = getattr(params, "endpoint_url", None) if params is not None else None
    region = credentials.region_name
    secret = credentials.aws_secret_access_key
    if credentials.aws_access_key_id and secret is not None:
        return S3Options(
            endpoint_url=endpoint,
            region=region,
            access_key_id=credentials.aws_access_key_id,
            secret_access_key=secret.get_secret_value(),
            session_token=credentials.aws_session_token,
        )
    if credentials.profile_name or credentials.assume_role_arn:
        frozen = credentials.get_boto3_session().get_credentials().get_frozen_credentials()
        return S3Options(
            endpoint_url=endpoint,
            region=region,
            access_key_id=frozen.access_key,
            secret_access_key=frozen.secret_key,
            session_token=frozen.token,
        )
    return S3Options(endpoint_url=endpoint, region=region)


def s3_options_from_block(block_name: str) -> S3Options:
    """S3 options from a saved prefect-aws ``AwsCredentials`` block, by name.

    Prefect is imported here, on use, so that ``edulake`` imports without it.
    """
    from prefect_aws import AwsCredentials

    block = AwsCredentials.load(block_name, _sync=True)  # type: ignore[call-arg]
    return s3_options_from_credentials(block)  # type: ignore[arg-type]


def boto3_session(s3: S3Options | None = None) -> boto3.Session:
    """A boto3 session with the same credentials and region as ``s3`` (or the default chain)."""
    s3 = s3 or S3Options()
    return boto3.Session(
        aws_access_key_id=s3.access_key_id,
        aws_secret_access_key=s3.secret_access_key,
        aws_session_token=s3.session_token,
        region_name=s3.region or ("us-east-1" if s3.endpoint_url else None),
    )


def describe_credentials(s3: S3Options | None) -> str:
    """Which credentials and endpoint are in use, for error messages (never the secret)."""
    s3 = s3 or S3Options()
    endpoint = s3.endpoint_url or f"AWS S3 ({s3.region or 'default region'})"
    if s3.access_key_id:
        # An access key id is an identifier, not a secret; still show only its tail.
        who = f"access key id ending in {s3.access_key_id[-4:]!r}"
    else:
        who = "the default AWS credential chain"
    return f"{who} at {endpoint}"


def check_store_access(store: Store, write: bool = True) -> None:
    """List the store's root (and, with ``write``, put and delete a probe) or raise clearly."""
    if store.is_local:
        return
    action = "list"
    try:
        selector = pafs.FileSelector(store.base, recursive=False, allow_not_found=True)
        store.fs.get_file_info(selector)
        if write:
            action = "write to"
            probe = store.path(TMP_DIR, f"access-check-{uuid.uuid4().hex}")
            with store.fs.open_output_stream(probe) as out:
                out.write(b"ok")
            action = "delete from"
            with contextlib.suppress(FileNotFoundError):
                store.fs.delete_file(probe)
    except OSError as exc:
        raise S3AccessError(
            f"cannot {action} {store.uri} with {describe_credentials(store.s3)}: {_aws_reason(exc)}"
        ) from exc


def check_lake_access(lake: Lake, write: bool = True) -> None:
    """Fail fast, with a message naming the root, credentials and endpoint, if S3 refuses."""
    check_store_access(lake.main, write)
    if lake.protected is not lake.main:
        check_store_access(lake.protected, write)


def _aws_reason(exc: BaseException) -> str:
    """The AWS error part of a pyarrow error (drops the request plumbing around it)."""
    text = str(exc)
    marker = "AWS Error "
    return text[text.index(marker) + len(marker) :] if marker in text else text


def connect_lake(
    root: str, np_root: str | None = None, s3: S3Options | None = None, check: bool = True
) -> Lake:
    """A lake, with its S3 access checked up front so a bad key fails at once, clearly."""
    lake = Lake(root, np_root, s3)
    if check and not lake.is_local:
        check_lake_access(lake)
    return lake


def client_kwargs(s3: S3Options | None) -> dict[str, Any]:
    """boto3 client keyword arguments (endpoint) matching ``s3``."""
    return {"endpoint_url": s3.endpoint_url} if s3 and s3.endpoint_url else {}


def boto3_s3_client(s3: S3Options | None) -> Any:
    """A boto3 S3 client for ``s3`` (conditional writes: pyarrow.fs has no If-Match)."""
    from botocore.config import Config

    config = Config(
        retries={"max_attempts": s3.max_attempts if s3 else 8, "mode": "standard"},
        s3={"addressing_style": "path"} if s3 and s3.endpoint_url else {},
        connect_timeout=10,
        read_timeout=30,
    )
    return boto3_session(s3).client("s3", config=config, **client_kwargs(s3))
