"""What the PII audit reads from Prefect: a flow run's logs and artifacts, as texts."""

from __future__ import annotations

import asyncio
import json
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    LogFilter,
    LogFilterFlowRunId,
)


async def _texts(flow_run_ids: list[UUID]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    async with get_client() as client:
        runs = [await client.read_flow_run(i) for i in flow_run_ids]
        all_ids = list(flow_run_ids)
        arts = await client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=all_ids))
        )
        for a in arts:
            body = a.data if isinstance(a.data, str) else json.dumps(a.data, default=str)
            out.append((f"prefect artifact {a.key or a.id}", f"{a.description or ''}\n{body}"))
        offset = 0
        while True:
            logs = await client.read_logs(
                log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=all_ids)),
                limit=200,
                offset=offset,
            )
            if not logs:
                break
            out += [(f"prefect log of flow run {log.flow_run_id}", log.message) for log in logs]
            offset += len(logs)
        for r in runs:
            params = json.dumps(r.parameters, default=str)
            out.append((f"prefect parameters of flow run {r.id}", params))
    return out


def prefect_texts(flow_run_ids: list[str]) -> list[tuple[str, str]]:
    """Logs, artifacts and parameters of the given flow runs (location, text) pairs."""
    return asyncio.run(_texts([UUID(i) for i in flow_run_ids]))
