"""What the explorer page holds: the traces' columns (downsampled by a stated rule), the plane and its contour.

`page_data(traces, ...)` returns one JSON-able dict that the page's script
reads. Columns travel as base64 of little-endian binary arrays, each in the
narrowest type that holds every value exactly: int32 for whole numbers
(update, epoch, batch), float32 where every value is a float32 (the
parameters, g, v, s, d and loss of a float32 run), float64 otherwise. The
page widens them back to float64, so it shows the trace's values bit for bit
(about a third of the bytes of float64 text for a float32 run).

The downsampling rule, shown on the page: a run of more than `max_rows` rows
keeps every k-th row (k = ceil(rows / max_rows)), rows 1, 1 + k, 1 + 2k, ...,
and its last row; the values of a kept row are exact. A full trace keeps at
most `max_coordinates` fully traced coordinates (the plane's two first).

Derived quantities are computed here on every row, before any row is dropped:
`cos_d_prev`, the cosine of d with the previous update's d over the traced
coordinates (NaN where the previous update is not in the trace).
"""

from __future__ import annotations

import base64
import io
import math
import os
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from tracer.errors import TracerError
from tracer.trace import FULL_QUANTITIES, SUMMARY_QUANTITIES, Trace, summarized_tensors, trace_lr_columns
from tracer.trace import traced_coordinates as trace_coordinates

MAX_ROWS = 2000  # rows per run: a chart of ~1000 pixels shows no more, and four runs stay under 2 MB
MAX_COORDINATES = 32  # fully traced coordinates per run in the numbers panel
CONTOUR_CELLS = 360  # per axis of the loss image; the plane is drawn ~480 CSS pixels wide
ARROW_FRACTION = 0.15  # an arrow of typical length (90th percentile) spans this fraction of the plane
ARROW_PERCENTILE = 90  # the first updates' gradients dwarf the later ones: scale to a high percentile, not the max
DEFAULT_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                  "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")  # matplotlib's C0..C9


class ExploreError(TracerError):
    """Traces or options the explorer cannot show (the message says what is accepted)."""


@dataclass(frozen=True)
class Sampling:
    """Which rows of a trace the page holds: every `every`-th and the last."""

    rows: np.ndarray
    every: int
    total: int

    @property
    def rule(self) -> str:
        if self.every == 1:
            return f"all {self.total} rows"
        return f"1 row in {self.every} of {self.total} (rows 1, {1 + self.every}, {1 + 2 * self.every}, ... and the last)"


def sample_rows(total: int, max_rows: int = MAX_ROWS) -> Sampling:
    """The rows kept of a trace of `total` rows (the module's rule)."""
    if max_rows < 2:
        raise ExploreError(f"max_rows must be at least 2 (the first and the last row), got {max_rows}")
    every = max(1, math.ceil(total / max_rows))
    rows = np.arange(0, total, every)
    if total and rows[-1] != total - 1:
        rows = np.append(rows, total - 1)
    return Sampling(rows, every, total)


def encode_column(values: np.ndarray) -> dict[str, str]:
    """{"type": "i4" | "f4" | "f8", "data": base64 of the little-endian array}: the narrowest exact type."""
    values = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(values)
    if finite.all() and np.all(values == np.round(values)) and np.all(np.abs(values) < 2**31):
        kind, array = "i4", values.astype("<i4")
    else:
        with np.errstate(over="ignore"):
            narrow = values.astype(np.float32)
        same = (narrow.astype(np.float64) == values) | ~finite
        kind, array = ("f4", narrow.astype("<f4")) if same.all() else ("f8", values.astype("<f8"))
    return {"type": kind, "data": base64.b64encode(array.tobytes()).decode("ascii")}


