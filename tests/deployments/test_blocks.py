"""`python -m deployments.blocks`: blocks from the environment, idempotent, secrets unprinted."""

from __future__ import annotations

import json

import pytest

from deployments.blocks import ConfigError, main, plan
from deployments.local.stack import LocalStack

HMAC = "4d9e2a7c1f5b8e0d3a6c9f2e5b8d1a4c7f0e3b6d9a2c5f8e1b4d7a0c3f6e9b25"
HMAC_ROTATED = "c81f4a7d0e3b6c9f2a5d8e1b4c7f0a3d6e9b2c5f8a1d4e7b0c3f6a9d2e5b8c17"
AWS_SECRET = "aws-secret-0123456789"
LIBINSIGHT_SECRET = "libinsight-secret-xyz"
SFTP_PASSWORD = "sftp-password-42"
HOST_KEY = "sftp.example ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExampleExampleExampleExampleExample12"

FULL_ENV = {
    "EDULAKE_HMAC_KEY": HMAC,
    "EDULAKE_SFTP_HOST": "sftp.example",
    "EDULAKE_SFTP_PORT": "2222",
    "EDULAKE_SFTP_USERNAME": "district",
    "EDULAKE_SFTP_PASSWORD": SFTP_PASSWORD,
    "EDULAKE_SFTP_HOST_KEY": HOST_KEY,
    "AWS_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE",
    "AWS_SECRET_ACCESS_KEY": AWS_SECRET,
    "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
    "EDULAKE_LIBINSIGHT_CLIENT_SECRET": LIBINSIGHT_SECRET,
    "EDULAKE_WORK_POOL": "edulake-ecs",
    "EDULAKE_LIBINSIGHT_DATASET_ID": "4242",
}
SECRETS = [HMAC, AWS_SECRET, LIBINSIGHT_SECRET, SFTP_PASSWORD]


def test_plan_names_each_block_and_skips_what_is_not_configured() -> None:
    planned, skipped = plan(FULL_ENV)
    assert [(p.kind, p.name) for p in planned] == [
        ("Secret", "edulake-hmac-key"),
        ("SftpServer", "edulake-clever-sftp"),
        ("AwsCredentials", "edulake-aws"),
        ("Secret", "edulake-libinsight-secret"),
    ]
    assert skipped == []
    assert plan({"AWS_REGION": "eu-west-1"})[1] == ["hmac", "sftp", "libinsight"]


