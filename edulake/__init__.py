"""edulake: education and library analytics data into a pseudonymized data lake."""

from __future__ import annotations

from edulake.core.memory import configure_allocator

__version__ = "0.1.0"

# Arrow reads its allocator settings once, when pyarrow loads: before any module of
# edulake imports it (see edulake/core/memory.py).
configure_allocator()
