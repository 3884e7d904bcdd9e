"""Loss surfaces over two coordinates, for contour backgrounds; numpy only, never torch.

`surface_for(trace.meta["problem"])` gives the surface a trace ran on: the
coordinate names, the start, the minimum (or the point of interest), a
default plotting range and the loss over a grid.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from tracer.errors import TracerError

SURFACE_PROBLEMS: tuple[str, ...] = ("orbit", "rosenbrock", "beale", "quadratic", "saddle")


@dataclass(frozen=True)
class Surface:
    """The loss as a function of two coordinates.

    `loss_grid(xs, ys)` returns shape (len(ys), len(xs)): rows follow y, as
    matplotlib's contourf(xs, ys, grid) expects.
    """

    x_name: str
    y_name: str
    start: tuple[float, float]
    minimum: tuple[float, float]
    default_range: tuple[tuple[float, float], tuple[float, float]]
    function: Callable[[np.ndarray, np.ndarray], np.ndarray]

    def loss_grid(self, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        return self.function(np.asarray(xs, dtype=np.float64), np.asarray(ys, dtype=np.float64))


def _analytic_grid(function: Callable) -> Callable:
    def grid(xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        x, y = np.meshgrid(xs, ys)
        return function(x, y)

    return grid


def surface_for(meta_problem: dict[str, Any] | None) -> Surface:
    """The surface of a trace's problem (its metadata `problem` entry).

    Raises TracerError for problems without a two-coordinate surface (linear,
    a user's own run).
    """
    name = (meta_problem or {}).get("name")
    if name == "orbit":
        from tracer.problems.orbit import ORBIT_A, ORBIT_B, ORBIT_START, orbit_loss_grid

        return Surface("Wa", "Wb", ORBIT_START, (ORBIT_A, ORBIT_B), ((0.0, 2.5), (0.0, 2.5)), orbit_loss_grid)
    if name in SURFACE_PROBLEMS:
        from tracer.problems.analytic import ANALYTIC_SURFACES

        analytic = ANALYTIC_SURFACES[name]
        start = (
            float(meta_problem.get("x0", analytic.start[0])),
            float(meta_problem.get("y0", analytic.start[1])),
        )
        return Surface("x", "y", start, analytic.minimum, analytic.default_range, _analytic_grid(analytic.function))
    raise TracerError(
        f"no 2-D loss surface for problem {name!r}; surfaces exist for: {', '.join(SURFACE_PROBLEMS)}"
    )
