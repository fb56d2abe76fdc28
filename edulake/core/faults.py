"""Named crash points: the crash-safety tests kill a real run at an exact step.

``EDULAKE_CRASH_AT=<point>[:<n>]`` makes the process SIGKILL itself the n-th time (default
the first) it reaches ``crashpoint(<point>)``. Unset (always, outside those tests) a crash
point costs one dictionary lookup. The environment is read directly, not through
Settings: this is a test hook, not a setting anyone should configure.
"""

from __future__ import annotations

import os
import signal
import threading
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
