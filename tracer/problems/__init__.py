"""The training problems: orbit, linear, analytic 2-D surfaces, and a small MLP.

`get_problem(name, **options)` builds one; importing this package does not
import torch (the torch side is imported when a problem is built).
"""

from __future__ import annotations

from typing import Any

from tracer.errors import TracerError
from tracer.problems.base import Problem

PROBLEM_NAMES: tuple[str, ...] = ("orbit", "linear", "mlp", "rosenbrock", "beale", "quadratic", "saddle")

__all__ = ["PROBLEM_NAMES", "Problem", "get_problem"]


def get_problem(name: str, **options: Any) -> Problem:
    """Build the problem `name` with its options (e.g. `seed`, `batch_size`, `x0`, `y0`)."""
    if name == "orbit":
        from tracer.problems.orbit import OrbitProblem as factory
    elif name == "linear":
        from tracer.problems.linear import LinearProblem as factory
    elif name == "mlp":
        from tracer.problems.mlp import MLPProblem as factory
    elif name in PROBLEM_NAMES:
        from functools import partial

        from tracer.problems.analytic import AnalyticProblem

        factory = partial(AnalyticProblem, name)
    else:
        raise TracerError(f"unknown problem {name!r}; expected one of: {', '.join(PROBLEM_NAMES)}")
    try:
        return factory(**options)
    except TypeError as error:
        raise TracerError(f"bad options for problem {name!r}: {options}: {error}") from None
