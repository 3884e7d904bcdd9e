"""The one loss-surface contour every contour figure draws on.

The surface comes from the problem named in a trace's metadata
(`tracer.problems.surfaces.surface_for(meta["problem"])`, numpy only). The loss
grid is computed once per (problem, range, resolution) in a process: an
animation, a still and a benchmark of the same problem share it.
"""

from __future__ import annotations

import functools
import json
from typing import Any, Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import BoundaryNorm
from matplotlib import colormaps

from tracer.errors import RenderError

GRID_POINTS = 250  # per axis, as the article's backgrounds
MARGIN = 0.08  # fraction of the span added on each side when the range is fitted
CONTOUR_LEVELS = 24
CONTOUR_CMAP = "viridis"

Range = tuple[float, float]


def surface_of(trace: Any) -> Any:
    """The loss surface of the problem named in `trace.meta["problem"]`.

    Raises RenderError when the trace names no problem or its problem has no
    2-D surface (e.g. the linear regression, or a user's own run).
    """
    problem = trace.meta.get("problem")
    if not problem:
        raise RenderError(
            f"trace {_name(trace)} names no problem, so there is no loss surface to draw; "
            "contour figures need a trace of a problem with a 2-D surface"
        )
    from tracer.problems.surfaces import surface_for  # numpy only, imported when needed

    try:
        return surface_for(problem)
    except RenderError:
        raise
    except Exception as error:  # the problems module's own error, whatever its type
        raise RenderError(
            f"trace {_name(trace)} has no loss surface for problem {problem.get('name')!r}: {error}"
        ) from None


def _name(trace: Any) -> str:
    path = getattr(trace, "path", None)
    return f"'{path}'" if path is not None else repr(trace.meta.get("label"))


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


@functools.lru_cache(maxsize=16)
def _grid(problem_key: str, xlim: Range, ylim: Range, points: int) -> tuple[np.ndarray, ...]:
    from tracer.problems.surfaces import surface_for

    surface = surface_for(json.loads(problem_key))
    xs = np.linspace(xlim[0], xlim[1], points)
    ys = np.linspace(ylim[0], ylim[1], points)
    loss = np.asarray(surface.loss_grid(xs, ys), dtype=float)
    if loss.shape != (points, points):
        raise RenderError(f"surface loss grid has shape {loss.shape}, expected {(points, points)}")
    for array in (xs, ys, loss):
        array.setflags(write=False)  # shared by every caller: keep it intact
    return xs, ys, loss


def loss_grid(problem: dict, xlim: Range, ylim: Range, points: int = GRID_POINTS):
    """(xs, ys, loss) on a points x points grid; cached per (problem, range)."""
    key = json.dumps(problem, sort_keys=True)
    return _grid(key, (float(xlim[0]), float(xlim[1])), (float(ylim[0]), float(ylim[1])), points)


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
    if low > 0 and high / low > 10:
        return np.geomspace(low, high, count + 1)
    return np.linspace(low, high, count + 1)


def draw_contour(ax: Axes, surface: Any, problem: dict, xlim: Range, ylim: Range, *,
                 cmap: str = CONTOUR_CMAP, colorbar: bool = True, mark_minimum: bool = True) -> None:
    """Filled loss contour with colour bar, axes named after the surface's coordinates,
    and the true minimum marked."""
    xs, ys, loss = loss_grid(problem, xlim, ylim)
    levels = contour_levels(loss)
    cmap = colormaps[cmap]
    norm = BoundaryNorm(levels, cmap.N)
    filled = ax.contourf(xs, ys, np.clip(loss, levels[0], levels[-1]), levels=levels,
                         cmap=cmap, norm=norm)
    if colorbar:
        bar = ax.figure.colorbar(filled, ax=ax, pad=0.02, fraction=0.05)
        bar.set_label("loss")
        if levels[-1] / max(levels[0], 1e-300) > 10 and levels[0] > 0:
            ticks = levels[:: max(1, len(levels) // 6)]
            bar.set_ticks(ticks, labels=[f"{t:.2g}" for t in ticks])
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    ax.set_xlabel(surface.x_name)
    ax.set_ylabel(surface.y_name)
    if mark_minimum:
        ax.plot(*surface.minimum, marker="*", markersize=13, color="white",
                markeredgecolor="black", linestyle="none", label="minimum", zorder=4)
