"""The training problems: orbit, linear, analytic 2-D surfaces, a small MLP, and a user's own f(x, y).

`get_problem(name, **options)` builds one; importing this package does not
import torch (the torch side is imported when a problem is built).
"""

from __future__ import annotations

from typing import Any

from tracer.errors import TracerError
from tracer.problems.base import Problem

ANALYTIC_NAMES: tuple[str, ...] = ("rosenbrock", "beale", "quadratic", "saddle", "himmelblau", "booth", "rastrigin")
PROBLEM_NAMES: tuple[str, ...] = ("orbit", "linear", "mlp", *ANALYTIC_NAMES, "function")

__all__ = ["ANALYTIC_NAMES", "PROBLEM_NAMES", "Problem", "get_problem"]


def get_problem(name: str, **options: Any) -> Problem:
    """Build the problem `name` with its options (e.g. `seed`, `batch_size`, `x0`, `y0`;
    "function": `function` (text or a torch callable), `x0`, `y0`, `bounds`)."""
    if name == "orbit":
        from tracer.problems.orbit import OrbitProblem as factory
    elif name == "linear":
        from tracer.problems.linear import LinearProblem as factory
    elif name == "mlp":
        from tracer.problems.mlp import MLPProblem as factory
    elif name == "function":
        from tracer.problems.function import FunctionProblem as factory
    elif name in ANALYTIC_NAMES:
        from functools import partial

        from tracer.problems.analytic import AnalyticProblem

        factory = partial(AnalyticProblem, name)
    else:
        raise TracerError(f"unknown problem {name!r}; expected one of: {', '.join(PROBLEM_NAMES)}")
    try:
        return factory(**options)
    except TypeError as error:
        raise TracerError(f"bad options for problem {name!r}: {options}: {error}") from None
