"""The one background every path figure draws on: the loss contour, or a plain plane.

A path figure draws two coordinates of a trace (`CoordinatePlane`): by default the two of
the problem's 2-D surface (`tracer.problems.surfaces.surface_for(meta["problem"])`,
numpy only), else the first two fully traced ones; the `coordinates` option
picks any two. When the problem has a surface and the two coordinates are the
surface's, the background is the loss contour; otherwise (a user's own model,
a problem without a surface, other coordinates) it is a plain plane: the loss
over two of many coordinates is not known from the trace. The loss grid is
computed once per (problem, range, resolution) in a process: an animation, a
still and a benchmark of the same problem share it.

The loss is drawn as an image at (at least) the axes' pixel resolution, each
pixel the mean of OVERSAMPLE x OVERSAMPLE loss samples inside it, with the
contour's discrete colour bands. The orbit loss jumps each time Wa passes a
sample's |x + c| (the mask q < 0 keeps one more point), every ~0.0025 in Wa:
a 250-point grid samples those jumps at a coarser, unrelated spacing, and
filled contours then alias them into jagged vertical streaks near
Wa = 0.1-0.15. Per-pixel means show the real shape (a fine sawtooth of the
level lines where few samples are kept, smooth bands elsewhere).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import BoundaryNorm
from matplotlib.ticker import LogFormatterSciNotation
from matplotlib import colormaps

from tracer.errors import RenderError, TracerError
from tracer.render.common import trace_name
from tracer.trace import Trace, traced_coordinates

GRID_POINTS = 250  # per axis at least, as the article's backgrounds; more where the axes have more pixels
OVERSAMPLE = 3  # loss samples per cell and axis, averaged (see the module's docstring)
MARGIN = 0.08  # fraction of the span added on each side when the range is fitted
CONTOUR_LEVELS = 24
LOG_FLOOR = 1e-6  # geometric levels go down to this fraction of the highest loss drawn
CONTOUR_CMAP = "viridis"
PLAIN_FACE = "#f4f4f4"  # light grey, so the white start marker and white arrows still show
LISTED_COORDINATES = 6  # how many traced coordinates an error message names

Range = tuple[float, float]


@dataclass(frozen=True)
class CoordinatePlane:
    """The two coordinates a path figure draws, and the loss surface over them if known.

    `surface` is None when there is no contour to draw: the problem has no
    2-D surface, or the coordinates chosen are not the surface's two.
    `traced` is every fully traced coordinate of the trace, in column order.
    """

    x_name: str
    y_name: str
    surface: Any | None
    problem: dict | None
    traced: tuple[str, ...]

    def axis_label(self, name: str) -> str:
        """The coordinate's name; with more than two traced, which of how many it is,
        so a reader sees two axes of a larger space."""
        if len(self.traced) <= 2:
            return name
        return f"{name}  (coordinate {self.traced.index(name) + 1} of {len(self.traced)})"

    @property
    def landmarks(self) -> list[np.ndarray]:
        """Points the fitted range must hold besides the paths: the surface's known minima."""
        return [] if self.surface is None else [np.array(point, dtype=float) for point in self.surface.minima]


def surface_of(trace: Trace) -> Any | None:
    """The loss surface of the problem named in `trace.meta["problem"]`, or None when the
    trace names no problem or its problem has no 2-D surface (e.g. the linear regression)."""
    problem = trace.meta.get("problem")
    if not problem:
        return None
    from tracer.problems.surfaces import surface_for  # numpy only, imported when needed

    try:
        return surface_for(problem)
    except TracerError:  # a problem without a 2-D surface
        return None
    except Exception as error:  # a surface problem whose options cannot be read
        raise RenderError(
            f"trace {trace_name(trace)} has no loss surface for problem {problem.get('name')!r}: {error}"
        ) from None


def coordinates_of(trace: Trace) -> tuple[str, ...]:
    """The fully traced coordinates: meta["coordinates"], else read from the <c>.theta columns
    (a file written by hand may omit the list)."""
    return tuple(trace.meta.get("coordinates") or traced_coordinates(trace.columns))


