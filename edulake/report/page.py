"""One self-contained, offline HTML page: every script, style and number inside the file.

The charts are Vega-Lite specs (built with Altair, :mod:`edulake.report.charts`) drawn
by vega-embed as SVG. The JavaScript of vega, vega-lite and vega-embed comes from
``vl-convert-python``'s bundle (one ~0.9 MB ``<script>``, no CDN, no import from the
network). Each chart's spec names its data (``{"data": {"name": ...}}``); the data is
one JSON document in the page (``<script type="application/json" id="edulake-data">``)
handed to every chart as Vega-Lite ``datasets``: what is drawn is exactly what is
embedded, and a test can compare that JSON with the published views.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import hashlib
import html
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BUNDLE_LABEL = "vega + vega-lite + vega-embed (vl-convert-python bundle)"


@dataclass
class Chart:
    """One chart: a Vega-Lite spec over named datasets of the page."""

    id: str
    title: str
    spec: dict[str, Any]
    datasets: list[str]
    note: str = ""


@dataclass
class Table:
    """A small HTML table (names and counts only)."""

    title: str
    columns: list[str]
    rows: list[list[str]]
    note: str = ""


@dataclass
class Section:
    """A heading with its charts and tables."""

    title: str
    charts: list[Chart] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    note: str = ""


@dataclass
class Page:
    """Everything one source's dashboard shows."""

    source: str
    title: str
    min_cell: int
    unit: str = "people"  # what the suppressed counts count
    headline: list[tuple[str, str]] = field(default_factory=list)
    sections: list[Section] = field(default_factory=list)
    datasets: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    markdown: str = ""
    generated_at: str = field(
        default_factory=lambda: dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    )

    @property
    def charts(self) -> list[Chart]:
        return [c for s in self.sections for c in s.charts]


@functools.cache
def javascript_bundle() -> str:
    """vega-embed, vega-lite and vega as one script.

    Bundling takes 5-15 s, so the result is kept per process and in the user's cache
    folder (``$XDG_CACHE_HOME/edulake``, else ``~/.cache/edulake``), named by the
    vl-convert and Vega-Lite versions; a folder that cannot be written is skipped.
    """
    import vl_convert
    from altair.utils._importers import vl_version_for_vl_convert

    # The Vega-Lite version Altair writes its specs for (v6_4 for altair 6.3).
    version = vl_version_for_vl_convert()
    name = f"vega-bundle-{getattr(vl_convert, '__version__', 'x')}-{version}.js"
    cached = _cache_dir() / name
    with contextlib.suppress(OSError):
        text = cached.read_text(encoding="utf-8")
        if text.endswith(BUNDLE_END):
            return text
    text = str(vl_convert.javascript_bundle(vl_version=version))  # type: ignore[call-arg]
    with contextlib.suppress(OSError):
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_name(f".{name}.{os.getpid()}")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, cached)  # whole or not at all: readers never see half a bundle
    return text


# The bundle's last statement (a truncated cache file does not end with it).
BUNDLE_END = "window.vegaLite=__default1;"
# The mark of the one script that is vendored library code, not data: the PII audit
# (edulake.privacy.audit.without_vendored) leaves out exactly that element when its
# content hashes to the digest it is marked with, so a short raw id that happens to
# occur in 0.9 MB of minified JavaScript is not a finding, while the page's data is
# always scanned.
VENDORED_ATTR = "data-edulake-vendored"


def vendored_script(code: str) -> str:
    """``code`` as a ``<script>`` marked as vendored, with its SHA-256."""
    digest = hashlib.sha256(code.encode("utf-8")).hexdigest()
    return f'<script {VENDORED_ATTR}="sha256:{digest}">{code}</script>'


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "edulake"


def _script_json(obj: Any) -> str:
    """JSON safe inside a ``<script>`` element (no ``</script>`` can end it early)."""
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0;
       background: #f6f7f9; color: #1d2330; }
