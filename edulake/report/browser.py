"""Headless Chromium (the Debian ``chromium`` package): screenshots and rendered DOMs.

Each call runs its own browser with a throw-away profile, no GPU, no background
networking, and every host name mapped to NOTFOUND, so even a page that tried to fetch
something could not. ``--virtual-time-budget`` lets the page's scripts run (the charts
draw) before the picture or the DOM is taken.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from edulake.core.errors import DeterministicError

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "chrome")
WINDOW = (1400, 1000)
BUDGET_MS = 15000
TIMEOUT_S = 120.0


class BrowserMissingError(DeterministicError, FileNotFoundError):
    """No Chromium to render the page with."""


def find_chromium() -> str:
    """The Chromium binary (``EDULAKE_CHROMIUM`` overrides the search of PATH)."""
    named = os.environ.get("EDULAKE_CHROMIUM")
    for name in (named,) if named else CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    raise BrowserMissingError(
        "no Chromium found for the screenshot: install the Debian package "
        "(apt-get install chromium) or set EDULAKE_CHROMIUM"
    )


def base_args(profile: str) -> list[str]:
    return [
        find_chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-default-apps",
        "--disable-extensions",
        "--no-first-run",
        "--no-default-browser-check",
        "--metrics-recording-only",
        "--hide-scrollbars",
        "--host-resolver-rules=MAP * ~NOTFOUND",
        f"--user-data-dir={profile}",
        f"--virtual-time-budget={BUDGET_MS}",
    ]


def _run(args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, capture_output=True, text=True, timeout=timeout, check=False, stdin=subprocess.DEVNULL
    )


def screenshot(
    html_path: str, png_path: str, window: tuple[int, int] = WINDOW, timeout: float = TIMEOUT_S
) -> str:
    """A PNG of the page's first ``window`` pixels (after its charts drew)."""
    with tempfile.TemporaryDirectory(prefix="edulake-chromium-") as profile:
        args = [
            *base_args(profile),
            f"--window-size={window[0]},{window[1]}",
            f"--screenshot={os.path.abspath(png_path)}",
            Path(os.path.abspath(html_path)).as_uri(),
        ]
        done = _run(args, timeout)
    if not os.path.isfile(png_path) or os.path.getsize(png_path) == 0:
        raise RuntimeError(f"chromium wrote no screenshot (exit {done.returncode})")
    return png_path


def dump_dom(html_path: str, net_log: str | None = None, timeout: float = TIMEOUT_S) -> str:
    """The page's DOM after its scripts ran; ``net_log``: also write Chromium's net log."""
    with tempfile.TemporaryDirectory(prefix="edulake-chromium-") as profile:
        args = [*base_args(profile), "--window-size=1400,1000"]
        if net_log:
            args += [f"--log-net-log={net_log}", "--net-log-capture-mode=Everything"]
        args += ["--dump-dom", Path(os.path.abspath(html_path)).as_uri()]
        done = _run(args, timeout)
    if done.returncode != 0 or "<html" not in done.stdout:
        raise RuntimeError(f"chromium --dump-dom failed (exit {done.returncode})")
    return done.stdout


# URL_REQUESTs the browser makes for itself (sign-in, network time, suggestions) carry
# no initiating origin; anything a page asks for carries the page's origin ("null" for
# a file:// page). Those made for the browser fail anyway (every host is NOTFOUND).
BROWSER_INITIATOR = "not an origin"
LOCAL_SCHEMES = ("file:", "data:", "about:", "chrome:", "blob:")


def page_requests(net_log: str) -> list[str]:
    """URLs a page asked for over the network, from a Chromium net log (``--log-net-log``).

    Requests the browser makes for itself are left out; file: and data: are not network.
    """
    with open(net_log, encoding="utf-8") as f:
        text = f.read().rstrip().rstrip(",")
    try:
        log = json.loads(text)
    except json.JSONDecodeError:  # a log cut short at exit: close it
        log = json.loads(text + "]}")
    kinds = {v: k for k, v in log.get("constants", {}).get("logEventTypes", {}).items()}
    out = []
    for ev in log.get("events", []):
        if kinds.get(ev.get("type")) != "URL_REQUEST_START_JOB":
            continue
        params = ev.get("params") or {}
        url = str(params.get("url") or "")
        if not url:  # the end of a job: its start named the URL
            continue
        if url.startswith(LOCAL_SCHEMES) or params.get("initiator") == BROWSER_INITIATOR:
            continue
        out.append(url)
    return out