def plane_of(trace: Trace, coordinates: Sequence[str] | None = None) -> CoordinatePlane:
    """The plane a path figure draws `trace` on; `coordinates` (x, y) as in meta["coordinates"].

    Default: the surface's two coordinates when the problem has a surface, else the
    first two traced. RenderError when a coordinate is not traced, or fewer than two are.
    """
    if coordinates is not None and len(coordinates) != 2:
        raise RenderError(f"path figures draw two coordinates (x, y); got {len(coordinates)}: {', '.join(coordinates)}")
    traced = coordinates_of(trace)
    if len(traced) < 2:
        raise RenderError(
            f"path figures draw two fully traced coordinates (columns <c>.theta); trace {trace_name(trace)} "
            f"has {len(traced)} (granularity {trace.meta.get('granularity')!r}); record with "
            "Recorder(granularity='full'), or name at least two coordinates in Recorder(full=[...])"
        )
    surface = surface_of(trace)
    if coordinates is None:
        if surface is not None and {surface.x_name, surface.y_name} <= set(traced):
            coordinates = (surface.x_name, surface.y_name)
        else:
            coordinates = traced[:2]
    for name in coordinates:
        if name not in traced:
            listed = ", ".join(traced[:LISTED_COORDINATES]) + (", ..." if len(traced) > LISTED_COORDINATES else "")
            raise RenderError(
                f"coordinate {name!r} is not traced in trace {trace_name(trace)}; traced: {listed} "
                f"({len(traced)} coordinates)"
            )
    x_name, y_name = coordinates
    if surface is not None and (x_name, y_name) != (surface.x_name, surface.y_name):
        surface = None  # the loss over other coordinates is not known: a plain plane
    return CoordinatePlane(x_name, y_name, surface, trace.meta.get("problem"), traced)


def fitted_range(points: Sequence[np.ndarray], margin: float = MARGIN) -> tuple[Range, Range]:
    """A (xlim, ylim) that holds every (x, y) point given, with a margin.

    `points` are arrays of shape (n, 2); non-finite rows are ignored.
    """
    stacked = np.concatenate([np.asarray(p, dtype=float).reshape(-1, 2) for p in points])
    stacked = stacked[np.isfinite(stacked).all(axis=1)]
    if len(stacked) == 0:
        raise RenderError("no finite point to fit the plot range to; pass xlim and ylim")
    low, high = stacked.min(axis=0), stacked.max(axis=0)
    span = np.maximum(high - low, 1e-3 * np.maximum(1.0, np.abs(high)))
    low, high = low - margin * span, high + margin * span
    return (float(low[0]), float(high[0])), (float(low[1]), float(high[1]))


def _cell_samples(low: float, high: float, points: int, oversample: int) -> tuple[np.ndarray, np.ndarray]:
    """(centres, samples): `points` cell centres from low to high, and `oversample` evenly
    spaced samples inside each cell (cell j spans centre_j +- half a cell)."""
    centres = np.linspace(low, high, points)
    step = (high - low) / (points - 1)
    offsets = (np.arange(oversample) - (oversample - 1) / 2) * step / oversample
    return centres, (centres[:, None] + offsets[None, :]).ravel()


@functools.lru_cache(maxsize=16)
def _grid(problem_key: str, xlim: Range, ylim: Range, points: tuple[int, int]) -> tuple[np.ndarray, ...]:
    from tracer.problems.surfaces import surface_for

    surface = surface_for(json.loads(problem_key))
    (x_points, y_points), k = points, OVERSAMPLE
    xs, fine_xs = _cell_samples(*xlim, x_points, k)
    ys, fine_ys = _cell_samples(*ylim, y_points, k)
    fine = np.asarray(surface.loss_grid(fine_xs, fine_ys), dtype=float)
    if fine.shape != (len(fine_ys), len(fine_xs)):
        raise RenderError(f"surface loss grid has shape {fine.shape}, expected {(len(fine_ys), len(fine_xs))}")
    cells = fine.reshape(y_points, k, x_points, k)
    kept = np.isfinite(cells)
    count = kept.sum(axis=(1, 3))
    # The mean of a cell's finite samples; NaN where none is (no orbit sample kept at Wa ~ 0).
    with np.errstate(invalid="ignore"):
        loss = np.where(kept, cells, 0.0).sum(axis=(1, 3)) / count
    for array in (xs, ys, loss):
        array.setflags(write=False)  # shared by every caller: keep it intact
    return xs, ys, loss


def loss_grid(problem: dict, xlim: Range, ylim: Range, points: int | tuple[int, int] = GRID_POINTS):
    """(xs, ys, loss): cell centres and the mean loss over each cell, shape (len(ys), len(xs));
    `points` per axis, or (x points, y points); cached per (problem, range, points)."""
    key = json.dumps(problem, sort_keys=True)
    pair = (points, points) if isinstance(points, int) else (int(points[0]), int(points[1]))
    return _grid(key, (float(xlim[0]), float(xlim[1])), (float(ylim[0]), float(ylim[1])), pair)


def contour_levels(loss: np.ndarray, count: int = CONTOUR_LEVELS) -> np.ndarray:
    """Levels that spread the colours over the grid's values.

    Loss surfaces span decades (a deep narrow valley, steep walls), so the
    levels are geometric when the loss is positive and spans more than a
    decade, linear otherwise.
    """
    finite = loss[np.isfinite(loss)]
    if finite.size == 0:
        raise RenderError("the loss surface is not finite anywhere on the plotted range")
    low, high = float(finite.min()), float(finite.max())
    if high <= low:
        high = low + 1.0
    # A minimum of 0 (x**2 + 10*y**2) still spans decades: the levels start at
    # LOG_FLOOR of the top, and the first band holds everything below.
    bottom = max(low, high * LOG_FLOOR)
    if low >= 0 and high / bottom > 10:
        levels = np.geomspace(bottom, high, count + 1)
        levels[0] = low
        return levels
    return np.linspace(low, high, count + 1)


