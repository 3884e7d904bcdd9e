"""What every figure kind shares: options, traces, columns, paths, output files.

A figure kind is a record (`FigureKind`): its name, the columns it reads from a
trace (declared, so a trace that lacks them fails with a message naming them
before anything is drawn), whether it animates, and its draw function.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
from matplotlib import rc_context
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_hex
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from tracer.errors import RenderError
from tracer.trace import Trace, trace_lr_columns

STILL_FORMATS = ("png", "svg", "pdf")
ANIMATED_FORMATS = ("gif", "mp4")
LINE_STYLES = ("-", "--", ":", "-.")  # told apart where colours repeat or name something else
YSCALES = ("linear", "log")

# Default pixel widths. Each kind lays itself out at a design size (pixels at
# 100 dpi); the figure is that layout at the dpi that gives this width, so
# text, lines and margins keep their proportions at any size. Stills are at
# the articles' scale (their figures are 1000-1200 px wide); animations
# narrower, as every pixel costs in each of ~300 frames.
STILL_WIDTH = 1100
ANIMATION_WIDTH = 800
DPI_RANGE = (60.0, 300.0)

# Matplotlib writes its version and the time into files unless told not to;
# without these two renders of one trace would differ.
_METADATA = {
    "png": {"Software": None},
    "svg": {"Date": None, "Creator": None},
    "pdf": {"CreationDate": None, "ModDate": None, "Producer": None, "Creator": None},
}
_RC = {"svg.hashsalt": "tracer", "svg.fonttype": "path", "pdf.compression": 6}


@dataclass(frozen=True)
class RenderOptions:
    """The options of `render_figure`; each kind ignores what it does not use."""

    xlim: tuple[float, float] | None = None
    ylim: tuple[float, float] | None = None
    updates: tuple[int, int] | None = None  # 1-based, inclusive
    first_steps: int = 4
    frames: int | None = None  # frame budget; None: DEFAULT_FRAMES
    fps: float = 20.0
    size: tuple[int, int] | None = None  # pixels (width, height); None: the kind's layout STILL_WIDTH (ANIMATION_WIDTH) wide
    dpi: float | None = None  # None: what gives `size` (or the default width) at the kind's layout
    title: str | None = None
    labels: tuple[str, ...] | None = None
    colors: tuple[str, ...] | None = None
    against: str = "update"  # x axis of the "lr" figure: update or epoch
    coordinates: tuple[str, ...] | None = None  # path figures: (x, y); gradients: the coordinates drawn
    smooth: int | None = None  # dashboard rolling mean over this many updates; 1: off; None: about 1/50 of them
    yscale: str | None = None  # step-size and gradients: "linear" or "log"; None: log when the values span decades
    surface: str | None = None  # paths/internals: a `tracer landscape` surface file to draw the traces on
    groups: tuple[str, ...] | None = None  # dashboard: "label=glob|glob" patterns, or ("tensors",); None: automatic

    @classmethod
    def from_mapping(cls, options: dict[str, Any]) -> "RenderOptions":
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(options) - set(names))
        if unknown:
            raise RenderError(f"unknown render option(s) {', '.join(unknown)}; accepted: {', '.join(names)}")
        values = {k: v for k, v in options.items() if v is not None}
        for key in ("xlim", "ylim"):
            if key in values:
                values[key] = _pair(key, values[key], float)
                if not values[key][0] < values[key][1]:
                    raise RenderError(f"{key} must be increasing, got {values[key]}")
        if "updates" in values:
            first, last = _pair("updates", values["updates"], int)
            if not 1 <= first <= last:
                raise RenderError(f"updates must be FIRST,LAST with 1 <= FIRST <= LAST, got {first},{last}")
            values["updates"] = (first, last)
        if "size" in values:
            width, height = _pair("size", values["size"], int)
            if not (16 <= width <= 8000 and 16 <= height <= 8000):
                raise RenderError(f"size must be between 16 and 8000 pixels a side, got {width}x{height}")
            values["size"] = (width, height)
        for key, low in (("first_steps", 1), ("frames", 2), ("fps", 0.1), ("dpi", 10)):
            if key in values and not values[key] >= low:
                raise RenderError(f"{key} must be at least {low}, got {values[key]!r}")
        if "smooth" in values:
            smooth = values["smooth"]
            if isinstance(smooth, bool) or not isinstance(smooth, (int, np.integer)) or smooth < 1:
                raise RenderError(f"smooth must be a whole number of updates >= 1 (1: no smoothing), got {smooth!r}")
            values["smooth"] = int(smooth)
        if values.get("yscale", "linear") not in YSCALES:
            raise RenderError(f"yscale must be one of {', '.join(YSCALES)}, got {values['yscale']!r}")
        if values.get("against", "update") not in ("update", "epoch"):
            raise RenderError(f"against must be 'update' or 'epoch', got {values['against']!r}")
        for key in ("labels", "colors"):
            if key in values:
                values[key] = tuple(str(v) for v in values[key])
        for text in [str(values.get("title") or ""), *values.get("labels", ())]:
            _check_mathtext(text)
        if "coordinates" in values:
            values["coordinates"] = _coordinate_names(values["coordinates"])
        if "groups" in values:
            groups = [values["groups"]] if isinstance(values["groups"], str) else values["groups"]
            if not hasattr(groups, "__iter__") or not groups or not all(isinstance(g, str) and g.strip() for g in groups):
                raise RenderError(f"groups must be patterns \"label=glob|glob\" (or \"tensors\"), got {values['groups']!r}")
            values["groups"] = tuple(groups)
        return cls(**values)


def _check_mathtext(text: str) -> None:
    """RenderError when a title or label given as an option holds mathtext (``$...$``) that cannot be drawn
    (else matplotlib fails mid-draw with a multi-line ValueError)."""
    from matplotlib import cbook
    from matplotlib.mathtext import MathTextParser

    if not cbook.is_math_text(text):
        return
    try:
        MathTextParser("path").parse(text)
    except ValueError as error:
        why = str(error).strip().splitlines()[-1] if str(error).strip() else "invalid"
        raise RenderError(f"{text!r} is not valid mathtext ({why}); write \\$ for a literal dollar sign") from None


def literal(text: str) -> str:
    """A trace's own text (its label) as matplotlib draws it literally: ``$`` escaped, never read as mathtext."""
    return text.replace("$", r"\$")


