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

from tracer.errors import RenderError, TracerError

STILL_FORMATS = ("png", "svg", "pdf")
ANIMATED_FORMATS = ("gif", "mp4")

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
    size: tuple[int, int] | None = None  # pixels (width, height)
    dpi: float = 100.0
    title: str | None = None
    labels: tuple[str, ...] | None = None
    colors: tuple[str, ...] | None = None
    against: str = "update"  # x axis of the "lr" figure: update or epoch
    coordinates: tuple[str, str] | None = None  # (x, y) of the path figures; None: the surface's or the first two
    smooth: int | None = None  # dashboard rolling mean over this many updates; 1: off; None: about 1/50 of them
    surface: str | None = None  # paths/internals: a `tracer landscape` surface file to draw the traces on

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
        if values.get("against", "update") not in ("update", "epoch"):
            raise RenderError(f"against must be 'update' or 'epoch', got {values['against']!r}")
        for key in ("labels", "colors"):
            if key in values:
                values[key] = tuple(str(v) for v in values[key])
        if "coordinates" in values:
            values["coordinates"] = _coordinate_pair(values["coordinates"])
        return cls(**values)


def _pair(name: str, value: Any, kind: type) -> tuple:
    try:
        first, second = value
        return kind(first), kind(second)
    except (TypeError, ValueError):
        raise RenderError(f"{name} must be a pair of numbers, got {value!r}") from None


def _coordinate_pair(value: Any) -> tuple[str, str]:
    names = [value] if isinstance(value, str) else list(value) if hasattr(value, "__iter__") else [value]
    if len(names) != 2 or not all(isinstance(n, str) and n for n in names) or names[0] == names[1]:
        raise RenderError(f"coordinates must be two different coordinate names (x, y), got {value!r}")
    return names[0], names[1]


@dataclass(frozen=True)
class FigureKind:
    """One figure kind: what it reads and how it is drawn."""

    name: str
    summary: str
    draw: Callable[..., None]  # draw(traces, options, path, fmt) -> None
    requires: Callable[[Any, RenderOptions], list[str]]  # columns read from one trace (may raise RenderError)
    animated: bool = False  # also writes .gif and .mp4
    max_traces: int | None = None


def trace_name(trace: Any) -> str:
    path = getattr(trace, "path", None)
    return f"'{path}'" if path is not None else repr(trace.meta.get("label"))


def load_traces(traces: Sequence[Any]) -> list[Any]:
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


def check_columns(kind: FigureKind, trace: Any, options: RenderOptions) -> None:
    """RenderError naming the columns `kind` needs and `trace` lacks."""
    missing = [column for column in kind.requires(trace, options) if column not in trace]
    if missing:
        granularity = trace.meta.get("granularity")
        raise RenderError(
            f"figure {kind.name!r} needs column(s) {', '.join(missing)} that trace "
            f"{trace_name(trace)} lacks (granularity {granularity!r})"
        )


def lr_columns(trace: Any) -> list[str]:
    """`lr`, or `lr[0]`, `lr[1]`, ... for several parameter groups."""
    groups = [c for c in trace.columns if c.startswith("lr[")]
    return groups or ["lr"]


def row_mask(trace: Any, updates: tuple[int, int] | None) -> np.ndarray:
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
    kept; `diverged` says the trace left the finite range after the last one.
    """

    xy: np.ndarray
    updates: np.ndarray
    rows: np.ndarray  # trace row of each point's update (the last point repeats the last row)
    diverged: bool


def trace_path(trace: Any, x_name: str, y_name: str, updates: tuple[int, int] | None = None) -> TracePath:
    """The finite path of coordinates (x_name, y_name) over `updates`."""
    xy = np.column_stack([trace[f"{x_name}.theta"], trace[f"{y_name}.theta"]])
    done = trace["update"] - 1  # theta in row u is the point before update u
    rows = np.arange(len(xy))
    final = trace.final or {}
    if x_name in final and y_name in final:
        xy = np.vstack([xy, [[final[x_name], final[y_name]]]])
        done = np.append(done, done[-1] + 1)
        rows = np.append(rows, rows[-1])
    if updates is not None:
        row_mask(trace, updates)  # RenderError when the range holds no update
        keep = (done >= updates[0] - 1) & (done <= updates[1])
        xy, done, rows = xy[keep], done[keep], rows[keep]
    finite = np.isfinite(xy).all(axis=1)
    diverged = trace.status == "diverged" or not finite.all()
    if not finite.all():
        cut = int(np.argmin(finite))  # first non-finite point
        xy, done, rows = xy[:cut], done[:cut], rows[:cut]
    if len(xy) == 0:
        raise RenderError(f"trace {trace_name(trace)} has no finite point to draw")
    return TracePath(xy=xy, updates=done.astype(int), rows=rows, diverged=diverged)


def trace_styles(traces: Sequence[Any], options: RenderOptions) -> tuple[list[str], list[str]]:
    """(labels, colours) per trace: from the options, else the metadata and C0, C1, ..."""
    labels = list(options.labels or [])
    colors = list(options.colors or [])
    for given, what in ((labels, "labels"), (colors, "colors")):
        if given and len(given) != len(traces):
            raise RenderError(f"{len(given)} {what} given for {len(traces)} traces")
    if not labels:
        labels = [t.meta.get("label") or Path(getattr(t, "path", f"trace {i}")).name.split(".")[0]
                  for i, t in enumerate(traces)]
    if not colors:
        colors = [f"C{i % 10}" for i in range(len(traces))]
    try:
        colors = [to_hex(c) for c in colors]
    except ValueError as error:
        raise RenderError(f"bad colour: {error}") from None
    return labels, colors


def new_figure(options: RenderOptions, default_size: tuple[int, int], *, even: bool = False) -> Figure:
    """A Figure on an Agg canvas (no pyplot state), `options.size` pixels large.

    `even` rounds the size to even pixels, as H.264's 4:2:0 video needs."""
    width, height = options.size or default_size
    if even:
        width, height = width + width % 2, height + height % 2
    figure = Figure(figsize=(width / options.dpi, height / options.dpi), dpi=options.dpi)
    FigureCanvasAgg(figure)
    return figure


def save_still(figure: Figure, path: Path, fmt: str) -> None:
    """Save without dates or versions, so the same figure gives the same bytes."""
    with rc_context(_RC):
        figure.savefig(path, format=fmt, dpi=figure.dpi, metadata=_METADATA[fmt], facecolor="white")


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
    "ANIMATED_FORMATS", "STILL_FORMATS", "FigureKind", "RenderOptions", "TracePath", "TracerError",
    "atomic_output", "check_columns", "load_traces", "lr_columns", "new_figure", "output_format",
    "row_mask", "save_still", "trace_name", "trace_path", "trace_styles",
]
