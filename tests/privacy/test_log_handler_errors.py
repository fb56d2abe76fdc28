"""A log handler that fails never prints row data.

When a handler raises (a closed stream, a full disk, a broken pipe), Python's logging
prints a report to stderr: the traceback of the handler's error, with the exception
being handled at the time chained onto it, and the record's message and arguments, all
in clear. A log line written while edulake handles an error whose message quotes a row
(pyarrow does) would so put that row on the worker's console, which Prefect and ECS
keep. edulake replaces that report with one line of names only (`edulake.privacy.scrub.
safe_handle_error`, installed when edulake is imported).
"""

from __future__ import annotations

import io
import logging
import subprocess
import sys

from edulake.privacy import scrub

RAW = "LEAKSIS4242"
SECRET = "s3cr3t-Pl4nted-77aa"


def _closed_handler() -> logging.Handler:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    stream.close()  # every emit now raises ValueError: I/O operation on closed file
    return handler


def test_a_failing_handler_reports_names_only(capfd):
    log = logging.getLogger("edulake.test.failing-handler")
    handler = _closed_handler()
    log.addHandler(handler)
    log.propagate = False
    try:
        try:
            raise ValueError(f"cannot handle row '2022-01-03,{RAW},x' (Bearer {SECRET})")
        except ValueError:
            log.warning("while handling: %s", RAW)  # the record's own args carry it too
    finally:
        log.removeHandler(handler)
        log.propagate = True
    err = capfd.readouterr().err
    assert RAW not in err and SECRET not in err, err
    assert "--- Logging error (edulake: details withheld) ---" in err
    # what helps: which handler, which error (type only), which logger and call site
    assert "StreamHandler failed with ValueError" in err
    assert "edulake.test.failing-handler" in err and "test_log_handler_errors.py" in err


def test_raise_exceptions_off_stays_silent(capfd, monkeypatch):
    monkeypatch.setattr(logging, "raiseExceptions", False)
    log = logging.getLogger("edulake.test.silent")
    handler = _closed_handler()
    log.addHandler(handler)
    # only the failing handler: a console handler that an earlier test (or Prefect's
    # logging set-up) left on a parent would print the line itself, which is not what
    # this test is about
    log.propagate = False
    try:
        log.warning("x %s", RAW)
    finally:
        log.removeHandler(handler)
        log.propagate = True
    assert capfd.readouterr().err == ""


def test_installed_on_import_for_every_handler_prefect_uses():
    """In a fresh process, as a worker loads a flow: the guard is in place for the base
    class and for Prefect's handlers, which defer to it."""
    code = (
        "import logging, flows.clever_participation\n"
        "from prefect.logging.handlers import APILogHandler, PrefectConsoleHandler\n"
        "from edulake.privacy.scrub import safe_handle_error\n"
        "assert logging.Handler.handleError is safe_handle_error\n"
        "assert PrefectConsoleHandler.handleError is safe_handle_error\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
    assert scrub.safe_handle_error is logging.Handler.handleError
