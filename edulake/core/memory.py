"""How edulake's processes hold memory: Arrow's allocator, set before pyarrow loads.

Measured on the benchmark's inputs (``python -m bench.jobs edulake IN WORK``, one run each,
2 cores; docs/benchmarks.md), 2 workers and 4 MiB blocks unless said:

==========================================  ================  ================
``EDULAKE_ARROW_ALLOCATOR``                 1M rows           10M rows
==========================================  ================  ================
``arrow-default`` (Arrow's mimalloc)        1.6 s, 400 MB     9.9 s, 468 MB
``jemalloc`` (the default)                  1.2 s, 344 MB     8.9 s, 405 MB
``jemalloc-purge``                          1.8 s, 209 MB     19 s, 250 MB
``jemalloc-purge``, 1 worker                2.8 s, 171 MB     39 s, 194 MB
==========================================  ================  ================

``jemalloc`` keeps freed pages up to 10 s for reuse and returns them to the system after;
``jemalloc-purge`` (``dirty_decay_ms:0``) returns them at once: least memory, but every
new buffer faults its pages in again (twice the CPU on a long run). For a small
container: ``EDULAKE_ARROW_ALLOCATOR=jemalloc-purge`` and ``EDULAKE_PROCESSING__WORKERS=1``.

Arrow reads its allocator once, when pyarrow loads, from its own documented variables
(``ARROW_DEFAULT_MEMORY_POOL``, ``JE_ARROW_MALLOC_CONF``), so :func:`configure_allocator`
sets them in the environment and ``edulake/__init__.py`` calls it: every flow, task, CLI
command and test imports edulake before pyarrow (``tasks/`` and ``flows/`` import it
first). An operator's own ``ARROW_DEFAULT_MEMORY_POOL`` wins; ``arrow-default`` leaves
both alone. Only on Linux, where pyarrow's wheels carry jemalloc (elsewhere Arrow would
warn about an unknown backend and fall back to its default anyway).
"""

from __future__ import annotations

import os
import sys

POOL_VARIABLE = "ARROW_DEFAULT_MEMORY_POOL"
JEMALLOC_VARIABLE = "JE_ARROW_MALLOC_CONF"
CHOICE_VARIABLE = "EDULAKE_ARROW_ALLOCATOR"
# the choices (edulake/core/settings.py validates the variable) -> jemalloc's options
JEMALLOC_CONF = {
    "jemalloc": "dirty_decay_ms:10000,muzzy_decay_ms:0",
    "jemalloc-purge": "dirty_decay_ms:0,muzzy_decay_ms:0",
}
DEFAULT_CHOICE = "jemalloc"
# what configure_allocator() set in this process's environment (children inherit it)
SET_HERE: dict[str, str] = {}


def configure_allocator(environ: os._Environ[str] | dict[str, str] | None = None) -> bool:
    """Set Arrow's allocator variables from ``EDULAKE_ARROW_ALLOCATOR`` (default
    ``jemalloc``), unless pyarrow has already loaded, the operator set
    ``ARROW_DEFAULT_MEMORY_POOL``, the choice is ``arrow-default`` or the platform has no
    jemalloc. True if it set them. A value it does not know is left to the settings
    check, which fails the run naming the variable."""
    env = os.environ if environ is None else environ
    if "pyarrow" in sys.modules and environ is None:
        return False  # too late: Arrow read its settings when it loaded
    if not sys.platform.startswith("linux") or POOL_VARIABLE in env:
        return False
    conf = JEMALLOC_CONF.get(env.get(CHOICE_VARIABLE, "").strip().lower() or DEFAULT_CHOICE)
    if conf is None:
        return False  # arrow-default (or a typo, reported by the settings check)
    chosen = {POOL_VARIABLE: "jemalloc"}
    if JEMALLOC_VARIABLE not in env:
        chosen[JEMALLOC_VARIABLE] = conf
    env.update(chosen)
    if environ is None:
        SET_HERE.update(chosen)
    return True


def child_environment(overrides: dict[str, str] | None = None) -> dict[str, str]:
    """This environment for a child process, with ``overrides`` (e.g. another
    ``EDULAKE_ARROW_ALLOCATOR``) and the allocator chosen again for them: what
    :func:`configure_allocator` set here is not passed on as if an operator had set it."""
    env = {k: v for k, v in os.environ.items() if SET_HERE.get(k) != v}
    env.update(overrides or {})
    configure_allocator(env)
    return env


# An allocator keeps freed blocks for reuse, and with several threads it can keep a lot.
# Past this resident size, freed memory is handed back to the OS between files, so peak
# memory stays what one batch per worker needs, whatever the run's length. Not always:
# handing back costs page faults later (about a fifth of the CPU when done every file).
SOFT_RSS_LIMIT = 384 << 20


def trim_memory(limit: int = SOFT_RSS_LIMIT) -> bool:
    """Release Arrow's unused memory if the process holds more than ``limit`` bytes."""
    import pyarrow as pa

    rss = resident_bytes()
    if rss is not None and rss <= limit:
        return False
    pa.default_memory_pool().release_unused()
    return True


def resident_bytes() -> int | None:
    """This process's resident set size (Linux), or None where it cannot be read."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None
