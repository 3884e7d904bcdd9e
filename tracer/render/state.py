"""The optimizer's state by key against the update: a row per state key, a column per trace.

Reads the trace's state columns (``tracer.recording.state``): ``<p>.state_norm:<key>``
(the norm of parameter p's state tensor under that key) and ``<x>.state:<key>``
(a value: one coordinate's, or a number such as an iteration count). Each
row is titled by the key, so Adam's ``exp_avg`` and ``exp_avg_sq`` sit beside
Lion's ``exp_avg`` or a schedule-free optimizer's ``z`` and ``x``; each line
is one tensor (or coordinate), coloured as in the dashboard.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from matplotlib.lines import Line2D

from tracer.errors import RenderError
from tracer.render.common import RenderOptions, label_update_axis, new_figure, save_still, trace_name, trace_styles
from tracer.render.plots import log_scale_suits, plotted_rows
from tracer.trace import Trace

STATE_MARKERS = (".state_norm:", ".state:")
ROW_HEIGHT = 190
COLUMN_WIDTH = 560
MOST_LINES = 12  # per key and trace: the first tensors or coordinates, a note says how many more


def state_series(trace: Trace) -> dict[str, list[tuple[str, str]]]:
    """Per state key, in file order: (owner, column) of each series (owner: the tensor or coordinate)."""
    series: dict[str, list[tuple[str, str]]] = {}
    for column in trace.columns:
        for marker in STATE_MARKERS:
            owner, found, key = column.rpartition(marker)
            if found:
                label = owner if marker == ".state:" else f"|{owner}|"
                series.setdefault(key, []).append((label, column))
                break
    return series


def requires_state(trace: Trace, options: RenderOptions) -> list[str]:
    series = state_series(trace)
    if not series:
        raise RenderError(
            f"figure 'state' needs the optimizer's state columns (<p>.state_norm:<key>, <c>.state:<key>); trace "
            f"{trace_name(trace)} has none (recorded from the first update with Recorder(record_state=True))"
        )
    return ["update"] + [column for pairs in series.values() for _, column in pairs]


def draw_state(traces: Sequence[Trace], options: RenderOptions, out: Path, fmt: str) -> None:
    """One row per state key (every key of every trace, by name), one column per trace."""
    labels, _ = trace_styles(traces, options)
    keys = list(dict.fromkeys(key for trace in traces for key in state_series(trace)))
    owners = list(dict.fromkeys(owner for trace in traces for pairs in state_series(trace).values() for owner, _ in pairs))
    colors = {owner: f"C{i % 10}" for i, owner in enumerate(owners)}
    figure = new_figure(options, (max(900, COLUMN_WIDTH * len(traces)), ROW_HEIGHT * len(keys) + 140))
    figure.set_layout_engine("constrained", h_pad=0.06, w_pad=0.06)
    grid = figure.subplots(len(keys), len(traces), sharex=True, squeeze=False)
    left_out = 0
    for column, (trace, label) in enumerate(zip(traces, labels)):
        rows = plotted_rows(trace, options.updates)
        x = trace["update"][rows]
        series = state_series(trace)
        grid[0, column].set_title(label, fontsize="medium", fontweight="bold")
        for row, key in enumerate(keys):
            ax = grid[row, column]
            ax.grid(True, alpha=0.3)
            pairs = series.get(key, [])
            if not pairs:
                ax.text(0.5, 0.5, f"no {key!r} in this optimizer's state", transform=ax.transAxes,
                        ha="center", va="center", fontsize="small", color="0.4")
                ax.tick_params(axis="y", left=False, labelleft=False)  # no values: a 0-1 scale would be read as one
            left_out += max(0, len(pairs) - MOST_LINES)
            for owner, name in pairs[:MOST_LINES]:
                ax.plot(x, trace[name][rows], color=colors[owner], lw=1.4)
            values = [line.get_ydata() for line in ax.lines]
            if values and log_scale_suits(values):
                ax.set_yscale("log")
            if column == 0:
                ax.set_ylabel(key)
    for ax in grid[-1, :]:
        label_update_axis(ax)
    shown = owners[: 3 * MOST_LINES]
    handles = [Line2D([], [], color=colors[owner], lw=2, label=owner) for owner in shown]
    note = "|p|: the norm of parameter p's state tensor; c: one coordinate's value"
    if left_out:
        note += f"   ·   {left_out} more series not drawn ({MOST_LINES} per key and trace)"
    figure.legend(handles=handles, loc="outside lower center", ncols=min(6, max(1, len(handles))), fontsize="small",
                  title=note, title_fontsize="small", frameon=False)
    figure.suptitle(options.title if options.title is not None else "Optimizer state by key")
    save_still(figure, out, fmt)