header { background: #1d3557; color: #fff; padding: 18px 28px; }
header h1 { margin: 0 0 4px 0; font-size: 24px; }
header p { margin: 0; opacity: .85; font-size: 13px; }
main { padding: 16px 28px 40px; }
.kpis { display: flex; flex-wrap: wrap; gap: 12px; margin: 4px 0 18px; }
.kpi { background: #fff; border-radius: 8px; padding: 10px 16px; min-width: 150px;
       box-shadow: 0 1px 2px rgba(0,0,0,.08); }
.kpi .v { font-size: 22px; font-weight: 600; }
.kpi .l { font-size: 12px; color: #5b6475; }
section { background: #fff; border-radius: 8px; padding: 12px 18px; margin: 0 0 18px;
          box-shadow: 0 1px 2px rgba(0,0,0,.08); }
section h2 { font-size: 18px; margin: 4px 0 8px; }
.grid { display: flex; flex-wrap: wrap; gap: 18px; }
figure { margin: 0; }
figcaption { font-size: 14px; font-weight: 600; margin: 4px 0; }
.note { font-size: 12px; color: #5b6475; margin: 2px 0 8px; }
table { border-collapse: collapse; font-size: 13px; margin: 4px 0 10px; }
th, td { border-bottom: 1px solid #e3e6eb; padding: 3px 10px; text-align: left; }
th { background: #f0f2f5; }
footer { font-size: 12px; color: #5b6475; padding: 0 28px 24px; }
"""

# Draws every chart; marks the page when done (data-charts-drawn / data-charts-failed).
DRAW = """
(function () {
  const DATA = JSON.parse(document.getElementById('edulake-data').textContent);
  const CHARTS = JSON.parse(document.getElementById('edulake-charts').textContent);
  let drawn = 0, failed = 0;
  const done = () => {
    document.body.dataset.chartsDrawn = String(drawn);
    document.body.dataset.chartsFailed = String(failed);
  };
  for (const c of CHARTS) {
    const el = document.getElementById(c.id);
    const datasets = {};
    for (const name of c.datasets) datasets[name] = DATA[name];
    const spec = Object.assign({}, c.spec, {datasets: datasets});
    vegaEmbed(el, spec, {actions: false, renderer: 'svg'})
      .then(() => { el.dataset.drawn = 'yes'; drawn++; done(); })
      .catch((err) => { el.dataset.drawn = 'error'; failed++;
                        el.textContent = 'chart failed: ' + err; done(); });
  }
  done();
})();
"""


def _kpis(page: Page) -> str:
    cards = "".join(
        f'<div class="kpi"><div class="v">{html.escape(v)}</div>'
        f'<div class="l">{html.escape(label)}</div></div>'
        for label, v in page.headline
    )
    return f'<div class="kpis">{cards}</div>'


def _table(t: Table) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in t.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>" for row in t.rows
    )
    note = f'<p class="note">{html.escape(t.note)}</p>' if t.note else ""
    return (
        f"<figure><figcaption>{html.escape(t.title)}</figcaption>{note}"
        f"<table><tr>{head}</tr>{body}</table></figure>"
    )


def _section(s: Section) -> str:
    parts = [f"<section><h2>{html.escape(s.title)}</h2>"]
    if s.note:
        parts.append(f'<p class="note">{html.escape(s.note)}</p>')
    parts.append('<div class="grid">')
    for c in s.charts:
        note = f'<p class="note">{html.escape(c.note)}</p>' if c.note else ""
        parts.append(
            f"<figure><figcaption>{html.escape(c.title)}</figcaption>{note}"
            f'<div class="chart" id="{html.escape(c.id)}"></div></figure>'
        )
    parts += [_table(t) for t in s.tables]
    parts.append("</div></section>")
    return "".join(parts)


def render_html(page: Page) -> str:
    """The page as one HTML document with nothing to fetch."""
    charts = [{"id": c.id, "spec": c.spec, "datasets": c.datasets} for c in page.charts]
    notes = "".join(f"<p>{html.escape(n)}</p>" for n in page.notes)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; script-src 'unsafe-inline' 'unsafe-eval'; style-src 'unsafe-inline'; img-src data:; font-src data:">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(page.title)}</title>
<style>{STYLE}</style>
</head>
<body data-source="{html.escape(page.source)}">
<header><h1>{html.escape(page.title)}</h1>
<p>Generated {html.escape(page.generated_at)} from the published (small-cell suppressed) layer:
counts of fewer than {page.min_cell} {html.escape(page.unit)} are not shown. Offline page: nothing is fetched.</p>
</header>
<main>
{_kpis(page)}
{"".join(_section(s) for s in page.sections)}
</main>
<footer>{notes}<p>Charts: {BUNDLE_LABEL}, inlined.</p></footer>
<script type="application/json" id="edulake-data">{_script_json(page.datasets)}</script>
<script type="application/json" id="edulake-charts">{_script_json(charts)}</script>
{vendored_script(javascript_bundle())}
<script>{DRAW}</script>
</body>
</html>
"""
