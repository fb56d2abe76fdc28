"""A lake with both sources published (the flows' steps, no Prefect) and its dashboards."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import pytest

from edulake.core.lake import Lake
from edulake.report import Written, catalog_file, write_reports
from tests.catalog.helpers import source
from tests.reliability import crash_runner, libinsight_crash_runner
from tests.servers.libinsight import libinsight_server

LI_SPAN = ("2026-01-01", "2026-04-30")
LI_TABLE = "reference_desk"  # the runner's config-named table


@dataclass
class Built:
    lake: Lake
    catalog: str
    pages: dict[str, Written]

    def html(self, source: str) -> str:
        return _read(self.pages[source].uri)


def _read(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


def embedded(html: str, element_id: str) -> Any:
    """The JSON of ``<script type="application/json" id=...>`` in a page."""
    m = re.search(rf'<script type="application/json" id="{element_id}">(.*?)</script>', html, re.S)
    assert m, f"no {element_id} in the page"
    return json.loads(m.group(1))


@pytest.fixture(scope="session")
def built(tmp_path_factory) -> Built:
    base = tmp_path_factory.mktemp("dashboard")
    root, np_root = str(base / "lake"), str(base / "np")
    src = source(str(base / "clever-src"), days=4)
    assert crash_runner.main(src, root, np_root) == 0
    with libinsight_server() as server:
        assert libinsight_crash_runner.main(server.base_url, root, np_root, *LI_SPAN) == 0
    lake = Lake(root, np_root)
    pages = {w.source: w for w in write_reports(lake)}
    return Built(lake, catalog_file(lake), pages)
