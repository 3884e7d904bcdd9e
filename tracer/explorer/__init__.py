"""Explore runs in the browser: one self-contained HTML page per set of traces.

    tracer explore logs/e1-*.trace.csv -o e1.html        # the command
    tracer.explore(["a.trace.csv", "b.trace.csv"])        # in a notebook: the page inline

The page shows, synchronised by update: each run's path on the loss contour
with the arrows -g, -v, the step and sqrt(s) (two fully traced coordinates),
the per-tensor quantities of the dashboard (summary traces), linked charts of
loss, step size, lr and cos(d, previous d), and a panel of the trace's exact
values at the current update. It reads trace files only (never torch).
"""

from __future__ import annotations

import html
import os
import pathlib
from typing import Any, Sequence

from tracer.explorer.data import MAX_COORDINATES, MAX_ROWS, ExploreError, page_data
from tracer.explorer.page import inline_frame, page_html
from tracer.trace import Trace, load_trace

__all__ = ["Explorer", "ExploreError", "explore", "trace_summary_html", "write_page"]

SUMMARY_ROWS = ("label", "problem", "optimizer", "run", "granularity", "loss", "step size", "final")


def _load(traces: Sequence[Trace | str | os.PathLike] | Trace | str | os.PathLike) -> list[Trace]:
    if isinstance(traces, (Trace, str, os.PathLike)):
        traces = [traces]
    return [t if isinstance(t, Trace) else load_trace(t) for t in traces]


class Explorer:
    """The explorer page of some traces: `html` (the page), `save(path)`, and shown inline by a notebook."""

    def __init__(self, traces: Sequence[Trace], **options: Any) -> None:
        self.traces = list(traces)
        self.data = page_data(self.traces, **options)
        self.html = page_html(self.data)

    def save(self, path: str | os.PathLike) -> pathlib.Path:
        """Write the page to `path` (replaced only once it is whole); returns the path."""
        from tracer.render.common import atomic_output

        path = pathlib.Path(path)
        with atomic_output(path) as temporary:
            temporary.write_text(self.html, encoding="utf-8")
        return path

    def _repr_html_(self) -> str:
        return inline_frame(self.html)

    def __repr__(self) -> str:
        runs = len(self.traces)
        return f"Explorer({runs} run{'' if runs == 1 else 's'}, {len(self.html.encode()) / 1e6:.2f} MB)"


def explore(traces: Sequence[Trace | str | os.PathLike] | Trace | str | os.PathLike, *,
            labels: Sequence[str] | None = None, colors: Sequence[str] | None = None, title: str | None = None,
            coordinates: Sequence[str] | None = None, xlim: tuple[float, float] | None = None,
            ylim: tuple[float, float] | None = None, max_rows: int = MAX_ROWS,
            max_coordinates: int = MAX_COORDINATES, surface: str | os.PathLike | None = None) -> Explorer:
    """The explorer page of `traces` (paths or loaded traces); a notebook shows it inline.

    `labels`, `colors`: one per trace (default the traces' labels, matplotlib's C0, C1, ...);
    `coordinates`: the two the plane draws (default the problem surface's, else the first two
    traced); `xlim`, `ylim`: the plane's range (default fitted to the paths); `max_rows`: rows
    per run before every k-th is kept; `max_coordinates`: fully traced coordinates per run in
    the numbers panel; `surface`: a surface file of `tracer landscape`, whose plane the page also
    shows with the projected paths of the traces that are its runs.
    """
    return Explorer(_load(traces), labels=labels, colors=colors, title=title, coordinates=coordinates,
                    xlim=xlim, ylim=ylim, max_rows=max_rows, max_coordinates=max_coordinates, surface=surface)


def write_page(traces: Sequence[Trace | str | os.PathLike], out: str | os.PathLike, **options: Any) -> pathlib.Path:
    """Write the explorer page of `traces` to `out` (options as `explore`); returns the path."""
    return explore(traces, **options).save(out)


def trace_summary_html(trace: Trace) -> str:
    """A short HTML table of what a trace holds (the rows of `tracer info` a reader looks at first)."""
    from tracer.info import summarize, summary_rows

    rows = [(name, text) for name, text in summary_rows(summarize(trace)) if name in SUMMARY_ROWS]
    cells = "".join(f"<tr><th style=\"text-align:left;padding-right:1em\">{html.escape(name)}</th>"
                    f"<td style=\"text-align:left\">{html.escape(text)}</td></tr>" for name, text in rows)
    return f"<div><code>{html.escape(str(trace.path))}</code><table>{cells}</table></div>"