def _pair(name: str, value: Any, kind: type) -> tuple:
    try:
        first, second = value
        return kind(first), kind(second)
    except (TypeError, ValueError):
        raise RenderError(f"{name} must be a pair of numbers, got {value!r}") from None


def _coordinate_names(value: Any) -> tuple[str, ...]:
    names = [value] if isinstance(value, str) else list(value) if hasattr(value, "__iter__") else [value]
    if not names or not all(isinstance(n, str) and n for n in names) or len(set(names)) != len(names):
        raise RenderError(f"coordinates must be different coordinate names, got {value!r}")
    return tuple(names)


@dataclass(frozen=True)
class FigureKind:
    """One figure kind: what it reads and how it is drawn."""

    name: str
    summary: str
    draw: Callable[..., None]  # draw(traces, options, path, fmt) -> None
    requires: Callable[[Trace, RenderOptions], list[str]]  # columns read from one trace (may raise RenderError)
    animated: bool = False  # also writes .gif and .mp4
    max_traces: int | None = None


def trace_name(trace: Trace) -> str:
    path = getattr(trace, "path", None)
    return f"'{path}'" if path is not None else repr(trace.meta.get("label"))


def load_traces(traces: Sequence[str | Path | Trace]) -> list[Trace]:
    """Trace objects from traces or paths (loaded with `tracer.trace.load_trace`)."""
    if isinstance(traces, (str, os.PathLike)) or not hasattr(traces, "__iter__"):
        traces = [traces]
    loaded = []
    for item in traces:
        if isinstance(item, (str, os.PathLike)):
            from tracer.trace import load_trace

            loaded.append(load_trace(item))
        else:
            loaded.append(item)
    if not loaded:
        raise RenderError("no trace given; pass at least one trace file")
    return loaded


