"""The dashboards: self-contained pages whose numbers are the published views' numbers,
drawn for real in headless Chromium with no request leaving the file."""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from edulake.catalog.duckdb import connect
from edulake.core.lake import Zone
from edulake.report import browser

from .conftest import LI_TABLE, Built, embedded

pytestmark = pytest.mark.slow

MIN_CELL = 10  # the default EDULAKE_PUBLISH__MIN_CELL
PEOPLE = {"active_students", "students", "users", "active_users"}


def _views(built: Built, sql: str) -> list[tuple[Any, ...]]:
    con = connect(built.catalog)
    try:
        return [tuple(r) for r in con.execute(sql).fetchall()]
    finally:
        con.close()


# -- the page is one file -----------------------------------------------------------------
class _Refs(HTMLParser):
    """Every reference to another resource a page could make."""

    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []
        self.tags: Counter[str] = Counter()
        self.csp = ""
        self._in_style = False
        self.styles: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags[tag] += 1
        a = dict(attrs)
        for name in ("src", "href", "action", "poster", "data", "srcset", "formaction"):
            if a.get(name):
                self.refs.append(f"{tag}[{name}]={a[name]}")
        if tag == "meta" and (a.get("http-equiv") or "").lower() == "content-security-policy":
            self.csp = a.get("content") or ""
        self._in_style = tag == "style"

    def handle_endtag(self, tag: str) -> None:
        self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.styles.append(data)


@pytest.mark.parametrize("source", ["clever", "libinsight"])
def test_page_has_nothing_to_fetch(built, source):
    html = built.html(source)
    refs = _Refs()
    refs.feed(html)
    assert refs.refs == []  # no src=, href=, ...: every script and style is inside
    for tag in ("link", "img", "iframe", "object", "embed", "base"):
        assert refs.tags[tag] == 0, tag
    assert refs.tags["script"] == 4  # data, chart specs, the vega bundle, the drawing
    style = "".join(refs.styles)
    assert "@import" not in style and "url(" not in style
    # the browser is also told: nothing may be fetched from anywhere
    assert "default-src 'none'" in refs.csp
    assert "connect-src" not in refs.csp  # (default-src 'none' covers it)


# -- the numbers are the views' numbers ---------------------------------------------------
def test_clever_numbers_equal_the_views(built):
    data = embedded(built.html("clever"), "edulake-data")
    assert _rows(
        data["active_students"], ["date", "school_name", "active_students", "suppressed"]
    ) == sorted(
        _views(
            built,
            'SELECT CAST("date" AS VARCHAR), school_name, active_students, suppressed '
            "FROM clever.active_students_per_school_day",
        ),
        key=repr,
    )
    assert _rows(
        data["top_resources"], ["school_name", "resource_name", "students", "suppressed"]
    ) == sorted(
        _views(
            built,
            "SELECT school_name, resource_name, students, suppressed FROM clever.top_resources_by_school",
        ),
        key=repr,
    )
    usage = {r["school_name"]: r for r in data["usage_by_school"]}
    for school, students, logins, resources in _views(
        built,
        "SELECT school_name, students, avg_logins_per_student_day, "
        "avg_resources_per_student_day FROM clever.avg_usage_per_student_by_school",
    ):
        assert usage[school]["students"] == students
        assert usage[school]["avg_logins_per_student_day"] == pytest.approx(logins)
        assert usage[school]["avg_resources_per_student_day"] == pytest.approx(resources)
    assert len(usage) == len(_views(built, "SELECT 1 FROM clever.avg_usage_per_student_by_school"))
    apps = _views(
        built,
        "SELECT resource_name, users FROM clever.top_apps_by_users WHERE NOT suppressed "
        "ORDER BY users DESC, resource_name",
    )
    shown = [(r["resource_name"], r["users"]) for r in data["top_apps"]]
    assert shown == apps[: len(shown)] and len(shown) == min(15, len(apps))
    # quarantine per file: the processed records' counts
    records = [
        built.lake.read_json(Zone.SYSTEM, o.key)
        for o in built.lake.list(Zone.SYSTEM, "processed/clever/")
    ]
    assert len(data["quarantine"]) == min(25, len(records))
    by_file = {r["name"].rsplit("/", 1)[-1]: r for r in records}
    for row in data["quarantine"]:
        rec = by_file[row["file"]]
        assert (row["rows_read"], row["rows_quarantined"]) == (
            rec["rows_read"],
            rec["rows_quarantined"],
        )
    # the freshness calendar: every landed day of each report is a "landed" cell
    landed = {(r["report"], r["date"]) for r in data["freshness"] if r["status"] == "landed"}
    assert len(landed) == 4 * 2  # 4 days x 2 reports


