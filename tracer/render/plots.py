"""Quantities against the update index: step-size, lr, gradients, dashboard."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import fnmatch
import re
import warnings

import numpy as np
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from tracer.errors import RenderError
from tracer.trace import Trace, summarized_tensors
from tracer.render.common import (
    LINE_STYLES, RenderOptions, divergence_marker, figure_lr_columns, label_update_axis, new_figure, row_mask,
    save_still, trace_name, trace_styles,
)

PLOT_SIZE = (800, 480)  # design sizes: pixels at 100 dpi (see common.new_figure)
DASHBOARD_SIZE = (1200, 700)  # one trace: a 2 x 3 grid of quantities
DASHBOARD_ROW_HEIGHT = 170  # several traces: a row per quantity, a column per trace
DASHBOARD_COLUMN_WIDTH = 560
DASHBOARD_LEGEND_ROW = 17  # design pixels per row of the tensors' legend
DASHBOARD_LOSS_HEIGHT = 200  # design pixels of the loss and lr row on top
LEGEND_CHARACTER = 6.2  # design pixels per character of a "small" legend label, and its handle:
LEGEND_HANDLE = 45
SMOOTH_FRACTION = 50  # default rolling window: about 1/50 of the updates drawn
GRADIENTS_SHOWN = 8  # coordinates the gradients figure draws unless told which
LOG_SPAN = 100.0  # "auto" y scale: log when the positive values span more than this ratio (two decades)


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
DASHBOARD_TENSORS_DRAWN = 12  # up to this many tensors the dashboard draws each; more are drawn as groups
GROUPS_MERGED = 10  # more automatic groups than this: the unrecognised ones merge into "other"
OUTLIER_DECADES = 0.5  # a tensor's median distance from its group's median, in decades (norms), to be named
OUTLIER_COSINE = 0.3  # the same for cosines, in cosine units
OUTLIERS_NAMED = 2  # per group and panel, at most


def requires_step_size(trace: Trace, options: RenderOptions) -> list[str]:
    return ["update", "step_size"]


def requires_lr(trace: Trace, options: RenderOptions) -> list[str]:
    return ["update", "epoch"] + figure_lr_columns(trace)


def gradient_coordinates(trace: Trace, options: RenderOptions) -> list[str]:
    """The coordinates the gradients figure draws: `options.coordinates`, else the first
    GRADIENTS_SHOWN traced (a note on the figure says how many were left out)."""
    traced = trace.meta.get("coordinates") or []
    if not traced:
        raise RenderError(
            f"figure 'gradients' needs fully traced coordinates (columns <c>.g); trace "
            f"{trace_name(trace)} has none (granularity {trace.meta.get('granularity')!r})"
        )
    if options.coordinates is None:
        return list(traced[:GRADIENTS_SHOWN])
    unknown = [c for c in options.coordinates if c not in traced]
    if unknown:
        listed = ", ".join(traced[:6]) + (", ..." if len(traced) > 6 else "")
        raise RenderError(f"coordinate {unknown[0]!r} is not traced in trace {trace_name(trace)}; traced: {listed} "
                          f"({len(traced)} coordinates)")
    return list(options.coordinates)


def requires_gradients(trace: Trace, options: RenderOptions) -> list[str]:
    return ["update"] + [f"{c}.g" for c in gradient_coordinates(trace, options)]


def summarized_parameters(trace: Trace) -> list[str]:
    names = trace.meta.get("summarized") or []
    if not names:  # a file written by hand may omit the list: read it from the columns
        names = summarized_tensors(trace.columns)
    return list(names)


def requires_dashboard(trace: Trace, options: RenderOptions) -> list[str]:
    names = summarized_parameters(trace)
    if not names:
        raise RenderError(
            f"figure 'dashboard' needs per-tensor summary columns (<p>.g_norm, <p>.d_norm, ...); "
            f"trace {trace_name(trace)} has none (granularity {trace.meta.get('granularity')!r})"
        )
    return ["update"] + [f"{p}.{q}" for p in names for q in DASHBOARD_REQUIRED]


def plotted_rows(trace: Trace, updates: tuple[int, int] | None) -> np.ndarray:
    """Rows in the update range, up to the update where a diverged trace diverged."""
    rows = np.flatnonzero(row_mask(trace, updates))
    if trace.status == "diverged" and trace.diverged_at is not None:
        rows = rows[trace["update"][rows] <= trace.diverged_at]
    return rows


def _mark_diverged(ax: Any, trace: Trace, x: np.ndarray, values: np.ndarray, color: str) -> None:
    """The divergence X at the last finite value of a diverged trace."""
    finite = np.flatnonzero(np.isfinite(values))
    if trace.status == "diverged" and finite.size:
        divergence_marker(ax, color, trace.diverged_at, (x[finite[-1]], values[finite[-1]]))


def _x_values(trace: Trace, rows: np.ndarray, against: str) -> np.ndarray:
    """The update, or the epoch with the batch as its fraction (for `against="epoch"`)."""
    if against != "epoch":
        return trace["update"][rows]
    epoch, batch = trace["epoch"][rows], trace["batch"][rows]
    if not np.isfinite(epoch).all():
        raise RenderError(f"trace {trace_name(trace)} has no epoch numbers (recorded without "
                          "note(epoch=..., batch=...)); draw it against the update")
    batch = np.nan_to_num(batch)
    return epoch + batch / max(1.0, batch.max() + 1)


def log_scale_suits(values: Sequence[np.ndarray]) -> bool:
    """Whether positive values span more than LOG_SPAN (two decades): a linear axis would show
    a long run's later values as a flat line at 0."""
    stacked = np.concatenate([np.asarray(v, dtype=float).ravel() for v in values] or [np.empty(0)])
    positive = stacked[np.isfinite(stacked) & (stacked > 0)]
    if positive.size < 2 or (np.isfinite(stacked) & (stacked < 0)).any():
        return False
    return float(positive.max()) / float(positive.min()) > LOG_SPAN


