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

SURFACE_PROBLEMS: tuple[str, ...] = ("orbit", "rosenbrock", "beale", "quadratic", "saddle", "himmelblau", "booth",
                                     "rastrigin", "function")


@dataclass(frozen=True)
class Surface:
    """The loss as a function of two coordinates.

    `loss_grid(xs, ys)` returns shape (len(ys), len(xs)): rows follow y, as
    matplotlib's contourf(xs, ys, grid) expects. `minima` are the known minima
    (or the point of interest, named by `landmark`: "minimum", "minima",
    "saddle point"); empty for a user's function, whose minima are not known.
    `default_range` is None where there is none (a user's function: the range
    is fitted to the paths).
    """

    x_name: str
    y_name: str
    start: tuple[float, float]
    minima: tuple[tuple[float, float], ...]
    default_range: tuple[tuple[float, float], tuple[float, float]] | None
    function: Callable[[np.ndarray, np.ndarray], np.ndarray]
    landmark: str = "minimum"
    formula: str | None = None  # f(x, y) as text, for titles; None for the orbit's data loss and a callable

    @property
    def minimum(self) -> tuple[float, float] | None:
        """The first known minimum, None when none is known."""
        return self.minima[0] if self.minima else None

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

        return Surface("Wa", "Wb", ORBIT_START, ((ORBIT_A, ORBIT_B),), ((0.0, 2.5), (0.0, 2.5)), orbit_loss_grid)
    if name == "function":
        return _function_surface(meta_problem)
    if name in SURFACE_PROBLEMS:
        from tracer.problems.analytic import ANALYTIC_SURFACES

        analytic = ANALYTIC_SURFACES[name]
        start = (
            float(meta_problem.get("x0", analytic.start[0])),
            float(meta_problem.get("y0", analytic.start[1])),
        )
        return Surface("x", "y", start, analytic.minima, analytic.default_range, _analytic_grid(analytic.function),
                       analytic.landmark, analytic.expression)
    raise TracerError(
        f"no 2-D loss surface for problem {name!r}; surfaces exist for: {', '.join(SURFACE_PROBLEMS)}"
    )


def _function_surface(meta_problem: dict[str, Any]) -> Surface:
    """A user's function: its text parsed again (numpy), or the grid sampled from a callable."""
    start = (float(meta_problem.get("x0", 0.0)), float(meta_problem.get("y0", 0.0)))
    if "expression" in meta_problem:
        from tracer.problems.expression import parse_expression

        expression = parse_expression(meta_problem["expression"])
        return Surface("x", "y", start, (), None, _analytic_grid(expression), formula=expression.text)
    if "sampled" in meta_problem:
        from tracer.problems.function import sampled_grid

        sampled = meta_problem["sampled"]
        return Surface("x", "y", start, (), (tuple(sampled["x"]), tuple(sampled["y"])), sampled_grid(sampled))
    raise TracerError("the trace's function has neither an expression nor a sampled grid to draw")

