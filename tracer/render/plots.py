"""Quantities against the update index: step-size, lr, gradients, dashboard."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from tracer.errors import RenderError
from tracer.render.common import (
    RenderOptions, lr_columns, new_figure, row_mask, save_still, trace_name, trace_styles,
)

PLOT_SIZE = (800, 480)
DASHBOARD_SIZE = (1200, 700)

# What the dashboard shows per summarized parameter: (column suffix, panel title, log scale).
DASHBOARD_PANELS = (
    ("theta_norm", "|θ|", False),
    ("g_norm", "|g|", True),
    ("d_norm", "|d|", True),
    ("displacement", "|Δθ| per update", True),
    ("cos_d_prev", "cos(d, previous d)", False),
    ("cos_g_d", "cos(g, d)", False),
)
DASHBOARD_REQUIRED = ("theta_norm", "g_norm", "d_norm", "cos_d_prev", "cos_g_d")


def requires_step_size(trace: Any, options: RenderOptions) -> list[str]:
    return ["update", "step_size"]


def requires_lr(trace: Any, options: RenderOptions) -> list[str]:
    return ["update", "epoch"] + lr_columns(trace)


def requires_gradients(trace: Any, options: RenderOptions) -> list[str]:
    coordinates = trace.meta.get("coordinates") or []
    if not coordinates:
        raise RenderError(
            f"figure 'gradients' needs fully traced coordinates (columns <c>.g); trace "
            f"{trace_name(trace)} has none (granularity {trace.meta.get('granularity')!r})"
        )
    return ["update"] + [f"{c}.g" for c in coordinates]


def summarized_parameters(trace: Any) -> list[str]:
    names = trace.meta.get("summarized") or []
    if not names:  # a file written by hand may omit the list: read it from the columns
        names = [c[: -len(".g_norm")] for c in trace.columns if c.endswith(".g_norm")]
    return list(names)


def requires_dashboard(trace: Any, options: RenderOptions) -> list[str]:
    names = summarized_parameters(trace)
    if not names:
        raise RenderError(
            f"figure 'dashboard' needs per-tensor summary columns (<p>.g_norm, <p>.d_norm, ...); "
            f"trace {trace_name(trace)} has none (granularity {trace.meta.get('granularity')!r})"
        )
    return ["update"] + [f"{p}.{q}" for p in names for q in DASHBOARD_REQUIRED]


def plotted_rows(trace: Any, updates: tuple[int, int] | None) -> np.ndarray:
    """Rows in the update range, up to the update where a diverged trace diverged."""
    rows = np.flatnonzero(row_mask(trace, updates))
    if trace.status == "diverged" and trace.diverged_at is not None:
        rows = rows[trace["update"][rows] <= trace.diverged_at]
    return rows


def _mark_diverged(ax: Any, trace: Any, x: np.ndarray, values: np.ndarray, color: str) -> None:
    """An X at the last finite value of a diverged trace."""
    if trace.status != "diverged":
        return
    finite = np.flatnonzero(np.isfinite(values))
    if finite.size:
        last = finite[-1]
        ax.plot(x[last], values[last], marker="X", markersize=10, color=color, markeredgecolor="black",
                linestyle="none", zorder=5, label=f"diverged at update {trace.diverged_at}")


def _lines_figure(traces: Sequence[Any], options: RenderOptions, out: Path, fmt: str, *,
                  columns_of, ylabel: str, title: str, drawstyle: str = "default",
                  logy: bool = False) -> None:
    """One axes, one line per (trace, column) against the update (or epoch) index."""
    labels, colors = trace_styles(traces, options)
    figure = new_figure(options, PLOT_SIZE)
    ax = figure.add_subplot()
    styles = ["-", "--", ":", "-."]
    # One trace with several columns (dWa, dWb): a colour per column reads
    # better than line styles; with several traces the colour names the trace.
    colour_per_column = len(traces) == 1 and not options.colors
    for trace, label, color in zip(traces, labels, colors):
        columns = columns_of(trace)
        rows = plotted_rows(trace, options.updates)
        x = trace["epoch"][rows] + trace["batch"][rows] / max(1, trace["batch"].max() + 1) \
            if options.against == "epoch" else trace["update"][rows]
        for index, (column, name) in enumerate(columns):
            values = trace[column][rows]
            text = label if len(columns) == 1 else f"{label}: {name}"
            line_color = f"C{index % 10}" if colour_per_column else color
            line_style = "-" if colour_per_column else styles[index % len(styles)]
            ax.plot(x, values, color=line_color, lw=1.4 if len(columns) == 1 else 1.0,
                    linestyle=line_style, drawstyle=drawstyle, label=text,
                    zorder=2 + len(columns) - index)  # the first column on top
            _mark_diverged(ax, trace, x, values, line_color)
    ax.set_xlabel("epoch" if options.against == "epoch" else "update")
    ax.set_ylabel(ylabel)
    if logy:
        ax.set_yscale("log")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    ax.set_title(options.title if options.title is not None else title)
    save_still(figure, out, fmt)


def draw_step_size(traces: Sequence[Any], options: RenderOptions, out: Path, fmt: str) -> None:
    """Effective step size lr*|d| against the update, one colour per trace (article Fig 1)."""
    _lines_figure(traces, options, out, fmt, columns_of=lambda t: [("step_size", "step size")],
                  ylabel="effective step size  lr·|d|", title="Effective step size")


def draw_lr(traces: Sequence[Any], options: RenderOptions, out: Path, fmt: str) -> None:
    """The learning rate in effect at each update (article Fig 15); a step line, since it is
    constant between scheduler steps."""
    _lines_figure(traces, options, out, fmt,
                  columns_of=lambda t: [(c, c) for c in lr_columns(t)],
                  ylabel="learning rate", title="Learning rate", drawstyle="steps-post")


def draw_gradients(traces: Sequence[Any], options: RenderOptions, out: Path, fmt: str) -> None:
    """The gradient of each traced coordinate against the update (article Fig 13)."""
    _lines_figure(traces, options, out, fmt,
                  columns_of=lambda t: [(f"{c}.g", f"d{c}") for c in t.meta["coordinates"]],
                  ylabel="gradient g", title="Gradients")


def draw_dashboard(traces: Sequence[Any], options: RenderOptions, out: Path, fmt: str) -> None:
    """Per-tensor norms and cosines against the update, one panel per quantity."""
    labels, colors = trace_styles(traces, options)
    figure = new_figure(options, DASHBOARD_SIZE)
    axes = figure.subplots(2, 3, sharex=True).ravel()
    styles = ["-", "--", ":", "-.", (0, (5, 1)), (0, (1, 1))]
    for trace, label, color in zip(traces, labels, colors):
        rows = plotted_rows(trace, options.updates)
        x = trace["update"][rows]
        for index, name in enumerate(summarized_parameters(trace)):
            for ax, (quantity, _, _) in zip(axes, DASHBOARD_PANELS):
                column = f"{name}.{quantity}"
                if column not in trace:
                    continue
                ax.plot(x, trace[column][rows], color=color, lw=1.2,
                        linestyle=styles[index % len(styles)], label=f"{label}: {name}")
    for ax, (quantity, title, logy) in zip(axes, DASHBOARD_PANELS):
        ax.set_title(title, fontsize="medium")
        if logy and any(line.get_ydata().size and np.nanmin(line.get_ydata()) > 0 for line in ax.lines):
            ax.set_yscale("log")
        ax.grid(True, alpha=0.3)
    for ax in axes[3:]:
        ax.set_xlabel("update")
    for ax in axes[4:]:
        ax.set_ylim(-1.05, 1.05)
    axes[0].legend(loc="best", fontsize="x-small")
    figure.suptitle(options.title if options.title is not None else "Per-tensor summary")
    figure.tight_layout()
    save_still(figure, out, fmt)