def test_clever_page_holds_only_the_suppressed_layer(built):
    data = embedded(built.html("clever"), "edulake-data")
    text = json.dumps(data)
    suppressed = 0
    for name, rows in data.items():
        for row in rows:
            for col, value in row.items():
                if col in PEOPLE:  # a count of people: blank, or at least min n
                    assert value is None or value == 0 or value >= MIN_CELL, (name, col)
            suppressed += bool(row.get("suppressed"))
    assert suppressed > 0  # the small test district has small cells: they are blanked
    # no pseudonym, no identifier column, nothing row-level
    assert not re.search(r"\b[0-9a-f]{64}\b", text)
    for rows in data.values():
        for row in rows:
            assert not any("pseudonym" in c or c.endswith("_id") for c in row)
    pseudonyms = {
        r[0]
        for r in _views(
            built, "SELECT DISTINCT clever_user_id_pseudonym FROM clever.daily_participation"
        )
    }
    html = built.html("clever")
    assert not [p for p in list(pseudonyms)[:200] if p in html]


def test_libinsight_numbers_equal_suppressed_counts(built):
    data = embedded(built.html("libinsight"), "edulake-data")
    t = f"libinsight.{LI_TABLE}"
    raw_month = dict(_views(built, f"SELECT month, COUNT(*) FROM {t} GROUP BY month"))
    _check_suppressed(data[f"{LI_TABLE}.per_month"], ("month",), raw_month)
    raw_type = {
        (m, k): n
        for m, k, n in _views(
            built,
            f"SELECT month, COALESCE(question_type, '(none)'), COUNT(*) FROM {t} GROUP BY 1, 2",
        )
    }
    _check_suppressed(data[f"{LI_TABLE}.per_month_type"], ("month", "kind"), raw_type)
    raw_hours = {
        (d, h): n
        for d, h, n in _views(
            built,
            f"SELECT isodow(start_date), hour(start_date), COUNT(*) FROM {t} GROUP BY 1, 2",
        )
    }
    _check_suppressed(data[f"{LI_TABLE}.heatmap"], ("weekday", "hour"), raw_hours)
    # quarantine: the protected zone's records, counted per reason
    expected: Counter[str] = Counter()
    for o in built.lake.list(Zone.QUARANTINE, f"libinsight/{LI_TABLE}/"):
        for line in built.lake.read_bytes(Zone.QUARANTINE, o.key).splitlines():
            expected[json.loads(line)["reason"]] += 1
    got = Counter()
    for r in data[f"{LI_TABLE}.quarantine"]:
        got[r["reason"]] += r["records"]
        assert set(r) == {"file", "reason", "records"}  # counts, never a record
    assert got == expected


def _check_suppressed(
    rows: list[dict[str, Any]], keys: tuple[str, ...], raw: dict[Any, int]
) -> None:
    """Every cell is the raw count, or blank where the rule says so."""
    assert {_key(r, keys) for r in rows} == set(raw)
    for r in rows:
        n = raw[_key(r, keys)]
        if r["suppressed"]:
            assert r["questions"] is None
        else:
            assert r["questions"] == n and n >= MIN_CELL
    primary = [k for k, n in raw.items() if 0 < n < MIN_CELL]
    assert all(next(r for r in rows if _key(r, keys) == k)["suppressed"] for k in primary)


def _key(row: dict[str, Any], keys: tuple[str, ...]) -> Any:
    return row[keys[0]] if len(keys) == 1 else tuple(row[k] for k in keys)


def _rows(rows: list[dict[str, Any]], cols: list[str]) -> list[tuple[Any, ...]]:
    return sorted((tuple(r[c] for c in cols) for r in rows), key=repr)


def test_headline_markdown(built):
    md = built.pages["clever"].markdown
    assert "- **report days landed**: 4" in md
    assert "█" in md  # the bars
    assert "Counts of fewer than 10 people are suppressed." in md
    li = built.pages["libinsight"].markdown
    months = embedded(built.html("libinsight"), "edulake-data")[f"{LI_TABLE}.per_month"]
    shown = sum(r["questions"] or 0 for r in months)
    assert f"- questions shown: {shown:,} in {len(months)} month(s)" in li