def check_columns(kind: FigureKind, trace: Trace, options: RenderOptions) -> None:
    """RenderError naming the columns `kind` needs and `trace` lacks."""
    missing = [column for column in kind.requires(trace, options) if column not in trace]
    if missing:
        granularity = trace.meta.get("granularity")
        raise RenderError(
            f"figure {kind.name!r} needs column(s) {', '.join(missing)} that trace "
            f"{trace_name(trace)} lacks (granularity {granularity!r})"
        )


def figure_lr_columns(trace: Trace) -> list[str]:
    """The lr columns a figure reads: the trace's (`lr`, or `lr[0]`, `lr[1]`, ...), else `lr` (which check_columns names as missing)."""
    return trace_lr_columns(trace.columns) or ["lr"]


def row_mask(trace: Trace, updates: tuple[int, int] | None) -> np.ndarray:
    """Rows whose update index lies in `updates` (all rows when None)."""
    update = trace["update"]
    if updates is None:
        return np.ones(len(update), dtype=bool)
    mask = (update >= updates[0]) & (update <= updates[1])
    if not mask.any():
        raise RenderError(
            f"trace {trace_name(trace)} has no update in {updates[0]}..{updates[1]} "
            f"(it has {int(update[0])}..{int(update[-1])})"
        )
    return mask


@dataclass(frozen=True)
class TracePath:
    """Where one trace went on a 2-D surface.

    `xy[k]` is the point after k updates of the plotted range (xy[0] is its
    start; the final point after the last update comes from `trace.final`).
    `updates[k]` is the number of updates done at xy[k]. Only finite points are
    kept; `diverged_at` is the update at which the run diverged (the trailer's,
    else the update that produced the first non-finite point), None if it did not.
    """

    xy: np.ndarray
    updates: np.ndarray
    rows: np.ndarray  # trace row of each point's update (the last point repeats the last row)
    diverged_at: int | None

    @property
    def diverged(self) -> bool:
        return self.diverged_at is not None


def label_update_axis(ax: Any, label: str = "update") -> None:
    """Label an x axis of update (or epoch) numbers, ticked at whole numbers only: there is no update 2.5.

    The ticks are matplotlib's automatic ones (the same steps 1, 2, 2.5, 5, 10) where they fall on whole
    numbers, as they do over a long run.
    """
    ax.set_xlabel(label)
    ax.xaxis.set_major_locator(MaxNLocator(nbins="auto", steps=[1, 2, 2.5, 5, 10], integer=True))


def diverged_label(update: int | None) -> str:
    """The one wording of a divergence in every figure, as the trailer and `tracer info` say it."""
    return f"diverged at update {update}"


def divergence_marker(ax: Any, color: str, diverged_at: int | None, point: Sequence[float] | None = None) -> Any:
    """The X on a diverged run's last finite point, labelled "diverged at update N" (unlabelled
    when `diverged_at` is None). Empty until `set_data` unless `point` is given: an animation
    shows it when its clock reaches the update."""
    (marker,) = ax.plot([], [], marker="X", markersize=11, color=color, markeredgecolor="black",
                        linestyle="none", zorder=6)
    if diverged_at is not None:
        marker.set_label(diverged_label(diverged_at))
    if point is not None:
        marker.set_data([point[0]], [point[1]])
    return marker


