"""The LibInsight pipeline: OAuth client, data-grid paging, windows, state, transform, server."""

from __future__ import annotations
