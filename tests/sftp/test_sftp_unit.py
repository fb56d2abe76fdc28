"""SFTP source logic that needs no server: host-key pins, names, settings, errors."""

from __future__ import annotations

import base64
import hashlib

import pytest

from edulake.connectors.sftp import (
    HostKeyError,
    SftpAuthError,
    SftpConfigError,
    SftpSettings,
    SftpTransientError,
    UnsafeRemoteName,
    check_relative,
    check_segment,
    fingerprint_of,
    is_retryable,
    load_private_key,
    parse_host_key_pins,
)
from tests.servers.sshd import KeyPair

KEY = KeyPair.generate()
KEY_TYPE, KEY_B64 = KEY.public_line.split()[:2]
FP = "SHA256:" + base64.b64encode(
    hashlib.sha256(base64.b64decode(KEY_B64)).digest()
).decode().rstrip("=")


def test_fingerprint_matches_openssh_form() -> None:
    assert fingerprint_of(base64.b64decode(KEY_B64)) == FP
    assert "=" not in FP


@pytest.mark.parametrize(
    "text",
    [
        f"[sftp.example.org]:2222 {KEY_TYPE} {KEY_B64}",
        f"reports-sftp.clever.com,1.2.3.4 {KEY_TYPE} {KEY_B64} comment here",
        f"|1|abc=|def= {KEY_TYPE} {KEY_B64}",  # hashed known_hosts entry
        f"{KEY_TYPE} {KEY_B64}",
        f"# ssh-keyscan output\n\n{KEY_TYPE} {KEY_B64}\n",
    ],
)
def test_key_lines_pin_type_and_fingerprint(text: str) -> None:
    (pin,) = parse_host_key_pins(text)
    assert pin.fingerprint == FP
    assert pin.key_type == "ssh-ed25519"


@pytest.mark.parametrize(
    "text", [FP, FP + "=", f"256 {FP} host (ED25519)"]
)  # bare, padded, `ssh-keygen -lf` output
def test_fingerprints_pin_without_type(text: str) -> None:
    (pin,) = parse_host_key_pins(text)
    assert pin.fingerprint == FP
    assert pin.key_type is None


def test_several_pins_and_empty() -> None:
    other = KeyPair.generate().public_line
    assert len(parse_host_key_pins(f"{KEY.public_line}\n{other}\n")) == 2
    assert parse_host_key_pins("") == []


@pytest.mark.parametrize(
    "text",
    [
        "MD5:16:27:ac:a5:76:28:2d:36:63:1b:56:4d:eb:df:a6:48",
        "@cert-authority *.example.org ssh-ed25519 AAAA",
        "not a key",
        f"{KEY_TYPE} bm90IGEga2V5",  # base64 of something that is not this key type
    ],
)
def test_bad_pins_are_config_errors(text: str) -> None:
    with pytest.raises(SftpConfigError):
        parse_host_key_pins(text)


@pytest.mark.parametrize(
    "name",
    ["..", ".", "", "a/b", "a\\b", "x\x00.csv", "new\nline.csv"],
)
def test_unsafe_segments(name: str) -> None:
    with pytest.raises(UnsafeRemoteName):
        check_segment(name)


@pytest.mark.parametrize(
    "name",
    [
        "../x.csv",
        "/etc/passwd",
        "daily-participation/../../x.csv",
        "daily-participation/sub/x.csv",
        "daily-participation//x.csv",
        "x.csv",
    ],
)
def test_unsafe_relative_names(name: str) -> None:
    with pytest.raises(UnsafeRemoteName):
        check_relative(name)


def test_relative_name_ok() -> None:
    assert check_relative("resource-usage/2022-01-03-resource-usage-staff.csv") == (
        "resource-usage",
        "2022-01-03-resource-usage-staff.csv",
    )


def test_settings_hide_secrets() -> None:
    s = SftpSettings(
        host="h",
        username="u",
        private_key="PRIVATE-KEY-TEXT",
        private_key_passphrase="PASSPHRASE",
        password="PASSWORD",
    )
    text = repr(s)
    for secret in ("PRIVATE-KEY-TEXT", "PASSPHRASE", "PASSWORD"):
        assert secret not in text


@pytest.mark.parametrize(
    "kwargs",
    [
        {"host": "", "username": "u", "password": "p"},
        {"host": "h", "username": "", "password": "p"},
        {"host": "h", "username": "u"},
        {"host": "h", "username": "u", "password": "p", "port": 0},
        {"host": "h", "username": "u", "password": "p", "max_connections": 0},
    ],
)
def test_settings_validation(kwargs: dict[str, object]) -> None:
    with pytest.raises(SftpConfigError):
        SftpSettings(**kwargs)  # type: ignore[arg-type]


def test_private_key_loading() -> None:
    key = load_private_key(KEY.private_text)
    assert key.get_name() == "ssh-ed25519"
    # pasted from a one-line environment variable
    assert load_private_key(KEY.private_text.replace("\n", "\\n")).get_base64() == KEY_B64


def test_unreadable_private_key_is_config_error_without_echo() -> None:
    bogus = "-----BEGIN OPENSSH PRIVATE KEY-----\nSECRETSECRET\n-----END OPENSSH PRIVATE KEY-----"
    with pytest.raises(SftpConfigError) as info:
        load_private_key(bogus)
    assert "SECRETSECRET" not in str(info.value)


def test_retryable_classification() -> None:
    assert is_retryable(SftpTransientError("dropped"))
    assert not is_retryable(SftpAuthError("no"))
    assert not is_retryable(HostKeyError("no"))
    assert not is_retryable(SftpConfigError("no"))
    assert not is_retryable(UnsafeRemoteName("no"))
    assert is_retryable(OSError("disk"))  # not ours: leave it to the caller's policy


def test_task_retry_condition_skips_permanent_errors() -> None:
    from prefect.states import Failed

    from tasks.clever import retry_if_transient

    assert retry_if_transient(None, None, Failed(data=SftpTransientError("dropped")))
    assert retry_if_transient(None, None, Failed(data=ConnectionResetError(104, "reset")))
    # An error of unknown kind is not retried (edulake.core.errors: never silently green).
    assert not retry_if_transient(None, None, Failed(data=OSError("disk")))
    assert not retry_if_transient(None, None, Failed(data=SftpAuthError("no")))
    assert not retry_if_transient(None, None, Failed(data=HostKeyError("no")))
