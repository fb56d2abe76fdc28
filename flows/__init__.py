"""Prefect flows: the deployments of prefect.yaml: see docs/architecture.md."""

# edulake first: it sets Arrow's allocator before anything loads pyarrow (edulake/core/memory.py).
import edulake  # noqa: F401
