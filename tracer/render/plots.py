"""Quantities against the update index: step-size, lr, gradients, dashboard."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from matplotlib.lines import Line2D

from tracer.errors import RenderError
from tracer.render.common import (
    RenderOptions, lr_columns, new_figure, row_mask, save_still, trace_name, trace_styles,
)

PLOT_SIZE = (800, 480)
DASHBOARD_SIZE = (1200, 700)  # one trace: a 2 x 3 grid of quantities
DASHBOARD_ROW_HEIGHT = 170  # several traces: a row per quantity, a column per trace
DASHBOARD_COLUMN_WIDTH = 560
SMOOTH_FRACTION = 50  # default rolling window: about 1/50 of the updates drawn


@dataclass(frozen=True)
class DashboardPanel:
    """One quantity of the dashboard: the column suffix read per tensor and how it is drawn."""

    quantity: str
    title: str
    log: bool  # log y axis (when every value is positive)
    noisy: bool  # a per-update series: drawn faint, with its rolling mean on top
    cosine: bool = False  # in [-1, 1]; one-element tensors are left out (their cosine is only a sign)


DASHBOARD_PANELS = (
    DashboardPanel("theta_norm", "|θ|", log=False, noisy=False),
    DashboardPanel("g_norm", "|g|", log=True, noisy=True),
    DashboardPanel("d_norm", "|d|", log=True, noisy=True),
    DashboardPanel("displacement", "|Δθ| per update", log=True, noisy=True),
    DashboardPanel("cos_d_prev", "cos(d, previous d)", log=False, noisy=True, cosine=True),
    DashboardPanel("cos_g_d", "cos(g, d)", log=False, noisy=True, cosine=True),
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


def rolling_mean(values: np.ndarray, window: int) -> np.ndarray:
    """Mean of each value's centred window of `window` updates, ignoring NaN and inf.

    The windows are cut short at the ends (the mean of what there is), and a
    window with no finite value gives NaN: the first update's cos_d_prev is
    empty. Sums are differences of one cumulative sum (float64), so the cost
    does not grow with the window.
    """
    values = np.asarray(values, dtype=np.float64)
    if window <= 1:
        return values.copy()
    finite = np.isfinite(values)
    sums = np.concatenate([[0.0], np.cumsum(np.where(finite, values, 0.0))])
    counts = np.concatenate([[0], np.cumsum(finite)])
    first = np.arange(len(values)) - window // 2
    start = np.clip(first, 0, len(values))
    stop = np.clip(first + window, 0, len(values))
    count = counts[stop] - counts[start]
    mean = (sums[stop] - sums[start]) / np.maximum(count, 1)
    return np.where(count > 0, mean, np.nan)


def smoothing_window(traces: Sequence[Any], options: RenderOptions) -> int:
    """`options.smooth`, else about 1/SMOOTH_FRACTION of the most updates a trace draws."""
    if options.smooth is not None:
        return options.smooth
    longest = max(len(plotted_rows(t, options.updates)) for t in traces)
    return max(1, round(longest / SMOOTH_FRACTION))


def one_element(trace: Any, name: str) -> bool:
    """Whether parameter `name` has one element (its cosines are only a sign, ±1).

    From the metadata's shapes; a file that does not list the parameter is read:
    one element when every finite cosine is ±1."""
    for parameter in trace.meta.get("parameters") or []:
        if parameter.get("name") == name and parameter.get("shape") is not None:
            return int(np.prod(parameter["shape"])) == 1
    cosines = np.concatenate([trace[f"{name}.{q}"] for q in ("cos_d_prev", "cos_g_d") if f"{name}.{q}" in trace])
    cosines = cosines[np.isfinite(cosines)]
    return bool(cosines.size) and bool(np.all(np.abs(np.abs(cosines) - 1) < 1e-6))


def tensor_styles(traces: Sequence[Any]) -> dict[str, tuple[str, Any]]:
    """(colour, line style) per summarized tensor, in order of first appearance over the traces:
    the same tensor has the same colour in every panel and every trace's column."""
    names = list(dict.fromkeys(n for t in traces for n in summarized_parameters(t)))
    styles = ["-", "--", ":", "-."]
    # Past ten tensors the colours repeat; the line style tells those apart.
    return {name: (f"C{i % 10}", styles[(i // 10) % len(styles)]) for i, name in enumerate(names)}


def draw_dashboard(traces: Sequence[Any], options: RenderOptions, out: Path, fmt: str) -> None:
    """Per-tensor norms and cosines against the update, one panel per quantity.

    A colour per tensor, the same in every panel. One trace fills a 2 x 3 grid;
    several get a column each, a row per quantity with a shared y axis, so the
    traces compare along a row. Noisy per-update series are drawn faint with a
    rolling mean over `smooth` updates on top; one-element tensors are left out
    of the cosine panels (their cosine is ±1, a sign), as a note says."""
    labels, _ = trace_styles(traces, options)  # colours name the tensors here, not the traces
    window = smoothing_window(traces, options)
    styles = tensor_styles(traces)
    several = len(traces) > 1
    if several:
        width = max(DASHBOARD_SIZE[0], DASHBOARD_COLUMN_WIDTH * len(traces))
        default_size = (width, DASHBOARD_ROW_HEIGHT * len(DASHBOARD_PANELS) + 130)
    else:
        default_size = DASHBOARD_SIZE
    figure = new_figure(options, default_size)
    figure.set_layout_engine("constrained", h_pad=0.03, w_pad=0.03)
    if several:
        grid = figure.subplots(len(DASHBOARD_PANELS), len(traces), sharex=True, sharey="row", squeeze=False)
    else:
        grid = figure.subplots(2, 3, sharex=True, squeeze=False).reshape(len(DASHBOARD_PANELS), 1)
    left_out: dict[str, None] = {}
    for column, (trace, label) in enumerate(zip(traces, labels)):
        rows = plotted_rows(trace, options.updates)
        x = trace["update"][rows]
        names = summarized_parameters(trace)
        single = {name for name in names if one_element(trace, name)}
        for panel, ax in zip(DASHBOARD_PANELS, grid[:, column]):
            for name in names:
                key = f"{name}.{panel.quantity}"
                if key not in trace:
                    continue
                if panel.cosine and name in single:
                    left_out[name] = None
                    continue
                color, linestyle = styles[name]
                values = trace[key][rows]
                if panel.noisy and window > 1:
                    # Every faint line under every mean: a later tensor's noise hides no earlier mean.
                    ax.plot(x, values, color=color, lw=0.6, alpha=0.22, linestyle=linestyle, zorder=1)
                    values = rolling_mean(values, window)
                ax.plot(x, values, color=color, lw=1.5, linestyle=linestyle, zorder=3)
        if several:
            grid[0, column].set_title(label, fontsize="medium", fontweight="bold")
    for panel, row in zip(DASHBOARD_PANELS, grid):
        for ax in row:
            ax.grid(True, alpha=0.3)
            if not several:
                ax.set_title(panel.title, fontsize="medium")
        if several:
            row[0].set_ylabel(panel.title)
        # A row shares its y axis (several traces): the first axes' scale sets the row's.
        drawn = np.concatenate([line.get_ydata() for ax in row for line in ax.lines] or [np.empty(0)])
        if panel.log and (drawn[np.isfinite(drawn)] > 0).any():
            row[0].set_yscale("log")
        if panel.cosine:
            for ax in row:
                ax.set_ylim(-1.05, 1.05)
    for ax in grid[-1, :] if several else grid[3:, 0]:
        ax.set_xlabel("update")
    handles = [Line2D([], [], color=c, linestyle=ls, lw=2, label=name) for name, (c, ls) in styles.items()]
    notes = []
    if window > 1:
        notes.append(f"faint: each update; bold: mean over {window} updates")
    if left_out:
        notes.append(f"cosines leave out {', '.join(left_out)}: one element, so only a sign (±1)")
    figure.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 8), fontsize="small",
                  title="   ·   ".join(notes) or None, title_fontsize="small", frameon=False)
    default_title = "Per-tensor summary" if several else f"Per-tensor summary: {labels[0]}"
    figure.suptitle(options.title if options.title is not None else default_title)
    save_still(figure, out, fmt)
