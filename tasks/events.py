"""Prefect events that chain deployments: "new data was committed to these tables"."""

from __future__ import annotations

from collections.abc import Mapping

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


def emit_source_stale(source: str, resource: str, payload: dict) -> Event | None:  # type: ignore[type-arg]
    """Emit ``edulake.source.stale``: a source stopped delivering, or data is about to be lost.

    ``resource``: ``edulake.source.<source>.<report or dataset>``; ``payload``: dates,
    counts and ranges only (never row data, identifiers or secrets). An automation
    (``deployments/automations/source-stale.yaml``) turns it into a notification.
    """
    return emit_event(
        event=SOURCE_STALE,
        resource={"prefect.resource.id": resource, "edulake.source": source},
        payload=payload,
    )