def geometric(levels: np.ndarray) -> bool:
    """Whether `contour_levels` spaced these levels geometrically (from their second one)."""
    return bool(levels[1] > 0 and levels[-1] / levels[1] > 5 and
                np.allclose(np.diff(np.log(levels[1:])), np.log(levels[2] / levels[1])))


def draw_background(ax: Axes, plane: CoordinatePlane, xlim: Range, ylim: Range, *,
                    cmap: str = CONTOUR_CMAP, colorbar: bool = True, label_on_top: bool = False) -> Any | None:
    """The plane's background over (xlim, ylim), axes named after its coordinates.

    With a surface: the loss in the contour's colour bands (an image, see the
    module's docstring), its colour bar and the true minimum marked; returns the image. Without: a plain grid and no marker (the minimum
    is not known); returns None, "no background".
    """
    if plane.surface is None:
        ax.set_facecolor(PLAIN_FACE)
        ax.grid(True, color="white", lw=1.0)
        ax.set_axisbelow(True)
        _name_axes(ax, plane, xlim, ylim)
        return None
    # At least one cell per pixel of the axes (before a colour bar narrows them).
    extent = ax.get_window_extent()
    points = (max(GRID_POINTS, int(np.ceil(extent.width))), max(GRID_POINTS, int(np.ceil(extent.height))))
    xs, ys, loss = loss_grid(plane.problem, xlim, ylim, points)
    levels = contour_levels(loss)
    cmap = colormaps[cmap]
    norm = BoundaryNorm(levels, cmap.N)
    half_x, half_y = (xs[1] - xs[0]) / 2, (ys[1] - ys[0]) / 2
    filled = ax.imshow(np.clip(loss, levels[0], levels[-1]), origin="lower", aspect="auto", cmap=cmap, norm=norm,
                       interpolation="nearest", extent=(xs[0] - half_x, xs[-1] + half_x, ys[0] - half_y, ys[-1] + half_y))
    if colorbar:
        bar = ax.figure.colorbar(filled, ax=ax, pad=0.02, fraction=0.05)
        label_colorbar(bar, loss_name(plane), levels, on_top=label_on_top)
    _name_axes(ax, plane, xlim, ylim)
    # Only the minima inside the view are drawn and named in the legend (a zoomed view shows none).
    inside = [p for p in plane.surface.minima if xlim[0] <= p[0] <= xlim[1] and ylim[0] <= p[1] <= ylim[1]]
    if inside:
        ax.plot(*np.array(inside, dtype=float).T, marker="*", markersize=13, color="white",
                markeredgecolor="black", linestyle="none", label=plane.surface.landmark, zorder=4)
    return filled


def loss_name(plane: CoordinatePlane) -> str:
    """What the contour's colours are: "f(x, y)" for a formula, "loss" for a data loss."""
    if plane.surface is None:
        return "loss"
    function = plane.surface.formula is not None or (plane.problem or {}).get("name") == "function"
    return "f(x, y)" if function else "loss"


def label_colorbar(bar: Any, label: str, levels: np.ndarray | None = None, *, on_top: bool = False) -> None:
    """The colour bar's label and ticks in one format: on geometric levels, ticks at 1, 2 and 5
    times the powers of ten written as 10^k or 2x10^k (never 1.3e+03 beside 10 and 0.87).

    `on_top` writes the label above the bar, where panels beside it cannot be taken for its owner."""
    if on_top:
        bar.ax.set_title(label, fontsize="medium", loc="left")
    else:
        bar.set_label(label)
    if levels is None or not geometric(levels):
        return
    low, high = levels[0] if levels[0] > 0 else levels[1], levels[-1]
    decades = np.arange(np.floor(np.log10(low)), np.ceil(np.log10(high)) + 1)
    for multiples in ((1.0,), (1.0, 3.0), (1.0, 2.0, 5.0)):
        ticks = np.array([m * 10.0**k for k in decades for m in multiples])
        ticks = ticks[(ticks >= low) & (ticks <= high)]
        if len(ticks) >= 3:
            break
    formatter = LogFormatterSciNotation(labelOnlyBase=False)
    bar.set_ticks(ticks, labels=[formatter(t) for t in ticks])


def _name_axes(ax: Axes, plane: CoordinatePlane, xlim: Range, ylim: Range) -> None:
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    ax.set_xlabel(plane.axis_label(plane.x_name))
    ax.set_ylabel(plane.axis_label(plane.y_name))
