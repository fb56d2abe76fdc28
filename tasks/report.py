"""The dashboard at the end of a run: the page in exports, a link and the headline figures.

Called by the Clever and LibInsight flows after publishing (outside the lease: the page
is one file of its own, written atomically; two runs writing it at once leave one whole
page). A dashboard that cannot be written never fails the data run: a WARNING says why
(the error's type and a data-free label) and the event ``edulake.report.failed`` lets an
automation notify someone (the page in exports is then an older one); the run's result
stays what it was.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect.artifacts import create_link_artifact, create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from edulake.core.lake import Lake
from edulake.core.settings import get_settings
from edulake.privacy.scrub import safe_message
from tasks.common import edulake_task, logger
from tasks.events import REPORT_FAILED, emit_report_failed

TITLES = {"clever": "Clever dashboard", "libinsight": "LibInsight dashboard"}


def link_of(uri: str) -> str:
    """A link the Prefect UI can show: ``file://`` for a local page, the s3:// URI as is."""
    return uri if "://" in uri else Path(uri).absolute().as_uri()


@edulake_task(name="publish-report", cache_policy=NO_CACHE)
def publish_report(
    lake: Lake,
    source: str,
    catalog: str | None = None,
    *,
    freshness: Any = None,
    drift: dict[str, list[dict[str, str]]] | None = None,
) -> dict[str, Any] | None:
    """Write ``exports/dashboard/<source>.html``; a link artifact and a markdown artifact.

    ``freshness``: the run's Clever freshness check (what is on Clever's server), for the
    calendar; ``drift``: per LibInsight table, the drift rows this run found.
    """
    from edulake.report import build_page, catalog_file, write_page

    log = logger()
    kind = catalog or get_settings().catalog.kind
    if kind != "duckdb":
        log.info("dashboard not written: it reads the DuckDB catalog (this run used %s)", kind)
        return None
    try:
        page = build_page(
            source,
            lake,
            catalog_file(lake),
            clever_freshness=freshness,
            libinsight_drift=drift,
        )
        written = write_page(lake, page)
    except Exception as exc:  # the data run is done: a dashboard problem is a warning
        reason = safe_message(exc)
        log.warning(
            "dashboard not written: %s (event %s emitted; see `python -m edulake report "
            "--source %s --debug`)",
            reason,
            REPORT_FAILED,
            source,
        )
        emit_report_failed(source, f"exports/dashboard/{source}.html", reason)
        return None
    key = f"{source}-dashboard"
    create_link_artifact(
        link=link_of(written.uri),
        link_text=f"{TITLES.get(source, source)} (offline HTML page)",
        key=key,
        description=f"The {source} dashboard written by this run (one self-contained file)",
    )
    create_markdown_artifact(
        written.markdown + f"\n\nThe page: `{written.uri}`",
        key=f"{key}-figures",
        description=f"Headline figures of the {source} dashboard",
    )
    log.info("dashboard written: %s", written.uri)
    return {"page": written.uri, "headline": dict(written.headline)}
