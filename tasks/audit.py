"""What the PII audit reads from Prefect, and the audit every run does before publishing.

Prefect keeps, per flow run: logs, the flow run's and its task runs' state messages, the
artifacts, the events (state changes and our own ``edulake.*`` events, with payloads)
and the parameters; pickled results and exceptions go to its result storage
(``PREFECT_HOME/storage`` by default). :func:`prefect_texts` reads the database side as
(location, text) pairs; :func:`prefect_storage_files` lists the result storage.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import json
import os
import time
from typing import Any
from uuid import UUID

from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    FlowRunFilter,
    FlowRunFilterId,
    LogFilter,
    LogFilterFlowRunId,
)
from prefect.events.filters import (
    EventAnyResourceFilter,
    EventFilter,
    EventOccurredFilter,
    EventRelatedFilter,
)
from prefect.logging.handlers import APILogHandler

from edulake.core.lake import Lake, Zone
from edulake.privacy.audit import AuditReport, AuditScope, audit_run
from tasks.common import edulake_task, logger


def _state_text(state: Any) -> str:
    if state is None:
        return ""
    return f"{state.type.value} {state.name}: {state.message or ''}"


async def _events(client: Any, run_id: UUID, since: dt.datetime) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    resource = f"prefect.flow-run.{run_id}"
    filters = [
        EventFilter(
            occurred=EventOccurredFilter(since=since, until=dt.datetime.now(dt.UTC)),
            any_resource=EventAnyResourceFilter(id=[resource]),
        ),
        EventFilter(
            occurred=EventOccurredFilter(since=since, until=dt.datetime.now(dt.UTC)),
            related=EventRelatedFilter(id=[resource]),
        ),
    ]
    seen: set[str] = set()
    for flt in filters:
        page = await client.read_events(filter=flt, limit=50)
        while True:
            for ev in page.events:
                if str(ev.id) in seen:
                    continue
                seen.add(str(ev.id))
                body = json.dumps(ev.model_dump(mode="json"), default=str)
                out.append((f"prefect event {ev.event} of flow run {run_id}", body))
            if not page.next_page:
                break
            page = await client.read_events_page(page.next_page)
    return out


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
        task_runs = await client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=all_ids))
        )
        for r in runs:
            params = json.dumps(r.parameters, default=str)
            out.append((f"prefect parameters of flow run {r.id}", params))
            for s in await client.read_flow_run_states(r.id):
                out.append((f"prefect state of flow run {r.id}", _state_text(s)))
            since = (r.created or dt.datetime.now(dt.UTC)) - dt.timedelta(hours=1)
            out += await _events(client, r.id, since)
        for tr in task_runs:
            for s in await client.read_task_run_states(tr.id):
                out.append((f"prefect state of task run {tr.name}", _state_text(s)))
    return out


def prefect_texts(flow_run_ids: list[str]) -> list[tuple[str, str]]:
    """Logs, state messages (flow and task runs), artifacts, events and parameters of the
    given flow runs, as (location, text) pairs."""
    with contextlib.suppress(Exception):  # send this process's queued logs first
        APILogHandler().flush()
    return asyncio.run(_texts([UUID(i) for i in flow_run_ids]))


def prefect_storage_dir() -> str:
    """Prefect's local result storage (``PREFECT_LOCAL_STORAGE_PATH``, ``PREFECT_HOME/storage``)."""
    from prefect.settings import PREFECT_LOCAL_STORAGE_PATH

    return str(PREFECT_LOCAL_STORAGE_PATH.value())


def prefect_storage_files(root: str | None = None) -> list[tuple[str, bytes]]:
    """Every file of Prefect's result storage, as (location, bytes)."""
    root = root or prefect_storage_dir()
    out: list[tuple[str, bytes]] = []
    for folder, _dirs, files in os.walk(root):
        for name in sorted(files):
            path = os.path.join(folder, name)
            with open(path, "rb") as f:
                out.append((f"prefect result storage {os.path.relpath(path, root)}", f.read()))
    return out


class LeakFound(RuntimeError):
    """The pre-publish audit found a raw identifier where analysts could read it."""


@edulake_task(name="audit-before-publish", cache_policy=NO_CACHE)
def audit_before_publish(lake: Lake, scope: AuditScope) -> AuditReport:
    """The scoped PII audit of what this run wrote, before anything is published.

    The same for every registered source (``scope`` from the source's builder in
    :mod:`edulake.sources.registry`: ``clever_scope``, ``libinsight_scope``).
    Identifiers: those of the stage1np files this run read (identifier columns, header
    cells, protected fields), plus the source's stage2np lookups (every identity ever
    hashed). Scanned: the stage2p files of every unpublished partition (this run's and
    any a failed run left), and the records, exports and texts this run wrote or will
    publish. A finding fails the run: nothing is published, the partitions stay held
    (``_system/audit/<source>/held.json``), and every next run audits them again.
    """
    log = logger()
    started = time.perf_counter()
    # Partitions an earlier run's audit held back stay in scope until a clean audit: the
    # catalog follows the lake, so without this the next run would publish them.
    held = _held(lake, scope.source)
    changed = {t: sorted(set(p) | set(held.get(t, []))) for t, p in scope.changed.items()}
    for table, parts in held.items():
        changed.setdefault(table, sorted(parts))
    report = audit_run(lake, dataclasses.replace(scope, changed=changed))
    log.info(
        "pre-publish audit of %s: %d identifiers, %s: %d finding(s) in %.1f s",
        scope.source,
        report.ids_checked,
        ", ".join(f"{n} {k}" for k, n in sorted(report.scanned.items())) or "nothing scanned",
        len(report.findings),
        time.perf_counter() - started,
    )
    if report.findings:
        lake.write_json(
            Zone.SYSTEM, held_key(scope.source), {t: sorted(p) for t, p in changed.items() if p}
        )
        # An export is read by analysts without the catalog: a leaking one is withdrawn
        # (every run rebuilds it from stage2p).
        for key in scope.exports:
            if any(f.location == f"exports/{key}" for f in report.findings):
                lake.delete(Zone.EXPORTS, key)
                log.warning("export %s withdrawn: the pre-publish audit found it leaking", key)
        where = "; ".join(f"#{f.fingerprint} in {f.location} ({f.detail})" for f in report.findings)
        raise LeakFound(
            f"the pre-publish PII audit found {len(report.findings)} raw identifier(s) outside "
            f"the protected zones: {where}. Nothing was published; run `python -m edulake "
            "audit` on the lake, fix the cause, then re-run."
        )
    if held:
        lake.delete(Zone.SYSTEM, held_key(scope.source))  # audited clean: may be published
    return report


def held_key(source: str) -> str:
    """Partitions a pre-publish audit found leaking, per source (under ``_system``)."""
    return f"audit/{source}/held.json"


def _held(lake: Lake, source: str) -> dict[str, list[str]]:
    """Partitions held back by an earlier run's pre-publish audit finding."""
    key = held_key(source)
    if not lake.exists(Zone.SYSTEM, key):
        return {}
    data = lake.read_json(Zone.SYSTEM, key)
    return {str(t): [str(v) for v in parts] for t, parts in data.items()}
