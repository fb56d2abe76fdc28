"""Named crash and pause points: tests kill a real run, or hold it, at an exact step.

``EDULAKE_CRASH_AT=<point>[:<n>]`` makes the process SIGKILL itself the n-th time (default
the first) it reaches ``crashpoint(<point>)``. Unset (always, outside those tests) a crash
point costs one dictionary lookup. The environment is read directly, not through
Settings: this is a test hook, not a setting anyone should configure.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter

ENV = "EDULAKE_CRASH_AT"
_hits: Counter[str] = Counter()
_lock = threading.Lock()


def crashpoint(name: str) -> None:
    """Die here, abruptly (no cleanup, no finally blocks), if the environment asks to."""
    wanted = os.environ.get(ENV)
    if not wanted:
        return
    point, _, nth = wanted.partition(":")
    if point != name:
        return
    with _lock:
        _hits[name] += 1
        hit = _hits[name]
    if hit == int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)


PAUSE_ENV = (
    "EDULAKE_PAUSE_AT"  # "<point>[,<point>...]"; EDULAKE_PAUSE_DIR: folder for the handshake files
)


def pausepoint(name: str) -> None:
    """Hold here until a test releases us: writes <dir>/<name>.reached, waits for <dir>/<name>.release."""
    wanted = os.environ.get(PAUSE_ENV)
    if not wanted or name not in wanted.split(","):
        return
    folder = os.environ["EDULAKE_PAUSE_DIR"]
    open(os.path.join(folder, f"{name}.reached"), "w").close()
    release = os.path.join(folder, f"{name}.release")
    deadline = time.monotonic() + 600
    while not os.path.exists(release):
        if time.monotonic() > deadline:
            raise TimeoutError(f"pause point {name} was never released")
        time.sleep(0.02)


def notepoint(name: str) -> None:
    """Tell a waiting test that this point was reached (writes <dir>/<name>.reached), no wait."""
    wanted = os.environ.get(PAUSE_ENV)
    if wanted and name in wanted.split(","):
        open(os.path.join(os.environ["EDULAKE_PAUSE_DIR"], f"{name}.reached"), "w").close()