def cos_previous(trace: Trace, coordinates: Sequence[str]) -> np.ndarray:
    """cos(d, previous update's d) over `coordinates`, per row; NaN where the previous update is absent."""
    columns = [f"{c}.d" for c in coordinates if f"{c}.d" in trace]
    result = np.full(len(trace), np.nan)
    if not columns or len(trace) < 2:
        return result
    d = np.nan_to_num(np.column_stack([trace[c] for c in columns]), nan=0.0)
    norms = np.sqrt(np.einsum("ij,ij->i", d, d))
    dots = np.einsum("ij,ij->i", d[1:], d[:-1])
    consecutive = np.diff(trace["update"]) == 1
    with np.errstate(invalid="ignore", divide="ignore"):
        cosine = dots / (norms[1:] * norms[:-1])
    result[1:] = np.where(consecutive & (norms[1:] > 0) & (norms[:-1] > 0), cosine, np.nan)
    return result


def _label(trace: Trace, index: int) -> str:
    if trace.meta.get("label"):
        return trace.meta["label"]
    return trace.path.name.split(".")[0] if trace.path else f"run {index + 1}"


def _optimizer_text(trace: Trace) -> str:
    optimizer = trace.meta.get("optimizer") or {}
    hyper = optimizer.get("hyperparameters") or {}
    if isinstance(hyper, list):
        hyper = hyper[0] if hyper else {}
    shown = ", ".join(f"{k}={v}" for k, v in hyper.items() if k in ("lr", "momentum", "betas", "alpha", "eps")
                      and v not in (None, 0, False))
    name = optimizer.get("name") or optimizer.get("class") or "optimizer not recorded"
    return f"{name}({shown})" if shown else name


def _run_columns(trace: Trace, plane: tuple[str, str] | None, max_coordinates: int) -> tuple[list[str], list[str]]:
    """(the columns the page holds, the coordinates kept): all but coordinates past `max_coordinates`
    and columns that are empty throughout (v of plain SGD)."""
    coordinates = list(trace.meta.get("coordinates") or trace_coordinates(trace.columns))
    first = [c for c in (plane or ()) if c in coordinates]
    kept = first + [c for c in coordinates if c not in first][: max(0, max_coordinates - len(first))]
    dropped = {f"{c}.{q}" for c in coordinates if c not in kept for q in FULL_QUANTITIES}
    columns = [c for c in trace.columns if c not in dropped and not np.isnan(trace[c]).all()]
    return columns, kept


def run_data(trace: Trace, index: int, color: str, label: str | None, plane: tuple[str, str] | None,
             max_rows: int, max_coordinates: int) -> dict[str, Any]:
    """One run of the page: what it is, how it was sampled, and its columns."""
    columns, coordinates = _run_columns(trace, plane, max_coordinates)
    sampling = sample_rows(len(trace), max_rows)
    encoded = {c: encode_column(trace[c][sampling.rows]) for c in columns}
    all_coordinates = trace.meta.get("coordinates") or trace_coordinates(trace.columns)
    if coordinates:
        encoded["cos_d_prev"] = encode_column(cos_previous(trace, all_coordinates)[sampling.rows])
    meta = trace.meta
    return {
        "label": label or _label(trace, index),
        "color": color,
        "file": trace.path.name if trace.path else None,
        "optimizer": _optimizer_text(trace),
        "problem": (meta.get("problem") or {}).get("name"),
        "status": trace.status,
        "diverged_at": trace.diverged_at,
        "rows": int(len(sampling.rows)),
        "total_rows": int(len(trace)),
        "every": sampling.every,
        "rule": sampling.rule,
        "lr_columns": trace_lr_columns(trace.columns),
        "coordinates": coordinates,
        "coordinates_total": len(all_coordinates),
        "tensors": list(meta.get("summarized") or summarized_tensors(trace.columns)),
        "groups": {p["name"]: p.get("group", 0) for p in meta.get("parameters") or [] if isinstance(p, dict)},
        "final": {k: v for k, v in (trace.final or {}).items() if k in coordinates and math.isfinite(v)},
        "columns": encoded,
    }


# --------------------------------------------------------------- the plane


