"""The explorer page: one self-contained HTML file (script, style and data inline).

The page's Content-Security-Policy allows inline script and style and blob
images only, so the browser itself refuses any network request the page might
make, at load or after. The script is plain JavaScript drawing on canvas
(tracer/explorer/explorer.js, about 37 kB): a charting library inlined would
cost megabytes (plotly's is over 3 MB) against a page meant to be mailed.
"""

from __future__ import annotations

import html
import json
from importlib import resources
from typing import Any

CONTENT_SECURITY_POLICY = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src blob:"

BODY = """<header><h1 id="title"></h1><div id="runs"></div></header>
<main><section id="views"></section><section id="charts"></section></main>
<section id="timeline">
<button id="first" title="first update (Home)">|◀</button><button id="back" title="one update back (←)">◀</button>
<button id="play" title="play (space)">▶ play</button><button id="forward" title="one update forward (→)">▶</button>
<button id="last" title="last update (End)">▶|</button>
<input id="slider" type="range" min="0" max="0" step="1" value="0" aria-label="update">
<span id="readout"></span><select id="speed" title="playing speed"></select>
</section>
<section id="numbers"></section>
<footer id="rule"></footer>
<div id="tooltip"></div>"""


def _asset(name: str) -> str:
    return resources.files("tracer.explorer").joinpath(name).read_text(encoding="utf-8")


def _script_json(data: Any) -> str:
    """JSON safe inside a <script> element: no "</" can close it early."""
    return json.dumps(data, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")


def page_html(data: dict[str, Any]) -> str:
    """The whole page for `data` (tracer.explorer.data.page_data)."""
    title = html.escape(data["title"])
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<meta http-equiv=\"Content-Security-Policy\" content=\"{CONTENT_SECURITY_POLICY}\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        f"<title>{title} · tracer explore</title>\n<style>\n{_asset('explorer.css')}</style>\n</head>\n<body>\n"
        f"{BODY}\n<script type=\"application/json\" id=\"tracer-data\">{_script_json(data)}</script>\n"
        f"<script>\n{_asset('explorer.js')}</script>\n</body>\n</html>\n"
    )


def inline_frame(page: str, height: int = 900) -> str:
    """The page inside an iframe's srcdoc, for a notebook cell: its style and script stay apart
    from the notebook's (and from another explorer's in the same notebook)."""
    return (f'<iframe srcdoc="{html.escape(page, quote=True)}" sandbox="allow-scripts" '
            f'style="width: 100%; height: {height}px; border: 1px solid #ddd;"></iframe>')
