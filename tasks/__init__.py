"""Prefect tasks over the edulake core: see docs/architecture.md."""

# edulake first: it sets Arrow's allocator before anything loads pyarrow (edulake/core/memory.py).
import edulake  # noqa: F401