def _plane(traces: Sequence[Trace], coordinates: Sequence[str] | None) -> Any | None:
    """The render package's plane shared by every trace that has two fully traced coordinates, or None."""
    from tracer.render.contour import plane_of

    drawable = [t for t in traces if len(t.meta.get("coordinates") or trace_coordinates(t.columns)) >= 2]
    if not drawable:
        if coordinates is not None:
            raise ExploreError("coordinates were given but no trace has two fully traced coordinates; "
                               "record with Recorder(granularity='full')")
        return None
    planes = [plane_of(t, coordinates) for t in drawable]
    pairs = sorted({(p.x_name, p.y_name) for p in planes})
    if len(pairs) > 1:
        listed = ", ".join(f"{x},{y}" for x, y in pairs)
        raise ExploreError(f"the traces draw different coordinates by default ({listed}); pick two with coordinates")
    problems = {repr(t.meta.get("problem")) for t in drawable}
    if planes[0].surface is not None and len(problems) > 1:
        # One contour cannot serve two problems: the paths go on a plain plane.
        return type(planes[0])(planes[0].x_name, planes[0].y_name, None, None, planes[0].traced)
    return planes[0]


def _png(rgba: np.ndarray) -> str:
    from matplotlib.image import imsave

    buffer = io.BytesIO()
    # No metadata: the same inputs give the same bytes whatever the matplotlib version.
    imsave(buffer, rgba, format="png", origin="lower", metadata={"Software": None})
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def banded_image(xs: np.ndarray, ys: np.ndarray, loss: np.ndarray, levels: np.ndarray) -> dict[str, Any]:
    """`loss` on cell centres (xs, ys) as a PNG (base64) in the renderer's colour bands between
    `levels`, with the band edges and colours for the colour bar; non-finite cells are transparent."""
    from matplotlib import colormaps
    from matplotlib.colors import BoundaryNorm, to_hex

    from tracer.render.contour import CONTOUR_CMAP

    cmap = colormaps[CONTOUR_CMAP]
    norm = BoundaryNorm(levels, cmap.N)
    rgba = cmap(norm(np.clip(loss, levels[0], levels[-1])))
    rgba[~np.isfinite(loss)] = (0.0, 0.0, 0.0, 0.0)
    half_x, half_y = (xs[1] - xs[0]) / 2, (ys[1] - ys[0]) / 2
    return {
        "png": _png((rgba * 255).round().astype(np.uint8)),
        "extent": [float(xs[0] - half_x), float(xs[-1] + half_x), float(ys[0] - half_y), float(ys[-1] + half_y)],
        "levels": [float(v) for v in levels],
        "colors": [to_hex(cmap(norm(0.5 * (a + b)))) for a, b in zip(levels[:-1], levels[1:])],
        "geometric": bool(levels[0] > 0 and levels[-1] / levels[0] > 10),
    }


def contour_image(problem: dict, xlim: tuple[float, float], ylim: tuple[float, float],
                  cells: int = CONTOUR_CELLS) -> dict[str, Any]:
    """The problem's loss over the plane (the renderer's grid: each cell the mean of its samples)."""
    from tracer.render.contour import contour_levels, loss_grid

    xs, ys, loss = loss_grid(problem, xlim, ylim, cells)
    return banded_image(xs, ys, loss, contour_levels(loss))


def _arrow_scale(lengths: list[np.ndarray], span: float) -> float:
    values = np.concatenate(lengths) if lengths else np.empty(0)
    values = values[np.isfinite(values) & (values > 0)]
    return ARROW_FRACTION * span / float(np.percentile(values, ARROW_PERCENTILE)) if values.size else 0.0


