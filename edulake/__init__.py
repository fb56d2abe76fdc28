"""edulake: education and library analytics data into a pseudonymized data lake."""

from __future__ import annotations

__version__ = "0.1.0"