def trace_path(trace: Trace, x_name: str, y_name: str, updates: tuple[int, int] | None = None, *,
               with_final: bool = True) -> TracePath:
    """The finite path of coordinates (x_name, y_name) over `updates`; `with_final` False leaves
    out the point after the last update (it has no row of its own: no g, v, d)."""
    xy = np.column_stack([trace[f"{x_name}.theta"], trace[f"{y_name}.theta"]])
    done = trace["update"] - 1  # theta in row u is the point before update u
    rows = np.arange(len(xy))
    final = trace.final or {}
    if with_final and x_name in final and y_name in final:
        xy = np.vstack([xy, [[final[x_name], final[y_name]]]])
        done = np.append(done, done[-1] + 1)
        rows = np.append(rows, rows[-1])
    if updates is not None:
        row_mask(trace, updates)  # RenderError when the range holds no update
        keep = (done >= updates[0] - 1) & (done <= updates[1])
        xy, done, rows = xy[keep], done[keep], rows[keep]
    finite = np.isfinite(xy).all(axis=1)
    diverged_at = trace.diverged_at if trace.status == "diverged" else None
    if not finite.all():
        cut = int(np.argmin(finite))  # first non-finite point: update done[cut] produced it
        if diverged_at is None:
            diverged_at = int(done[cut])
        xy, done, rows = xy[:cut], done[:cut], rows[:cut]
    if trace.status == "diverged" and diverged_at is None:  # a trailer without the update
        diverged_at = int(done[-1]) + 1 if len(done) else None
    if len(xy) == 0:
        raise RenderError(f"trace {trace_name(trace)} has no finite point to draw")
    return TracePath(xy=xy, updates=done.astype(int), rows=rows, diverged_at=diverged_at)


def trace_styles(traces: Sequence[Trace], options: RenderOptions) -> tuple[list[str], list[str]]:
    """(labels, colours) per trace: from the options, else the metadata and C0, C1, ..."""
    labels = list(options.labels or [])
    colors = list(options.colors or [])
    for given, what in ((labels, "labels"), (colors, "colors")):
        if given and len(given) != len(traces):
            raise RenderError(f"{len(given)} {what} given for {len(traces)} traces")
    if not labels:
        labels = [literal(t.meta.get("label") or Path(getattr(t, "path", f"trace {i}")).name.split(".")[0])
                  for i, t in enumerate(traces)]
    if not colors:
        colors = [f"C{i % 10}" for i in range(len(traces))]
    try:
        colors = [to_hex(c) for c in colors]
    except ValueError as error:
        raise RenderError(f"bad colour: {error}") from None
    return labels, colors


def new_figure(options: RenderOptions, design_size: tuple[int, int], *, animated: bool = False) -> Figure:
    """A Figure on an Agg canvas (no pyplot state) laid out as `design_size` (pixels at 100 dpi).

    Its pixel size is `options.size`, else the design scaled to STILL_WIDTH (or
    ANIMATION_WIDTH) wide; its dpi is `options.dpi`, else the one that keeps the
    design's proportions at that size. An animation's size is rounded to even
    pixels, as H.264's 4:2:0 video needs."""
    design_width, design_height = design_size
    if options.size is not None:
        width, height = options.size
        fitted = min(max(100.0 * width / design_width, DPI_RANGE[0]), DPI_RANGE[1])
        dpi = float(options.dpi or fitted)
    else:
        target = ANIMATION_WIDTH if animated else STILL_WIDTH
        dpi = float(options.dpi or max(100.0, 100.0 * target / design_width))  # a large design is not shrunk
        width, height = round(design_width * dpi / 100.0), round(design_height * dpi / 100.0)
    if animated:
        width, height = width + width % 2, height + height % 2
    figure = Figure(figsize=(width / dpi, height / dpi), dpi=dpi)
    FigureCanvasAgg(figure)
    return figure


CORNERS = ("upper right", "upper left", "lower left", "lower right")
_CORNER_ANCHORS = {  # axes fraction of the corner, and the alignment that keeps a box inside
    "upper right": (0.985, 0.985, "right", "top"), "upper left": (0.015, 0.985, "left", "top"),
    "lower left": (0.015, 0.015, "left", "bottom"), "lower right": (0.985, 0.015, "right", "bottom"),
}
_MARKED_WEIGHT = 10_000  # one hidden marker (start, minimum, an end) costs more than any run of path