def plane_data(traces: Sequence[Trace], coordinates: Sequence[str] | None = None,
               xlim: tuple[float, float] | None = None, ylim: tuple[float, float] | None = None) -> dict | None:
    """The 2-D view: its coordinates, range, contour (when the problem has a surface), minimum,
    and the arrows' scales: one for gradient units (g, v, sqrt(s)), one for the step -lr*d."""
    from tracer.render.contour import fitted_range

    plane = _plane(traces, coordinates)
    if plane is None:
        return None
    x, y = plane.x_name, plane.y_name
    drawn = [t for t in traces if f"{x}.theta" in t and f"{y}.theta" in t]
    # A diverged run's last points are astronomically far: the range and the arrows' scales follow
    # the runs that did not diverge (where there is one), and the diverged run leaves the plane.
    drawn = [t for t in drawn if t.status != "diverged"] or drawn
    paths = [np.column_stack([t[f"{x}.theta"], t[f"{y}.theta"]]) for t in drawn]
    paths += [np.array([[t.final[x], t.final[y]]]) for t in drawn if t.final and x in t.final and y in t.final]
    fitted = fitted_range(paths + plane.landmarks)
    xlim, ylim = tuple(xlim or fitted[0]), tuple(ylim or fitted[1])
    span = min(xlim[1] - xlim[0], ylim[1] - ylim[0])

    def vector(trace: Trace, quantity: str) -> np.ndarray:
        if f"{x}.{quantity}" not in trace or f"{y}.{quantity}" not in trace:
            return np.empty((0, 2))
        return np.column_stack([trace[f"{x}.{quantity}"], trace[f"{y}.{quantity}"]])

    gradient_units = [np.hypot(*vector(t, q).T) for t in drawn for q in ("g", "v")]
    gradient_units += [np.hypot(*np.sqrt(vector(t, "s")).T) for t in drawn]
    lr_column = {id(t): trace_lr_columns(t.columns)[0] for t in drawn if trace_lr_columns(t.columns)}
    steps = [np.hypot(*(t[lr_column[id(t)]][:, None] * vector(t, "d")).T) for t in drawn if id(t) in lr_column]
    return {
        "x": x,
        "y": y,
        "xlim": [float(v) for v in xlim],
        "ylim": [float(v) for v in ylim],
        "axis_labels": [plane.axis_label(x), plane.axis_label(y)],
        "contour": None if plane.surface is None else contour_image(plane.problem, xlim, ylim),
        # A user's f(x, y) has no known minimum (minimum None); Himmelblau's first of four is drawn.
        "minimum": None if plane.surface is None or plane.surface.minimum is None
        else [float(v) for v in plane.surface.minimum],
        "gradient_scale": _arrow_scale(gradient_units, span),
        "step_scale": _arrow_scale(steps, span),
    }


# ----------------------------------------------------------- the landscape

LANDSCAPE_CELLS = 360  # per axis of the landscape's loss image, interpolated from the surface file's grid


