"""Dashboards: one self-contained, offline HTML page per source in the lake's exports.

``exports/dashboard/<source>.html`` (beside the Tableau CSV of ``exports/libinsight/``),
built only from the published, small-cell-suppressed layer (the catalog's views, or
view-like queries through the same suppression for LibInsight) plus the lake's own
state records (report dates, row counts per file): no row-level data reaches the page.
Plain functions, no Prefect: ``edulake report`` and the ``publish_report`` task call
:func:`write_reports`.
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
from dataclasses import dataclass
from typing import Any

from edulake.core.lake import Lake, Zone
from edulake.report.page import Page, render_html

SOURCES = ("clever", "libinsight")
FOLDER = "dashboard"


class NoCatalogError(FileNotFoundError):
    """There is no DuckDB catalog file to build the dashboard from."""


class NothingPublishedError(LookupError):
    """The catalog holds nothing of this source yet (its flow never published)."""


@dataclass(frozen=True)
class Written:
    """A page written into the lake (and its screenshot, when asked for)."""

    source: str
    key: str  # exports/<key>
    uri: str  # a local path or s3://...
    markdown: str
    headline: list[tuple[str, str]]
    screenshot: str | None = None


def page_key(source: str) -> str:
    return f"{FOLDER}/{source}.html"


def catalog_file(lake: Lake) -> str:
    """The DuckDB catalog the settings name (``EDULAKE_CATALOG__DUCKDB_PATH``, else
    ``<lake root>/catalog/edulake.duckdb``)."""
    from edulake.catalog.duckdb import DuckDBCatalog
    from edulake.core.settings import get_settings

    return get_settings().catalog.duckdb_path or DuckDBCatalog.default_path(lake)


def build_page(
    source: str,
    lake: Lake,
    catalog_path: str,
    *,
    min_cell: int | None = None,
    clever_freshness: Any = None,
    libinsight_drift: dict[str, list[dict[str, str]]] | None = None,
    today: dt.date | None = None,
) -> Page:
    """One source's page, read from a read-only connection to the catalog file."""
    from edulake.catalog.duckdb import connect
    from edulake.core.settings import get_settings
    from edulake.privacy.suppression import min_cell_setting
    from edulake.report import clever, libinsight

    if source not in SOURCES:
        raise ValueError(f"no dashboard for source {source!r} (one of {', '.join(SOURCES)})")
    if not os.path.isfile(catalog_path):
        raise NoCatalogError(f"no catalog file {catalog_path}: run a flow first")
    n = min_cell_setting() if min_cell is None else min_cell
    con = connect(catalog_path)
    try:
        # fetchall: a result left unfinished blocks the connection's next query (duckdb 2)
        published = con.execute(
            "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = ?", [source]
        ).fetchall()
        if not published or not published[0][0]:
            raise NothingPublishedError(
                f"nothing of {source} is published in {catalog_path} yet: run its flow first"
            )
        if source == "clever":
            return clever.build(
                lake,
                con,
                n,
                freshness=clever_freshness,
                today=today,
                fail_age_days=get_settings().fail_report_age_days,
            )
        return libinsight.build(lake, con, n, run_drift=libinsight_drift)
    finally:
        con.close()


def write_page(lake: Lake, page: Page, screenshot: bool = False) -> Written:
    """Write the page (committed like every lake file) and, if asked, a PNG beside it."""
    from edulake.report.browser import screenshot as take_screenshot

    text = render_html(page).encode("utf-8")
    key = page_key(page.source)
    shot_key = None
    if screenshot:  # taken first: a page and its picture are written together or not at all
        with tempfile.TemporaryDirectory(prefix="edulake-report-") as tmp:
            html_path = os.path.join(tmp, f"{page.source}.html")
            png_path = os.path.join(tmp, f"{page.source}.png")
            with open(html_path, "wb") as f:
                f.write(text)
            take_screenshot(html_path, png_path)
            with open(png_path, "rb") as f:
                png = f.read()
        shot_key = key.removesuffix(".html") + ".png"
        lake.write_bytes(Zone.EXPORTS, shot_key, png)
    lake.write_bytes(Zone.EXPORTS, key, text)
    return Written(
        page.source,
        key,
        lake.uri(Zone.EXPORTS, key),
        page.markdown,
        page.headline,
        lake.uri(Zone.EXPORTS, shot_key) if shot_key else None,
    )


def write_reports(
    lake: Lake,
    sources: tuple[str, ...] | list[str] = SOURCES,
    *,
    catalog_path: str | None = None,
    screenshot: bool = False,
    **kwargs: Any,
) -> list[Written]:
    """Build and write the pages of ``sources``."""
    path = catalog_path or catalog_file(lake)
    out = []
    for s in sources:
        try:
            page = build_page(s, lake, path, **kwargs)
        except NothingPublishedError:
            if len(sources) == 1:
                raise
            continue  # "all": the sources that have something
        out.append(write_page(lake, page, screenshot=screenshot))
    return out
