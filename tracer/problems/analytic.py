"""Analytic two-parameter test surfaces for path pictures.

Each formula is written once with arithmetic operators only, so the same
function evaluates torch tensors (the training side, gradients from autograd)
and numpy arrays (the contour side). Importing this module does not import
torch. One "epoch" of these problems is one update (batch 0, no data).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator

from tracer.problems.base import Problem


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


@dataclass(frozen=True)
class AnalyticSurface:
    """A formula with its usual start, minimum (or point of interest) and plotting range."""

    name: str
    function: Callable
    start: tuple[float, float]
    minimum: tuple[float, float]
    default_range: tuple[tuple[float, float], tuple[float, float]]


ANALYTIC_SURFACES: dict[str, AnalyticSurface] = {
    s.name: s
    for s in (
        AnalyticSurface("rosenbrock", rosenbrock, (-1.5, 2.0), (1.0, 1.0), ((-2.0, 2.0), (-1.0, 3.0))),
        AnalyticSurface("beale", beale, (1.0, 1.5), (3.0, 0.5), ((-0.5, 4.0), (-1.0, 2.0))),
        AnalyticSurface("quadratic", quadratic, (-8.0, 2.0), (0.0, 0.0), ((-10.0, 10.0), (-3.0, 3.0))),
        # The saddle point is the point of interest; start a hair off its
        # stable axis so the escape along y is visible.
        AnalyticSurface("saddle", saddle, (-1.5, 0.01), (0.0, 0.0), ((-2.0, 2.0), (-2.0, 2.0))),
    )
}


class AnalyticProblem(Problem):
    """Minimise an analytic surface over two scalar parameters named x and y."""

    batch_size = None
    scheduler_every = "update"

    def __init__(self, name: str, x0: float | None = None, y0: float | None = None) -> None:
        self.surface = ANALYTIC_SURFACES[name]
        self.name = name
        start = (
            float(self.surface.start[0] if x0 is None else x0),
            float(self.surface.start[1] if y0 is None else y0),
        )
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
