"""Analytic two-parameter test surfaces for path pictures: the classic test functions.

Each formula is written once, so the same function evaluates torch tensors
(the training side, gradients from autograd) and numpy arrays (the contour
side): the first four with arithmetic operators only, the others as
`tracer.problems.expression` text. Importing this module does not import
torch. One "epoch" of these problems is one update (batch 0, no data).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from tracer.errors import TracerError
from tracer.problems.base import Problem
from tracer.problems.expression import parse_expression


def rosenbrock(x, y):
    """(1 - x)^2 + 100 (y - x^2)^2: a curved, flat-bottomed valley; minimum 0 at (1, 1)."""
    return (1 - x) ** 2 + 100 * (y - x**2) ** 2


def beale(x, y):
    """Beale's function: steep walls, flat plateaus; minimum 0 at (3, 0.5)."""
    return (1.5 - x + x * y) ** 2 + (2.25 - x + x * y**2) ** 2 + (2.625 - x + x * y**3) ** 2


def quadratic(x, y):
    """0.05 x^2 + y^2: an ill-conditioned bowl (curvatures 0.1 and 2, condition number 20)."""
    return 0.05 * x**2 + y**2


def saddle(x, y):
    """x^2 - y^2: a saddle at (0, 0), unbounded below along y."""
    return x**2 - y**2


# Written as text for `parse_expression`: evaluated with torch's or numpy's functions.
HIMMELBLAU = "(x**2 + y - 11)**2 + (x + y**2 - 7)**2"
BOOTH = "(x + 2*y - 7)**2 + (2*x + y - 5)**2"
RASTRIGIN = "20 + x**2 - 10*cos(2*pi*x) + y**2 - 10*cos(2*pi*y)"
HIMMELBLAU_MINIMA = ((3.0, 2.0), (-2.805118, 3.131312), (-3.779310, -3.283186), (3.584428, -1.848126))


@dataclass(frozen=True)
class AnalyticSurface:
    """A formula with its usual start, its minima (or point of interest) and plotting range.

    `expression` is the formula as `--function` text (the same numbers as
    `function`); `landmark` names what `minima` are in a figure's legend."""

    name: str
    function: Callable
    expression: str
    start: tuple[float, float]
    minima: tuple[tuple[float, float], ...]
    default_range: tuple[tuple[float, float], tuple[float, float]]
    landmark: str = "minimum"

    @property
    def minimum(self) -> tuple[float, float]:
        """The first of `minima` (the only one, except for Himmelblau's four)."""
        return self.minima[0]


def _surface(name: str, function: Callable | None, expression: str, start: tuple[float, float],
             minima: tuple[tuple[float, float], ...], default_range, landmark: str = "minimum") -> AnalyticSurface:
    return AnalyticSurface(name, function or parse_expression(expression), expression, start, minima,
                           default_range, landmark)


ANALYTIC_SURFACES: dict[str, AnalyticSurface] = {
    s.name: s
    for s in (
        # The first four keep their Python formulas: the committed Rosenbrock traces were made with them.
        _surface("rosenbrock", rosenbrock, "(1 - x)**2 + 100*(y - x**2)**2", (-1.5, 2.0), ((1.0, 1.0),),
                 ((-2.0, 2.0), (-1.0, 3.0))),
        _surface("beale", beale, "(1.5 - x + x*y)**2 + (2.25 - x + x*y**2)**2 + (2.625 - x + x*y**3)**2",
                 (1.0, 1.5), ((3.0, 0.5),), ((-0.5, 4.0), (-1.0, 2.0))),
        _surface("quadratic", quadratic, "0.05*x**2 + y**2", (-8.0, 2.0), ((0.0, 0.0),), ((-10.0, 10.0), (-3.0, 3.0))),
        # The saddle point is the point of interest; start a hair off its
        # stable axis so the escape along y is visible.
        _surface("saddle", saddle, "x**2 - y**2", (-1.5, 0.01), ((0.0, 0.0),), ((-2.0, 2.0), (-2.0, 2.0)),
                 landmark="saddle point"),
        _surface("himmelblau", None, HIMMELBLAU, (0.0, 0.0), HIMMELBLAU_MINIMA, ((-5.0, 5.0), (-5.0, 5.0)),
                 landmark="minima"),
        _surface("booth", None, BOOTH, (-6.0, -4.0), ((1.0, 3.0),), ((-8.0, 6.0), (-6.0, 6.0))),
        # Many local minima 1 apart; the global one at the origin.
        _surface("rastrigin", None, RASTRIGIN, (-2.3, 2.1), ((0.0, 0.0),), ((-3.0, 3.0), (-3.0, 3.0)),
                 landmark="global minimum"),
    )
}


class AnalyticProblem(Problem):
    """Minimise an analytic surface over two scalar parameters named x and y."""

    batch_size = None
    scheduler_every = "update"

    def __init__(self, name: str, x0: float | None = None, y0: float | None = None) -> None:
        self.surface = ANALYTIC_SURFACES[name]
        self.name = name
        start = check_start((self.surface.start[0] if x0 is None else x0,
                             self.surface.start[1] if y0 is None else y0))
        super().__init__({"x0": start[0], "y0": start[1]})
        self.start = start

    def build_model(self):
        import torch

        model = torch.nn.Module()
        model.x = torch.nn.Parameter(torch.tensor(self.start[0], dtype=torch.float32))
        model.y = torch.nn.Parameter(torch.tensor(self.start[1], dtype=torch.float32))
        return model

    def batches(self, epoch: int) -> Iterator[tuple[int, Any]]:
        yield 0, None

    def loss(self, model, batch):
        return self.surface.function(model.x, model.y)


def check_start(start: Any) -> tuple[float, float]:
    """(x0, y0) as two finite floats; TracerError otherwise."""
    try:
        x0, y0 = (float(value) for value in start)
    except (TypeError, ValueError):
        raise TracerError(f"invalid start {start!r}; expected two numbers x0, y0, e.g. -4,1.5") from None
    if not (math.isfinite(x0) and math.isfinite(y0)):
        raise TracerError(f"invalid start ({x0}, {y0}); expected two finite numbers")
    return x0, y0