def _lines_figure(traces: Sequence[Trace], options: RenderOptions, out: Path, fmt: str, *,
                  columns_of, ylabel: str, title: str, drawstyle: str = "default",
                  yscale: str = "linear", note: str = "") -> None:
    """One axes, one line per (trace, column) against the update (or epoch) index.

    `yscale` "auto" is log when the values drawn span decades (`log_scale_suits`)."""
    labels, colors = trace_styles(traces, options)
    figure = new_figure(options, PLOT_SIZE)
    ax = figure.add_subplot()
    # One trace with several columns (dWa, dWb): a colour per column reads
    # better than line styles; with several traces the colour names the trace.
    colour_per_column = len(traces) == 1 and not options.colors
    drawn = []
    for trace, label, color in zip(traces, labels, colors):
        columns = columns_of(trace)
        rows = plotted_rows(trace, options.updates)
        x = _x_values(trace, rows, options.against)
        for index, (column, name) in enumerate(columns):
            values = trace[column][rows]
            drawn.append(values)
            text = label if len(columns) == 1 else f"{label}: {name}"
            line_color = f"C{index % 10}" if colour_per_column else color
            line_style = LINE_STYLES[index // 10 % len(LINE_STYLES)] if colour_per_column \
                else LINE_STYLES[index % len(LINE_STYLES)]
            ax.plot(x, values, color=line_color, lw=1.4 if len(columns) == 1 else 1.0,
                    linestyle=line_style, drawstyle=drawstyle, label=text,
                    zorder=2 + len(columns) - index)  # the first column on top
            _mark_diverged(ax, trace, x, values, line_color)
    label_update_axis(ax, "epoch" if options.against == "epoch" else "update")
    ax.set_ylabel(ylabel)
    if yscale == "auto":
        yscale = "log" if log_scale_suits(drawn) else "linear"
    if yscale == "log":
        ax.set_yscale("log")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    if note:
        # Below the x axis' label (its ticks and label take about 30 points).
        ax.annotate(note, xy=(0.0, 0.0), xycoords="axes fraction", xytext=(0, -34), textcoords="offset points",
                    va="top", ha="left", fontsize="small", color="#444444")
    ax.set_title(options.title if options.title is not None else title)
    figure.set_layout_engine("constrained")  # the note below the axes, the labels: nothing clipped
    save_still(figure, out, fmt)


def draw_step_size(traces: Sequence[Trace], options: RenderOptions, out: Path, fmt: str) -> None:
    """Effective step size lr*|d| against the update, one colour per trace (article Fig 1).

    A log y axis when the step sizes span decades (a long run's later steps), unless `yscale`."""
    _lines_figure(traces, options, out, fmt, columns_of=lambda t: [("step_size", "step size")],
                  ylabel="effective step size  lr·|d|", title="Effective step size",
                  yscale=options.yscale or "auto")


def draw_lr(traces: Sequence[Trace], options: RenderOptions, out: Path, fmt: str) -> None:
    """The learning rate in effect at each update (article Fig 15); a step line, since it is
    constant between scheduler steps."""
    _lines_figure(traces, options, out, fmt,
                  columns_of=lambda t: [(c, c) for c in figure_lr_columns(t)],
                  ylabel="learning rate", title="Learning rate", drawstyle="steps-post",
                  yscale=options.yscale or "linear")


def draw_gradients(traces: Sequence[Trace], options: RenderOptions, out: Path, fmt: str) -> None:
    """The gradient g of each chosen coordinate against the update (article Fig 13): the
    `coordinates` option, else the first GRADIENTS_SHOWN (a note names how many are left out)."""
    shown = {id(t): gradient_coordinates(t, options) for t in traces}
    left_out = max(len(t.meta["coordinates"]) - len(shown[id(t)]) for t in traces)
    note = ""
    if options.coordinates is None and left_out > 0:
        total = max(len(t.meta["coordinates"]) for t in traces)
        note = (f"showing the first {GRADIENTS_SHOWN} of {total} coordinates; "
                "choose others with coordinates (--coordinates A,B,...)")
    _lines_figure(traces, options, out, fmt,
                  columns_of=lambda t: [(f"{c}.g", f"g of {c}") for c in shown[id(t)]],
                  ylabel="gradient g", title="Gradients", yscale=options.yscale or "linear", note=note)


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


def smoothing_window(traces: Sequence[Trace], options: RenderOptions) -> int:
    """`options.smooth`, else about 1/SMOOTH_FRACTION of the most updates a trace draws."""
    if options.smooth is not None:
        return options.smooth
    longest = max(len(plotted_rows(t, options.updates)) for t in traces)
    return max(1, round(longest / SMOOTH_FRACTION))


def one_element(trace: Trace, name: str) -> bool:
    """Whether parameter `name` has one element (its cosines are only a sign, ±1).

    From the metadata's shapes; a file that does not list the parameter is read:
    one element when every finite cosine is ±1."""
    for parameter in trace.meta.get("parameters") or []:
        if parameter.get("name") == name and parameter.get("shape") is not None:
            return int(np.prod(parameter["shape"])) == 1
    cosines = np.concatenate([trace[f"{name}.{q}"] for q in ("cos_d_prev", "cos_g_d") if f"{name}.{q}" in trace])
    cosines = cosines[np.isfinite(cosines)]
    return bool(cosines.size) and bool(np.all(np.abs(np.abs(cosines) - 1) < 1e-6))


def tensor_styles(traces: Sequence[Trace]) -> dict[str, tuple[str, Any]]:
    """(colour, line style) per summarized tensor, in order of first appearance over the traces:
    the same tensor has the same colour in every panel and every trace's column."""
    names = list(dict.fromkeys(n for t in traces for n in summarized_parameters(t)))
    # Past ten tensors the colours repeat; the line style tells those apart.
    return {name: (f"C{i % 10}", LINE_STYLES[(i // 10) % len(LINE_STYLES)]) for i, name in enumerate(names)}


def legend_columns(labels: Sequence[str], width: float) -> int:
    """How many columns of `labels` fit across `width` design pixels (a "small" legend)."""
    widest = max((len(label) for label in labels), default=1) * LEGEND_CHARACTER + LEGEND_HANDLE
    return max(1, min(len(labels), int(width // widest)))


@dataclass(frozen=True)
class TensorGroup:
    """Tensors the dashboard draws as one: their median, their spread, their outliers by name."""

    label: str
    names: tuple[str, ...]


# Module kinds recognised in a parameter's module path, by its tokens (split at . _ and digits), first match wins.
_MODULE_KINDS = (
    ("embedding", ("wte", "wpe", "embed"), ("emb",)),
    ("norm", ("ln", "bn", "rms"), ("norm",)),
    ("attention", ("q", "k", "v", "o", "qkv", "query", "key", "value"), ("attn", "attention")),
    ("MLP", ("fc", "fc1", "fc2", "up", "down", "gate", "intermediate", "w1", "w2", "w3"), ("mlp", "ffn")),
    ("convolution", (), ("conv",)),
    ("output", ("head", "classifier", "lm"), ()),
)


def module_kind(name: str) -> str | None:
    """The kind of module a parameter belongs to, from its name (``_MODULE_KINDS``); None if none is recognised."""
    tokens = [t for t in re.split(r"[._\d]+", name.rsplit(".", 1)[0].lower() if "." in name else "") if t]
    for kind, exact, within in _MODULE_KINDS:
        if any(t in exact or any(w in t for w in within) for t in tokens):
            return kind
    return None


def _role(name: str) -> str:
    """A parameter's name with its layer numbers replaced by *: the same role in every layer."""
    return re.sub(r"(^|\.)\d+(?=\.|$)", r"\1*", name)


def tensor_groups(names: Sequence[str], patterns: Sequence[str] | None = None) -> list[TensorGroup]:
    """The tensors' groups, in order of first appearance.

    ``patterns``: the user's groups, each ``"label=glob"`` or a glob (its own
    label), globs separated by ``|`` (``"attention=*attn*|*.q_proj.*"``); a
    tensor joins the first that matches, the others the group "other".
    Without patterns, by module kind (``module_kind``) and whether the tensor is
    a bias: "attention weight", "norm bias", ...; a tensor of no known kind by
    its role (``h.*.fc.weight``), and if that makes more than GROUPS_MERGED
    groups, "other weight" / "other bias".
    """
    if patterns:
        rules = []
        for entry in patterns:
            label, _, globs = entry.partition("=") if "=" in entry else (entry, "", entry)
            rules.append((label.strip(), [g.strip() for g in globs.split("|") if g.strip()]))
        key = {n: next((label for label, globs in rules if any(fnmatch.fnmatchcase(n, g) for g in globs)), "other")
               for n in names}
    else:
        def automatic(name: str, merge: bool) -> str:
            leaf = "bias" if name.rsplit(".", 1)[-1].endswith("bias") else "weight"
            kind = module_kind(name)
            if kind is None:
                return f"other {leaf}" if merge else _role(name)
            return kind if kind == "embedding" else f"{kind} {leaf}"

        key = {n: automatic(n, False) for n in names}
        if len(set(key.values())) > GROUPS_MERGED:
            key = {n: automatic(n, True) for n in names}
    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault(key[name], []).append(name)
    return [TensorGroup(label, tuple(members)) for label, members in groups.items()]


def _spread(values: np.ndarray, cosine: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per update, the group's median; and per tensor, its median distance from it (decades, or cosine units)."""
    with np.errstate(all="ignore"):
        scaled = values if cosine else np.log10(np.where(values > 0, values, np.nan))
        finite = np.isfinite(scaled)
        median = np.array([np.median(column[ok]) if ok.any() else np.nan for column, ok in zip(scaled.T, finite.T)])
        distance = np.abs(scaled - median)
        far = np.array([np.median(row[ok]) if ok.any() else 0.0 for row, ok in zip(distance, np.isfinite(distance))])
    return (median if cosine else 10.0 ** median), far


def _draw_group(ax: Any, x: np.ndarray, names: Sequence[str], values: np.ndarray, color: str,
                cosine: bool) -> list[str]:
    """One group in one panel: a band over the range of its ordinary tensors, its median, its outliers named.

    ``values``: one row per tensor (smoothed already). Returns the outliers' names."""
    median, far = _spread(values, cosine)
    outliers: list[int] = []
    if len(names) >= 3:
        limit = OUTLIER_COSINE if cosine else OUTLIER_DECADES
        ordinary = np.median(far)
        candidates = [i for i in np.argsort(-far) if far[i] > max(limit, 3 * ordinary)]
        outliers = candidates[:OUTLIERS_NAMED]
    rest = np.delete(values, outliers, axis=0)
    rest = np.where(np.isfinite(rest), rest, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an update no tensor has a value at (the first cos_d_prev)
        low, high = np.nanmin(rest, axis=0), np.nanmax(rest, axis=0)
    if len(names) > 1:
        ax.fill_between(x, low, high, color=color, alpha=0.14, lw=0, zorder=1)
    ax.plot(x, median, color=color, lw=1.6, zorder=3)
    for i in outliers:  # labelled: the panel's own legend names them
        ax.plot(x, values[i], color=color, lw=1.1, linestyle=":", zorder=2, label=_short(names[i]))
    return [names[i] for i in outliers]


def _short(name: str) -> str:
    """A tensor's name as an outlier's label: its last four parts (the layer and the module)."""
    parts = name.split(".")
    return name if len(parts) <= 4 else "…" + ".".join(parts[-4:])


def _draw_grouped(traces: Sequence[Trace], options: RenderOptions, grid: Any, window: int,
                  groups: Sequence[TensorGroup], several: bool) -> tuple[list[Any], list[str]]:
    """The dashboard's panels by groups (``tensor_groups``); returns the legend's handles and its notes."""
    named: dict[str, None] = {}
    left_out: dict[str, None] = {}
    for column, trace in enumerate(traces):
        rows = plotted_rows(trace, options.updates)
        x = trace["update"][rows]
        present = set(summarized_parameters(trace))
        single = {name for name in present if one_element(trace, name)}
        for panel, ax in zip(DASHBOARD_PANELS, grid[:, column]):
            for index, group in enumerate(groups):
                members = [n for n in group.names if n in present and f"{n}.{panel.quantity}" in trace]
                if panel.cosine:
                    left_out.update((n, None) for n in members if n in single)
                    members = [n for n in members if n not in single]
                if not members:
                    continue
                values = np.array([trace[f"{n}.{panel.quantity}"][rows] for n in members], dtype=float)
                if panel.noisy and window > 1:
                    values = np.array([rolling_mean(v, window) for v in values])
                named.update((n, None) for n in _draw_group(ax, x, members, values, f"C{index % 10}", panel.cosine))
            if any(line.get_label()[:1] != "_" for line in ax.lines):
                ax.legend(loc="best", fontsize=6.5, handlelength=1.6, framealpha=0.85, borderpad=0.3,
                          labelspacing=0.2)
    handles = [Patch(facecolor=f"C{i % 10}", alpha=0.5, edgecolor=f"C{i % 10}", label=f"{g.label} ({len(g.names)})")
               for i, g in enumerate(groups)]
    notes = ["line: the group's median; band: its range; dotted, named in the panel: a tensor far from its group"]
    if window > 1:
        notes.append(f"means over {window} updates")
    if left_out:
        notes.append(f"cosines leave out {len(left_out)} one-element tensors")
    return handles, notes


def draw_dashboard(traces: Sequence[Trace], options: RenderOptions, out: Path, fmt: str) -> None:
    """Per-tensor norms and cosines against the update, one panel per quantity.

    A colour per tensor, the same in every panel. One trace fills a 2 x 3 grid;
    several get a column each, a row per quantity with a shared y axis, so the
    traces compare along a row. Noisy per-update series are drawn faint with a
    rolling mean over `smooth` updates on top; one-element tensors are left out
    of the cosine panels (their cosine is ±1, a sign), as a note says.

    More than DASHBOARD_TENSORS_DRAWN tensors (a transformer's 150), or the
    `groups` option's patterns, draw groups instead (`tensor_groups`): a colour
    per group, its median, the band of its range, and the tensors far from
    their group named; `groups=("tensors",)` draws every tensor anyway."""
    labels, _ = trace_styles(traces, options)  # colours name the tensors here, not the traces
    window = smoothing_window(traces, options)
    styles = tensor_styles(traces)
    patterns = None if options.groups in (None, ("tensors",)) else options.groups
    grouped = options.groups != ("tensors",) and (patterns is not None or len(styles) > DASHBOARD_TENSORS_DRAWN)
    groups = tensor_groups(list(styles), patterns) if grouped else []
    legend_labels = [f"{g.label} ({len(g.names)})" for g in groups] if grouped else list(styles)
    several = len(traces) > 1
    if several:
        width = max(DASHBOARD_SIZE[0], DASHBOARD_COLUMN_WIDTH * len(traces))
        height = DASHBOARD_ROW_HEIGHT * len(DASHBOARD_PANELS) + 130
    else:
        width, height = DASHBOARD_SIZE
    # The tensors' legend wraps into as many columns as fit across the figure (a 6-layer
    # transformer's ~40 tensors: about 4 columns of 10), and the figure grows by its rows.
    columns = legend_columns(legend_labels, width - 40)
    legend_rows = -(-len(legend_labels) // columns)
    height += max(0, legend_rows - 2) * DASHBOARD_LEGEND_ROW
    figure = new_figure(options, (width, height + DASHBOARD_LOSS_HEIGHT))
    figure.set_layout_engine("constrained", h_pad=0.06, w_pad=0.06)  # inches: a margin round the legend too
    body = draw_dashboard_loss_row(figure, traces, options, labels, height)
    if several:
        grid = body.subplots(len(DASHBOARD_PANELS), len(traces), sharex=True, sharey="row", squeeze=False)
    else:
        grid = body.subplots(2, 3, sharex=True, squeeze=False).reshape(len(DASHBOARD_PANELS), 1)
    left_out: dict[str, None] = {}
    for column, (trace, label) in enumerate(zip(traces, labels)):
        if several:
            grid[0, column].set_title(label, fontsize="medium", fontweight="bold")
        if grouped:
            continue
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
    if grouped:
        handles, notes = _draw_grouped(traces, options, grid, window, groups, several)
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
        label_update_axis(ax)
    if not grouped:
        handles = [Line2D([], [], color=c, linestyle=ls, lw=2, label=name) for name, (c, ls) in styles.items()]
        notes = []
        if window > 1:
            notes.append(f"faint: each update; bold: mean over {window} updates")
        if left_out:
            named = ", ".join(left_out) if len(left_out) <= 3 else f"{len(left_out)} tensors"
            notes.append(f"cosines leave out {named}: one element, so only a sign (±1)")
    figure.legend(handles=handles, loc="outside lower center", ncols=columns, fontsize="small",
                  title="   ·   ".join(notes) or None, title_fontsize="small", frameon=False)
    default_title = "Per-tensor summary" if several else f"Per-tensor summary: {labels[0]}"
    figure.suptitle(options.title if options.title is not None else default_title)
    save_still(figure, out, fmt)


def draw_dashboard_loss_row(figure: Any, traces: Sequence[Trace], options: RenderOptions, labels: Sequence[str],
                            body_height: float) -> Any:
    """The dashboard's top row: the loss and the lr of every trace (tracer.render.loss, log scale
    where they span decades), black with a line style per trace, since the colours name tensors.
    Returns the subfigure below it, for the per-tensor panels."""
    from tracer.render.loss import draw_loss_and_lr

    top, body = figure.subfigures(2, 1, height_ratios=[DASHBOARD_LOSS_HEIGHT, body_height])
    axes = top.subplots(1, 2)
    lines = ["black"] * len(traces)
    with_loss = [t for t in traces if "loss" in t and np.isfinite(t["loss"]).any()]
    if len(with_loss) < len(traces):  # a run that noted no loss still shows its lr
        axes[0].text(0.5, 0.5, "no loss noted", transform=axes[0].transAxes, ha="center", va="center",
                     color="#666666")
    constant_lr = draw_loss_and_lr(axes, traces, options, labels, lines, legend=False)
    for ax in axes:
        for index, line in enumerate(line for line in ax.lines if line.get_linestyle() != "None"):
            line.set_linestyle(LINE_STYLES[index % len(LINE_STYLES)])
        ax.set_ylabel("")
        label_update_axis(ax)
    if len(traces) > 1:
        axes[0].legend(loc="best", fontsize="small")
    axes[0].set_title("loss", fontsize="medium")
    axes[1].set_title("learning rate (constant)" if constant_lr else "learning rate", fontsize="medium")
    return body