def _interpolated(xs: np.ndarray, ys: np.ndarray, loss: np.ndarray, cells: int,
                  geometric: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(xs, ys, loss) on a `cells` x `cells` grid over the same range, bilinear between the file's
    grid points (in log space when the levels are geometric, as the colour bands are)."""
    values = np.log(loss) if geometric else loss
    fine_x, fine_y = np.linspace(xs[0], xs[-1], cells), np.linspace(ys[0], ys[-1], cells)
    along_x = np.array([np.interp(fine_x, xs, row) for row in values])
    fine = np.array([np.interp(fine_y, ys, column) for column in along_x.T]).T
    return fine_x, fine_y, (np.exp(fine) if geometric else fine)


def _points(array: np.ndarray) -> list[list[float]]:
    return [[float(a), float(b)] for a, b in np.asarray(array, dtype=float).reshape(-1, 2)]


def landscape_data(traces: Sequence[Trace], surface: str | os.PathLike) -> dict[str, Any]:
    """The landscape view: the surface file's loss (written by `tracer landscape`), and the projected
    snapshots of each trace that is one of its runs (matched by trace file name), with the arrows'
    scales: one for -g and -v, one for the step theta_next - theta."""
    from tracer.render.contour import contour_levels
    from tracer.render.landscape import load_surface

    loaded = load_surface(surface)  # RenderError naming the file when it is not a surface file
    by_name = {run.trace: run for run in loaded.runs}
    runs = [(index, by_name[trace.path.name]) for index, trace in enumerate(traces)
            if trace.path is not None and trace.path.name in by_name]
    if not runs:
        names = ", ".join(sorted(by_name))
        raise ExploreError(f"no trace given is one of the runs of surface {loaded.path} ({names}); pass their traces")
    xs, ys = np.asarray(loaded.x, dtype=float), np.asarray(loaded.y, dtype=float)
    levels = contour_levels(loaded.loss)
    geometric = bool(levels[0] > 0 and levels[-1] / levels[0] > 10)
    image = banded_image(*_interpolated(xs, ys, np.asarray(loaded.loss, dtype=float), LANDSCAPE_CELLS, geometric),
                         levels)
    xlim, ylim = (float(xs[0]), float(xs[-1])), (float(ys[0]), float(ys[-1]))
    span = min(xlim[1] - xlim[0], ylim[1] - ylim[0])
    first, second = loaded.explained_variance
    normalized = " (filter-normalised)" if loaded.meta.get("normalization") == "filter" else ""
    return {
        "file": loaded.path.name,
        "parameters": loaded.meta.get("parameters"),
        "xlim": list(xlim),
        "ylim": list(ylim),
        "axis_labels": [f"direction 1: {first:.1%} of the variance{normalized}",
                        f"direction 2: {second:.1%} of the variance"],
        "contour": image,
        "gradient_scale": _arrow_scale([np.hypot(*np.asarray(getattr(run, q), dtype=float).reshape(-1, 2).T)
                                        for _, run in runs for q in ("g", "v")], span),
        "step_scale": _arrow_scale([np.hypot(*np.asarray(run.step, dtype=float).reshape(-1, 2).T) for _, run in runs], span),
        "runs": [{"run": index, "done": [int(d) for d in run.done], "xy": _points(run.xy), "g": _points(run.g),
                  "v": _points(run.v) if np.isfinite(run.v).any() else [], "step": _points(run.step)}
                 for index, run in runs],
    }


def page_data(traces: Sequence[Trace], *, labels: Sequence[str] | None = None, colors: Sequence[str] | None = None,
              title: str | None = None, coordinates: Sequence[str] | None = None,
              xlim: tuple[float, float] | None = None, ylim: tuple[float, float] | None = None,
              max_rows: int = MAX_ROWS, max_coordinates: int = MAX_COORDINATES,
              surface: str | os.PathLike | None = None) -> dict[str, Any]:
    """Everything the page shows, as one JSON-able dict (see the module's docstring); `surface`: a
    surface file of `tracer landscape` whose plane the page also shows."""
    from matplotlib.colors import to_hex

    if not traces:
        raise ExploreError("no trace given; pass one or more trace files")
    for given, what in ((labels, "labels"), (colors, "colors")):
        if given is not None and len(given) != len(traces):
            raise ExploreError(f"{len(given)} {what} given for {len(traces)} traces; give one per trace")
    for trace in traces:
        if len(trace) == 0:
            raise ExploreError(f"trace '{trace.path}' has no rows: nothing to explore")
        if "update" not in trace:
            raise ExploreError(f"trace '{trace.path}' has no 'update' column; the page is indexed by update")
    try:
        colors = [to_hex(c) for c in colors] if colors else [DEFAULT_COLORS[i % 10] for i in range(len(traces))]
    except ValueError as error:
        raise ExploreError(f"bad colour: {error}; accepted: matplotlib colour names or '#rrggbb'") from None
    plane = plane_data(traces, coordinates, xlim, ylim)
    pair = (plane["x"], plane["y"]) if plane else None
    runs = [run_data(t, i, colors[i], labels[i] if labels else None, pair, max_rows, max_coordinates)
            for i, t in enumerate(traces)]
    return {
        "title": title or ", ".join(run["label"] for run in runs),
        "runs": runs,
        "plane": plane,
        "landscape": None if surface is None else landscape_data(traces, surface),
        "max_rows": max_rows,
        "full_quantities": list(FULL_QUANTITIES),
        "summary_quantities": list(SUMMARY_QUANTITIES),
    }