def place_in_clear_corners(ax: Any, boxes: Sequence[Any], marked: Sequence[np.ndarray],
                           traced: Sequence[np.ndarray] = ()) -> list[str]:
    """Move each box (a Legend, or a Text in axes coordinates) to its own corner of `ax`, the
    corner that hides the fewest points: a marked point (start, minimum, end, divergence)
    outweighs any number of path points. Boxes are placed in order, each in a corner not yet
    taken; returns the corners chosen. The axes limits must be final."""
    renderer = ax.figure.canvas.get_renderer()
    to_axes = ax.transAxes.inverted()

    def in_axes(points: Sequence[np.ndarray]) -> np.ndarray:
        arrays = [np.asarray(p, dtype=float).reshape(-1, 2) for p in points]
        stacked = np.concatenate(arrays) if arrays else np.empty((0, 2))
        stacked = stacked[np.isfinite(stacked).all(axis=1)]
        return to_axes.transform(ax.transData.transform(stacked)) if len(stacked) else stacked

    marked_xy, traced_xy = in_axes(marked), in_axes(traced)
    free = list(CORNERS)
    chosen = []
    for box in boxes:
        extent = box.get_window_extent(renderer).transformed(to_axes)
        width, height = extent.width + 0.03, extent.height + 0.03  # the box, its margin and a marker's radius

        def cost(corner: str) -> int:
            x, y, horizontal, vertical = _CORNER_ANCHORS[corner]
            left = 1.0 - width if horizontal == "right" else 0.0
            bottom = 1.0 - height if vertical == "top" else 0.0

            def inside(points: np.ndarray) -> int:
                if not len(points):
                    return 0
                return int(((points[:, 0] >= left) & (points[:, 0] <= left + width)
                            & (points[:, 1] >= bottom) & (points[:, 1] <= bottom + height)).sum())

            return _MARKED_WEIGHT * inside(marked_xy) + inside(traced_xy)

        corner = min(free, key=cost)  # ties: the first in CORNERS order
        free.remove(corner)
        chosen.append(corner)
        x, y, horizontal, vertical = _CORNER_ANCHORS[corner]
        if hasattr(box, "set_loc"):  # a Legend
            box.set_loc(corner)
        else:
            box.set_position((x, y))
            box.set_horizontalalignment(horizontal)
            box.set_verticalalignment(vertical)
    return chosen


def save_still(figure: Figure, path: Path, fmt: str) -> None:
    """Save without dates or versions, so the same figure gives the same bytes."""
    with rc_context(_RC):
        figure.savefig(path, format=fmt, dpi=figure.dpi, metadata=_METADATA[fmt], facecolor="white")


def is_animated(fmt: str) -> bool:
    return fmt in ANIMATED_FORMATS


def output_format(out: Path, kind: FigureKind) -> str:
    fmt = out.suffix.lower().lstrip(".")
    accepted = STILL_FORMATS + (ANIMATED_FORMATS if kind.animated else ())
    if fmt not in accepted:
        raise RenderError(
            f"figure {kind.name!r} cannot be written as {out.name!r}; accepted extensions: "
            + ", ".join("." + f for f in accepted)
        )
    return fmt


@contextlib.contextmanager
def atomic_output(out: Path) -> Iterator[Path]:
    """A temporary path beside `out` that replaces it only when drawing succeeded.

    On any error the temporary file is removed: nothing is written."""
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise RenderError(f"cannot write {str(out)!r}: directory {str(parent)!r} does not exist")
    if out.is_dir():
        raise RenderError(f"cannot write {str(out)!r}: it is a directory")
    try:
        handle, name = tempfile.mkstemp(dir=parent, prefix=f".{out.name}.", suffix=out.suffix)
    except OSError as error:
        raise RenderError(f"cannot write {str(out)!r}: {error.strerror}") from None
    os.close(handle)
    temporary = Path(name)
    try:
        yield temporary
        os.chmod(temporary, 0o644)  # mkstemp makes it private; a figure is for reading
        os.replace(temporary, out)
    except OSError as error:
        raise RenderError(f"cannot write {str(out)!r}: {error.strerror or error}") from None
    finally:
        if temporary.exists():
            temporary.unlink()


__all__ = [
    "ANIMATED_FORMATS", "CORNERS", "LINE_STYLES", "STILL_FORMATS", "FigureKind", "RenderOptions", "TracePath",
    "atomic_output", "check_columns", "divergence_marker", "diverged_label", "is_animated", "load_traces", "figure_lr_columns", "new_figure",
    "output_format", "place_in_clear_corners",
    "row_mask", "save_still", "trace_name", "trace_path", "trace_styles",
]
