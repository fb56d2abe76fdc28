"""The parser itself: help on every option and subcommand, --version, errors as one line."""

from __future__ import annotations

import argparse
import importlib.metadata

import pytest

import edulake
from edulake import cli
from edulake.connectors.files import SourceRootError
from edulake.core.lease import LeaseBusy
from edulake.core.settings import ConfigError
from edulake.privacy.keys import DemoKeyError
from edulake.privacy.pseudonym import WeakKeyError
from edulake.privacy.scrub import DataError
from flows.clever_participation import FilesFailed, SourceStale

SECRET_ROW = "S123456,Jane Doe,jane.doe@example.org"


def _subparsers(parser: argparse.ArgumentParser) -> argparse._SubParsersAction:  # type: ignore[type-arg]
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return action


def test_every_subcommand_and_every_option_has_help() -> None:
    parser = cli.build_parser()
    sub = _subparsers(parser)
    helped = {a.dest: a.help for a in sub._choices_actions}
    assert set(helped) == set(sub.choices)  # every subcommand is listed with a help line
    assert all(h and h != argparse.SUPPRESS for h in helped.values()), helped
    missing = []
    for name, p in [("edulake", parser), *sub.choices.items()]:
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                continue
            if not action.help or action.help == argparse.SUPPRESS:
                missing.append(f"{name} {'/'.join(action.option_strings) or action.dest}")
    assert missing == []
    # the commands a user needs are all there
    assert {"demo", "clever", "libinsight", "query", "audit", "forget", "keygen"} <= set(
        sub.choices
    )


def test_libinsight_has_no_option_for_the_secret_itself() -> None:
    li = _subparsers(cli.build_parser()).choices["libinsight"]
    options = {o for a in li._actions for o in a.option_strings}
    assert "--client-secret-block" in options
    assert not {o for o in options if "secret" in o} - {"--client-secret-block"}
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(
            ["libinsight", "--base-url", "http://x", "--dataset-id", "1", "--client-secret", "s"]
        )


def test_version(capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"edulake {importlib.metadata.version('edulake')}"


def test_version_falls_back_to_the_package(monkeypatch) -> None:
    def not_installed(name: str) -> str:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", not_installed)
    monkeypatch.setattr(edulake, "__version__", "9.8.7")
    assert cli.version() == "9.8.7"


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (ConfigError("EDULAKE_LAKE__ROOT is not set"), 2),
        (SourceRootError("the source folder /x does not exist"), 2),
        (WeakKeyError("the key is too short"), 2),
        (DemoKeyError("the demo key is refused for source=sftp"), 2),
        (SourceStale("Clever daily-participation: no report is on the server."), 1),
        (FilesFailed("1 file(s) not processed"), 1),
        (LeaseBusy("the lake lease is held by clever-participation"), 1),
        (DataError("record 3: 9 columns, expected 8"), 1),
    ],
)
def test_expected_errors_keep_their_message(exc: Exception, code: int) -> None:
    line, got = cli.error_line(exc)
    assert got == code
    assert line == f"edulake: {type(exc).__name__}: {exc}"
    assert "\n" not in line


def test_unknown_errors_show_their_type_only() -> None:
    for exc in (ValueError(SECRET_ROW), KeyError(SECRET_ROW), RuntimeError(f"row: {SECRET_ROW}")):
        line, code = cli.error_line(exc)
        assert code == 1
        assert SECRET_ROW not in line and "S123456" not in line
        assert line == f"edulake: failed with {type(exc).__name__} (run with --debug for details)"


def test_a_bad_setting_is_one_line_naming_it(monkeypatch, capsys) -> None:
    monkeypatch.setenv("EDULAKE_LEASE__TTL_S", "soon")
    code = cli.main(["query", "SELECT 1", "--lake-root", "/nonexistent-lake"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("edulake: ConfigError: ") and "EDULAKE_LEASE__TTL_S" in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_usage_errors_exit_2(capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(["query"])  # no SQL
    assert exit_.value.code == 2
    with pytest.raises(SystemExit) as exit_:
        cli.main(["libinsight", "--dataset-id", "1", "--client-id", "c"])  # no --base-url
    assert exit_.value.code == 2
    capsys.readouterr()


def test_debug_before_or_after_the_command() -> None:
    parser = cli.build_parser()
    assert parser.parse_args(["--debug", "keygen"]).debug is True
    assert parser.parse_args(["keygen", "--debug"]).debug is True
    assert parser.parse_args(["keygen"]).debug is False


def test_main_turns_an_unknown_exception_into_its_type(monkeypatch, capsys) -> None:
    def leaky(_args: argparse.Namespace) -> int:
        raise RuntimeError(f"could not parse {SECRET_ROW}")

    monkeypatch.setattr(cli, "cmd_keygen", leaky)
    assert cli.main(["keygen"]) == 1
    captured = capsys.readouterr()
    assert captured.err == "edulake: failed with RuntimeError (run with --debug for details)\n"
    assert "S123456" not in captured.out + captured.err
    with pytest.raises(RuntimeError):
        cli.main(["keygen", "--debug"])


@pytest.mark.parametrize("qualified", [*cli.USAGE_ERRORS, *cli.RUN_ERRORS])
def test_every_expected_error_name_is_a_class(qualified: str) -> None:
    """The lists name classes by text (no heavy imports): a rename must not go unnoticed."""
    import importlib

    module, _, name = qualified.rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    assert isinstance(cls, type) and issubclass(cls, Exception)


def test_libinsight_needs_a_client_id(capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(["libinsight", "--base-url", "http://127.0.0.1:1", "--dataset-id", "1"])
    assert exit_.value.code == 2
    assert "--client-id" in capsys.readouterr().err