def test_a_task_role_setup_needs_only_a_region() -> None:
    (aws,), _ = plan({"AWS_REGION": "eu-west-1", "EDULAKE_AWS_BLOCK": "prod-aws"})
    block = aws.build()
    assert aws.name == "prod-aws"
    assert block.region_name == "eu-west-1"  # type: ignore[attr-defined]
    assert block.aws_access_key_id is None  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"EDULAKE_SFTP_HOST": "h", "EDULAKE_SFTP_USERNAME": "u"}, "EDULAKE_SFTP_HOST_KEY"),
        (
            {"EDULAKE_SFTP_HOST": "h", "EDULAKE_SFTP_USERNAME": "u", "EDULAKE_SFTP_HOST_KEY": "k"},
            "EDULAKE_SFTP_PRIVATE_KEY",
        ),
        ({"AWS_REGION": "r", "AWS_ACCESS_KEY_ID": "a"}, "AWS_SECRET_ACCESS_KEY"),
    ],
)
def test_incomplete_groups_are_refused_by_name(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        plan(env)


@pytest.mark.parametrize(
    ("weak", "message"),
    [
        ("short-key", "neither 64 hex"),
        ("aaaaaaaaaaaaaaaa", "32 random bytes"),  # 16 bytes of text, accepted before
        ("district-hmac-key-0123456789abcdef", "32 random bytes"),  # text, not a key
        ("ab" * 32, "not random enough"),
    ],
)
def test_a_weak_key_is_refused_without_echoing_it(
    capsys: pytest.CaptureFixture[str], weak: str, message: str
) -> None:
    assert main(["--dry-run"], {"EDULAKE_HMAC_KEY": weak}) == 2
    err = capsys.readouterr().err
    assert message in err and weak not in err


def test_dry_run_prints_names_and_key_id_only(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--dry-run"], FULL_ENV) == 0
    out = capsys.readouterr().out
    assert "would save Secret block 'edulake-hmac-key' (key_id " in out
    assert "would save SftpServer block 'edulake-clever-sftp' (district@sftp.example)" in out
    assert "would set variable edulake_work_pool = edulake-ecs" in out
    assert not [s for s in SECRETS if s in out]


def test_key_files_are_read(tmp_path) -> None:
    key_file = tmp_path / "hmac"
    key_file.write_text(HMAC + "\n")
    (hmac,), _ = plan({"EDULAKE_HMAC_KEY_FILE": str(key_file)})
    assert hmac.build().get() == HMAC  # type: ignore[attr-defined]


READ_BACK = """
import json
from prefect.blocks.system import Secret
from prefect_aws import AwsCredentials
from prefect.variables import Variable
from edulake.connectors.blocks import SftpServer

sftp = SftpServer.load("edulake-clever-sftp")
aws = AwsCredentials.load("edulake-aws")
print(json.dumps({
    "hmac": Secret.load("edulake-hmac-key").get(),
    "libinsight": Secret.load("edulake-libinsight-secret").get(),
    "sftp": [sftp.host, sftp.port, sftp.username, sftp.password.get_secret_value(), sftp.host_key],
    "aws": [aws.region_name, aws.aws_access_key_id, aws.aws_secret_access_key.get_secret_value(),
            aws.aws_client_parameters.endpoint_url],
    "pool": Variable.get("edulake_work_pool"),
    "dataset": Variable.get("libinsight_dataset_id"),
}))
"""


@pytest.mark.slow
def test_blocks_are_created_on_a_real_server_idempotently(stack: LocalStack) -> None:
    stack.extra_env.update(FULL_ENV)
    try:
        first = stack.python("-m", "deployments.blocks")
        stack.extra_env["EDULAKE_HMAC_KEY"] = HMAC_ROTATED
        second = stack.python("-m", "deployments.blocks")
        stored = json.loads(stack.python("-c", READ_BACK))
    finally:
        for name in FULL_ENV:
            stack.extra_env.pop(name, None)
    assert "saved Secret block 'edulake-hmac-key'" in first
    assert first.replace("\n", "").count("saved") == 4
    assert second.count("saved") == 4  # overwrite=True: a re-run updates, never fails
    assert stored == {
        "hmac": HMAC_ROTATED,
        "libinsight": LIBINSIGHT_SECRET,
        "sftp": ["sftp.example", 2222, "district", SFTP_PASSWORD, HOST_KEY],
        "aws": ["us-east-1", "AKIAEXAMPLE", AWS_SECRET, "http://127.0.0.1:9"],
        "pool": "edulake-ecs",
        "dataset": 4242,
    }
    for output in (first, second):
        assert not [s for s in SECRETS if s in output]


@pytest.mark.slow
def test_a_generated_key_never_replaces_an_existing_one(stack: LocalStack) -> None:
    read = (
        "import json; from prefect.blocks.system import Secret; "
        "print(json.dumps(Secret.load('edulake-hmac-key-generated').get()))"
    )
    stack.extra_env["EDULAKE_HMAC_KEY_BLOCK"] = "edulake-hmac-key-generated"
    try:
        created = stack.python("-m", "deployments.blocks", "--generate-hmac-key")
        key = json.loads(stack.python("-c", read))
        again = stack.python("-m", "deployments.blocks", "--generate-hmac-key")
        kept = json.loads(stack.python("-c", read))
    finally:
        stack.extra_env.pop("EDULAKE_HMAC_KEY_BLOCK")
    assert "saved Secret block 'edulake-hmac-key-generated' (new key, key_id " in created
    assert len(key) == 64 and len(bytes.fromhex(key)) == 32 and key not in created
    assert "kept the existing pseudonymization key" in again
    assert kept == key
