"""Create the Prefect blocks (and variables) edulake's deployments need, from the environment.

    python -m deployments.blocks            # create/update what the environment describes
    python -m deployments.blocks --dry-run  # say what would be created, change nothing

Idempotent (blocks are saved with overwrite=True); prints block names and public key
ids only, never a secret. What is read (each group is skipped when its first variable
is unset):

  HMAC key        EDULAKE_HMAC_KEY (or EDULAKE_HMAC_KEY_FILE)   -> Secret edulake-hmac-key
                  (32 random bytes as 64 hex or base64: `python -m edulake keygen`)
                  --generate-hmac-key creates a random one, only if none exists yet
  SFTP (Clever)   EDULAKE_SFTP_HOST, EDULAKE_SFTP_USERNAME, EDULAKE_SFTP_HOST_KEY(_FILE),
                  EDULAKE_SFTP_PRIVATE_KEY(_FILE) [+ _PASSPHRASE] or EDULAKE_SFTP_PASSWORD,
                  EDULAKE_SFTP_PORT, EDULAKE_SFTP_REMOTE_ROOT   -> SftpServer edulake-clever-sftp
  AWS             AWS_REGION (or AWS_DEFAULT_REGION), AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
                  AWS_SESSION_TOKEN, AWS_PROFILE, AWS_ENDPOINT_URL -> AwsCredentials edulake-aws
                  (region only: the task role / default credential chain supplies the keys)
  LibInsight      EDULAKE_LIBINSIGHT_CLIENT_SECRET(_FILE)       -> Secret edulake-libinsight-secret
  Variables       EDULAKE_WORK_POOL -> edulake_work_pool,
  (prefect.yaml   EDULAKE_LIBINSIGHT_BASE_URL -> libinsight_base_url,
  reads them)     EDULAKE_LIBINSIGHT_DATASET_ID -> libinsight_dataset_id (a number),
                  EDULAKE_LIBINSIGHT_INSTRUCTION_DATASET_ID -> libinsight_instruction_dataset_id,
                  EDULAKE_LIBINSIGHT_CLIENT_ID -> libinsight_client_id

Block names can be changed with EDULAKE_<GROUP>_BLOCK (e.g. EDULAKE_SFTP_BLOCK); pass the
same names to the flows' *_block parameters.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect.blocks.core import Block
from prefect.blocks.system import Secret
from prefect.variables import Variable
from pydantic import SecretStr

from edulake.privacy.pseudonym import PseudonymKey, generate_key_text

HMAC_BLOCK = "edulake-hmac-key"
SFTP_BLOCK = "edulake-clever-sftp"
AWS_BLOCK = "edulake-aws"
LIBINSIGHT_SECRET_BLOCK = "edulake-libinsight-secret"  # noqa: S105 (a block name)

# environment variable -> (Prefect variable, JSON type the flow parameter takes)
VARIABLES: dict[str, tuple[str, type[str] | type[int]]] = {
    "EDULAKE_WORK_POOL": ("edulake_work_pool", str),
    "EDULAKE_LIBINSIGHT_BASE_URL": ("libinsight_base_url", str),
    "EDULAKE_LIBINSIGHT_DATASET_ID": ("libinsight_dataset_id", int),
    "EDULAKE_LIBINSIGHT_INSTRUCTION_DATASET_ID": ("libinsight_instruction_dataset_id", int),
    "EDULAKE_LIBINSIGHT_CLIENT_ID": ("libinsight_client_id", str),
}


class ConfigError(ValueError):
    """The environment describes a block incompletely or wrongly."""


@dataclass(frozen=True)
class Planned:
    """A block to save: its name, what it is, and how to build it."""

    name: str
    kind: str
    build: Callable[[], Block]
    note: str = ""


def _value(env: Mapping[str, str], name: str) -> str | None:
    """An environment value, or the content of the file NAME_FILE points at."""
    if env.get(name):
        return env[name]
    path = env.get(f"{name}_FILE")
    if path:
        return Path(path).read_text(encoding="utf-8")
    return None


def _required(env: Mapping[str, str], name: str) -> str:
    """An environment value that must be set for its group."""
    value = _value(env, name)
    if not value:
        raise ConfigError(f"{name} (or {name}_FILE) is required")
    return value


def plan_hmac(env: Mapping[str, str]) -> Planned | None:
    """The Secret block holding the pseudonymization key."""
    raw = _value(env, "EDULAKE_HMAC_KEY")
    if raw is None:
        return None
    key_text = raw.strip()
    key = PseudonymKey.from_text(key_text)  # refuses what the flows would refuse
    return Planned(
        env.get("EDULAKE_HMAC_KEY_BLOCK", HMAC_BLOCK),
        "Secret",
        lambda: Secret(value=SecretStr(key_text)),
        f"key_id {key.key_id}",
    )


def plan_sftp(env: Mapping[str, str]) -> Planned | None:
    """The SftpServer block for Clever's reports server."""
    if not env.get("EDULAKE_SFTP_HOST"):
        return None
    from edulake.connectors.blocks import SftpServer  # the block type, from the SFTP module

    fields: dict[str, Any] = {
        "host": env["EDULAKE_SFTP_HOST"],
        "username": _required(env, "EDULAKE_SFTP_USERNAME"),
        "host_key": _required(env, "EDULAKE_SFTP_HOST_KEY").strip(),
    }
    if env.get("EDULAKE_SFTP_PORT"):
        fields["port"] = int(env["EDULAKE_SFTP_PORT"])
    if env.get("EDULAKE_SFTP_REMOTE_ROOT"):
        fields["remote_root"] = env["EDULAKE_SFTP_REMOTE_ROOT"]
    for secret_field in ("private_key", "private_key_passphrase", "password"):
        value = _value(env, f"EDULAKE_SFTP_{secret_field.upper()}")
        if value:
            fields[secret_field] = SecretStr(value)
    if "private_key" not in fields and "password" not in fields:
        raise ConfigError("EDULAKE_SFTP_PRIVATE_KEY(_FILE) or EDULAKE_SFTP_PASSWORD is required")
    return Planned(
        env.get("EDULAKE_SFTP_BLOCK", SFTP_BLOCK),
        "SftpServer",
        lambda: SftpServer(**fields),
        f"{fields['username']}@{fields['host']}",
    )