# -- a real browser draws every chart, and fetches nothing --------------------------------
class _Dom(HTMLParser):
    """Per chart container: its state and the SVG marks drawn inside it."""

    def __init__(self) -> None:
        super().__init__()
        self.body: dict[str, str] = {}
        self.charts: dict[str, dict[str, Any]] = {}
        self._stack: list[tuple[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "body":
            self.body = {k: v or "" for k, v in a.items()}
        chart = next((c for _, c in reversed(self._stack) if c), None)
        if tag == "div" and "chart" in (a.get("class") or "").split():
            chart = a.get("id") or ""
            self.charts[chart] = {"drawn": a.get("data-drawn"), "svg": 0, "marks": 0}
        elif chart:
            if tag == "svg":
                self.charts[chart]["svg"] += 1
            cls = a.get("class") or ""
            if tag in ("path", "rect", "line", "text") and "role-mark" not in cls:
                parent = self._stack[-1][0] if self._stack else ""
                if parent.startswith("g:") and "role-mark" in parent:
                    self.charts[chart]["marks"] += 1
        label = f"g:{a.get('class') or ''}" if tag == "g" else tag
        if tag not in ("br", "meta", "input", "img", "hr"):
            self._stack.append((label, chart if tag == "div" and chart else None))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        while self._stack:
            label, _ = self._stack.pop()
            if label.split(":", 1)[0] == tag:
                break


@pytest.mark.parametrize("source", ["clever", "libinsight"])
def test_chromium_draws_every_chart_and_fetches_nothing(built, source, tmp_path):
    page = built.pages[source].uri
    net_log = str(tmp_path / "net.json")
    dom_text = browser.dump_dom(page, net_log=net_log)
    dom = _Dom()
    dom.feed(dom_text)
    charts = embedded(built.html(source), "edulake-charts")
    data = embedded(built.html(source), "edulake-data")
    assert dom.body.get("data-charts-drawn") == str(len(charts))
    assert dom.body.get("data-charts-failed") == "0"
    assert set(dom.charts) == {c["id"] for c in charts}
    for c in charts:
        seen = dom.charts[c["id"]]
        assert seen["drawn"] == "yes", c["id"]
        assert seen["svg"] >= 1, c["id"]
        if any(data[name] for name in c["datasets"]):
            assert seen["marks"] > 0, c["id"]  # bars, lines, cells: not an empty frame
    # the net log: nothing the page asked for went to the network
    with open(net_log, encoding="utf-8") as f:
        assert Path(page).as_uri() in f.read()  # the log is this page's
    assert browser.page_requests(net_log) == []


def test_net_log_check_sees_a_page_request(tmp_path):
    """The check above is not blind: a page that fetches one image is caught."""
    page = tmp_path / "leaky.html"
    page.write_text('<html><body><img src="http://dashboard-leak.example/x.png"></body></html>')
    net_log = str(tmp_path / "net.json")
    browser.dump_dom(str(page), net_log=net_log)
    assert browser.page_requests(net_log) == ["http://dashboard-leak.example/x.png"]


def test_cli_report_with_screenshots(built, tmp_path):
    import subprocess
    import sys

    root = built.lake.main.base
    np_root = built.lake.protected.base
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "edulake",
            "report",
            "--lake-root",
            root,
            "--np-root",
            np_root,
            "--screenshot",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    for source in ("clever", "libinsight"):
        png = os.path.join(root, "exports", "dashboard", f"{source}.png")
        assert f"{source} screenshot: {png}" in done.stdout
        with open(png, "rb") as f:
            head = f.read(24)
        assert head[:8] == b"\x89PNG\r\n\x1a\n"
        assert (int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")) == (
            1400,
            1000,
        )
        assert os.path.getsize(png) > 40_000  # charts and text, not a blank frame
    # no catalog: one line, exit 2, no traceback
    missing = subprocess.run(
        [sys.executable, "-m", "edulake", "report", "--lake-root", str(tmp_path / "none")],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert missing.returncode == 2
    assert missing.stderr.count("\n") == 1 and "no catalog file" in missing.stderr


def test_cli_report_on_a_lake_with_one_source(tmp_path):
    import subprocess
    import sys

    from tests.catalog.helpers import source
    from tests.reliability import crash_runner

    root, np_root = str(tmp_path / "lake"), str(tmp_path / "np")
    assert crash_runner.main(source(str(tmp_path / "src"), days=1), root, np_root) == 0
    env = {**os.environ, "PYTHONPATH": os.getcwd()}

    def report(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "edulake", "report", "--lake-root", root, *args],
            capture_output=True,
            text=True,
            timeout=300,
            env=env,
            check=False,
        )

    only = report("--source", "libinsight")
    assert only.returncode == 2 and "Traceback" not in only.stderr
    assert "nothing of libinsight is published" in only.stderr
    both = report()  # all: the page of what is there, and a word about the rest
    assert both.returncode == 0, both.stderr
    assert both.stdout.splitlines() == [f"clever dashboard: {root}/exports/dashboard/clever.html"]
    assert "no page for libinsight" in both.stderr
    assert not os.path.exists(f"{root}/exports/dashboard/libinsight.html")
