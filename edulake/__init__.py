"""edulake: education and library analytics data into a pseudonymized data lake."""

from __future__ import annotations

from edulake.core.memory import configure_allocator
from edulake.privacy.scrub import guard_logging_errors

__version__ = "0.1.0"

# Arrow reads its allocator settings once, when pyarrow loads: before any module of
# edulake imports it (see edulake/core/memory.py).
configure_allocator()

# A failing log handler reports names only, never the record or the exception being
# handled (see edulake/privacy/scrub.py:safe_handle_error).
guard_logging_errors()