def plan_aws(env: Mapping[str, str]) -> Planned | None:
    """The prefect-aws AwsCredentials block (keys optional: ECS task roles need none)."""
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
    if not (region or env.get("AWS_ACCESS_KEY_ID") or env.get("AWS_PROFILE")):
        return None
    from prefect_aws import AwsClientParameters, AwsCredentials

    if bool(env.get("AWS_ACCESS_KEY_ID")) != bool(env.get("AWS_SECRET_ACCESS_KEY")):
        raise ConfigError("AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY go together")
    secret = env.get("AWS_SECRET_ACCESS_KEY")
    fields: dict[str, Any] = {
        "region_name": region,
        "aws_access_key_id": env.get("AWS_ACCESS_KEY_ID") or None,
        "aws_secret_access_key": SecretStr(secret) if secret else None,
        "aws_session_token": env.get("AWS_SESSION_TOKEN") or None,
        "profile_name": env.get("AWS_PROFILE") or None,
    }
    if env.get("AWS_ENDPOINT_URL"):
        fields["aws_client_parameters"] = AwsClientParameters(endpoint_url=env["AWS_ENDPOINT_URL"])
    how = "access keys" if fields["aws_access_key_id"] else "default credential chain"
    return Planned(
        env.get("EDULAKE_AWS_BLOCK", AWS_BLOCK),
        "AwsCredentials",
        lambda: AwsCredentials(**fields),
        f"region {region or '(default)'}, {how}",
    )


def plan_libinsight(env: Mapping[str, str]) -> Planned | None:
    """The Secret block with the LibInsight API client secret."""
    value = _value(env, "EDULAKE_LIBINSIGHT_CLIENT_SECRET")
    if not value:
        return None
    text = value.strip()
    return Planned(
        env.get("EDULAKE_LIBINSIGHT_SECRET_BLOCK", LIBINSIGHT_SECRET_BLOCK),
        "Secret",
        lambda: Secret(value=SecretStr(text)),
    )


PLANNERS = {
    "hmac": plan_hmac,
    "sftp": plan_sftp,
    "aws": plan_aws,
    "libinsight": plan_libinsight,
}


def plan(env: Mapping[str, str]) -> tuple[list[Planned], list[str]]:
    """The blocks the environment describes, and the groups it leaves out."""
    planned, skipped = [], []
    for group, planner in PLANNERS.items():
        item = planner(env)
        if item is None:
            skipped.append(group)
        else:
            planned.append(item)
    return planned, skipped


def block_exists(name: str) -> bool:
    """Whether a Secret block of that name is already on the server."""
    try:
        Secret.load(name, _sync=True)  # type: ignore[call-arg]
    except ValueError:
        return False
    return True


def generated_hmac(env: Mapping[str, str]) -> Planned | None:
    """A new random pseudonymization key, or None if a key block exists already (keys are
    never rotated by accident: a new key gives every student a new pseudonym)."""
    name = env.get("EDULAKE_HMAC_KEY_BLOCK", HMAC_BLOCK)
    if block_exists(name):
        return None
    key_text = generate_key_text()  # 32 random bytes, hex: the form the flows decode
    key = PseudonymKey.from_text(key_text)
    return Planned(
        name, "Secret", lambda: Secret(value=SecretStr(key_text)), f"new key, key_id {key.key_id}"
    )


def main(argv: list[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    """Create or update every block (and variable) the environment describes."""
    parser = argparse.ArgumentParser(
        prog="python -m deployments.blocks",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--dry-run", action="store_true", help="change nothing")
    parser.add_argument(
        "--generate-hmac-key",
        action="store_true",
        help="create a random pseudonymization key if none exists (never replaces one)",
    )
    args = parser.parse_args(argv)
    env = os.environ if env is None else env
    try:
        planned, skipped = plan(env)
        if args.generate_hmac_key and "hmac" in skipped:
            generated = generated_hmac(env)
            if generated is None:
                print("kept the existing pseudonymization key (never replaced by a generated one)")
            else:
                planned.insert(0, generated)
            skipped.remove("hmac")
        # Typed JSON values: deployments are created with enforce_parameter_schema.
        variables = [
            (variable, kind(env[name]))
            for name, (variable, kind) in VARIABLES.items()
            if env.get(name)
        ]
    except (ConfigError, ValueError, OSError) as exc:
        # Messages name variables and fields, never their values.
        print(f"error: {exc}", file=sys.stderr)
        return 2
    verb = "would save" if args.dry_run else "saved"
    for item in planned:
        if not args.dry_run:
            item.build().save(item.name, overwrite=True)
        print(f"{verb} {item.kind} block {item.name!r}" + (f" ({item.note})" if item.note else ""))
    for variable, value in variables:
        if not args.dry_run:
            Variable.set(variable, value, overwrite=True)
        print(f"{'would set' if args.dry_run else 'set'} variable {variable} = {value}")
    if skipped:
        print(f"skipped (not in the environment): {', '.join(skipped)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
