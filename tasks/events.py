"""Prefect events: "new data was committed to these tables" (chains deployments) and
"a source went quiet" and "a dashboard could not be written" (for a notification)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prefect.events import emit_event
from prefect.events.schemas.events import Event

from edulake.catalog import database_name
from edulake.core.lake import Zone

DATA_COMMITTED = "edulake.data.committed"


def table_resource_id(source: str, table: str, zone: Zone = Zone.STAGE2P) -> str:
    """``edulake.table.<database>.<table>``, with the catalog's database name (``clever``)."""
    return f"edulake.table.{database_name(source, zone)}.{table}"


def emit_data_committed(
    source: str, tables: list[str], rows: Mapping[str, int] | int | None = None
) -> list[Event]:
    """Emit one ``edulake.data.committed`` event per table that received new data.

    Call it after the commit (and the catalog publish), never before: a deployment
    trigger reacting to it must find the data. ``rows``: rows written, per table or in all.
    Inside a flow run, Prefect relates each event to the run that emitted it.
    """
    events = []
    for table in tables:
        table_rows = rows.get(table) if isinstance(rows, Mapping) else rows
        event = emit_event(
            event=DATA_COMMITTED,
            resource={
                "prefect.resource.id": table_resource_id(source, table),
                "prefect.resource.name": f"{database_name(source, Zone.STAGE2P)}.{table}",
                "edulake.source": source,
            },
            payload={"source": source, "table": table, "rows": table_rows},
        )
        if event is not None:
            events.append(event)
    return events


SOURCE_STALE = "edulake.source.stale"


def source_resource_id(source: str, resource: str) -> str:
    """``edulake.source.<source>.<resource>``, e.g. ``edulake.source.libinsight.dataset-28364``."""
    return f"edulake.source.{source}.{resource}"


def emit_source_stale(source: str, resource: str, payload: dict[str, Any]) -> Event | None:
    """Emit ``edulake.source.stale``: a source (a dataset, a report) stopped delivering data.

    ``resource`` names the thing within the source (LibInsight: ``dataset-<id>``; Clever:
    a report). ``payload`` says how stale (e.g. ``days_since_last_record`` and
    ``threshold_days``): counts and days only, never row data. An automation can turn the
    event into a notification (docs/libinsight.md).
    """
    return emit_event(
        event=SOURCE_STALE,
        resource={
            "prefect.resource.id": source_resource_id(source, resource),
            "prefect.resource.name": f"{source} {resource}",
            "edulake.source": source,
        },
        payload={"source": source, "resource": resource, **payload},
    )


REPORT_FAILED = "edulake.report.failed"


def emit_report_failed(source: str, page: str, reason: str) -> Event | None:
    """Emit ``edulake.report.failed``: the run's data is committed, but its dashboard page
    (``page``, in exports) could not be written, so analysts see an old one.

    ``reason`` is a data-free label (``edulake.privacy.scrub.safe_message``).
    ``deployments/automations/report-failed.yaml`` turns it into a notification."""
    return emit_event(
        event=REPORT_FAILED,
        resource={
            "prefect.resource.id": f"edulake.report.{source}",
            "prefect.resource.name": f"{source} dashboard",
            "edulake.source": source,
        },
        payload={
            "source": source,
            "page": page,
            "reason": reason,
            "what_to_do": (
                f"run `python -m edulake report --source {source} --debug` on the same lake "
                "to see why; the data run itself succeeded"
            ),
        },
    )
