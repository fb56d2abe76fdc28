"""The key from AWS Secrets Manager (prefect-aws AwsSecret) or a Prefect Secret, by name."""

from __future__ import annotations

import boto3
import pytest

from edulake.cli import main
from edulake.privacy.pseudonym import PseudonymKey, WeakKeyError
from tasks.common import resolve_key
from tests.keys import KEY, KEY_TEXT, OTHER_KEY, OTHER_KEY_TEXT

pytestmark = pytest.mark.usefixtures("prefect_harness")


def _aws_secret(moto: str, name: str, value: str, block: str) -> None:
    from prefect_aws import AwsClientParameters, AwsCredentials
    from prefect_aws.secrets_manager import AwsSecret

    boto3.client("secretsmanager", endpoint_url=moto, region_name="us-east-1").create_secret(
        Name=name, SecretString=value
    )
    creds = AwsCredentials(
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
        aws_client_parameters=AwsClientParameters(endpoint_url=moto),
    )
    AwsSecret(aws_credentials=creds, secret_name=name).save(block, overwrite=True)


def test_key_from_an_aws_secrets_manager_block(moto: str) -> None:
    _aws_secret(moto, "edulake/hmac-key", KEY_TEXT, "test-aws-hmac-key")
    assert resolve_key("test-aws-hmac-key", demo=False).key_id == KEY.key_id


def test_key_from_a_prefect_secret_block(monkeypatch: pytest.MonkeyPatch) -> None:
    from prefect.blocks.system import Secret

    Secret(value=OTHER_KEY_TEXT).save("test-secret-hmac-key", overwrite=True)
    monkeypatch.setenv("EDULAKE_HMAC_KEY", KEY_TEXT)  # the block wins over the environment
    assert resolve_key("test-secret-hmac-key", demo=False).key_id == OTHER_KEY.key_id
    # no block of that name: the environment
    assert resolve_key("no-such-block", demo=False).key_id == KEY.key_id


def test_a_weak_key_in_secrets_manager_is_refused_without_echo(moto: str) -> None:
    weak = "aaaaaaaaaaaaaaaa"
    _aws_secret(moto, "edulake/weak", weak, "test-aws-weak-key")
    with pytest.raises(WeakKeyError, match="block 'test-aws-weak-key'") as info:
        resolve_key("test-aws-weak-key", demo=False)
    assert weak not in str(info.value)


def test_keygen_prints_a_new_valid_hex_key(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keygen"]) == 0
    first = capsys.readouterr()
    assert main(["keygen"]) == 0
    second = capsys.readouterr()
    text = first.out.strip()
    assert len(text) == 64 and text != second.out.strip()
    key = PseudonymKey.from_text(text)
    assert key.key_id in first.err and text not in first.err
