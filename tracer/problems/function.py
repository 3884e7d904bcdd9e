"""A teacher's own loss f(x, y): as text (`--function "x**2 + 10*y**2"`) or a torch callable.

Both train two float32 scalar parameters x and y from a start (x0, y0), one
update per "epoch" as the other analytic surfaces. What the renderer needs to
draw the function without torch goes into the trace's metadata `problem`:

- text: `{"name": "function", "expression": "x**2 + 10*y**2", "x0": -4.0, "y0": 1.5}`;
  the renderer parses the same text and evaluates it with numpy;
- a callable: `{"name": "function", "callable": "module.qualname", "x0": ..., "y0": ...,
  "sampled": {"x": [low, high], "y": [low, high], "points": n, "loss": [[...], ...]}}`,
  the function evaluated (float64) on an n x n grid over `bounds`, or by
  default, after the run, over the box the path went through with margins
  (the runner then rewrites the trace's first line); a contour
  is drawn inside that box only, by bilinear interpolation.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from tracer.errors import TracerError
from tracer.problems.analytic import AnalyticProblem, check_start
from tracer.problems.expression import Expression, parse_expression

SAMPLED_POINTS = 121  # per axis: 14,641 values, about 150 kB of metadata
SAMPLED_MARGIN = 0.25  # a callable's box after the run: the path's, a quarter of its span wider on each side
MIN_SAMPLED_HALF = 0.5  # and at least 1 wide


class FunctionProblem(AnalyticProblem):
    """Minimise f(x, y) given as `parse_expression` text or a callable on torch tensors."""

    name = "function"

    def __init__(self, function: str | Callable, x0: float | None = None, y0: float | None = None,
                 bounds: Any = None) -> None:
        if x0 is None or y0 is None:
            raise TracerError("a function needs its start point: --start=X0,Y0 (start=(x0, y0)), e.g. --start=-4,1.5")
        start = check_start((x0, y0))
        if isinstance(function, str):
            self.function: Callable = parse_expression(function)
            options: dict[str, Any] = {"expression": self.function.text}
            value = float(self.function(np.float64(start[0]), np.float64(start[1])))
        elif callable(function):
            self.function = function
            options = {"callable": _qualified_name(function)}
            value = _value_at(function, start)
        else:
            raise TracerError(f"a function is text such as 'x**2 + 10*y**2' or a callable f(x, y), "
                              f"got {type(function).__name__}")
        if not math.isfinite(value):
            raise TracerError(f"f is not finite at the start ({start[0]:g}, {start[1]:g}): {value}; "
                              "choose another start")
        if bounds is not None and isinstance(function, str):
            raise TracerError("bounds apply to a callable's sampled contour; a text function is drawn anywhere")
        if not isinstance(function, str) and bounds is not None:
            options["sampled"] = sample_callable(function, _bounds(bounds, start))
        self.problem_options = options
        self.surface = None
        self.start = start
        super(AnalyticProblem, self).__init__({**options, "x0": start[0], "y0": start[1]})

    def sampled_meta(self, xs: np.ndarray, ys: np.ndarray) -> dict[str, Any] | None:
        """For a callable sampled after the run: the metadata's `problem` entry with the function
        sampled over the box the path `xs`, `ys` went through (with margins); None when there is
        nothing to add (text, or bounds given)."""
        if isinstance(self.function, Expression) or "sampled" in self.options:
            return None
        self.options["sampled"] = sample_callable(self.function, path_bounds(xs, ys, self.start))
        return self.meta

    def loss(self, model, batch):
        value = self.function(model.x, model.y)
        if isinstance(self.function, Expression):
            # A formula in x alone still trains y (its gradient is 0) and vice versa.
            for name in {"x", "y"} - self.function.variables:
                value = value + 0.0 * getattr(model, name)
        else:
            _check_scalar(value)
        return value


def _qualified_name(function: Callable) -> str:
    module = getattr(function, "__module__", None) or "?"
    return f"{module}.{getattr(function, '__qualname__', type(function).__name__)}"


def _value_at(function: Callable, start: tuple[float, float]) -> float:
    import torch

    try:
        value = function(torch.tensor(start[0], dtype=torch.float32), torch.tensor(start[1], dtype=torch.float32))
    except Exception as error:
        raise TracerError(f"f(x, y) failed at the start ({start[0]:g}, {start[1]:g}): "
                          f"{type(error).__name__}: {error}") from None
    _check_scalar(value)
    return float(value)


def _check_scalar(value: Any) -> None:
    if getattr(value, "shape", None) != ():
        raise TracerError(f"f(x, y) must return one number (a 0-dim tensor); got {type(value).__name__} "
                          f"of shape {tuple(getattr(value, 'shape', ()))}")


def path_bounds(xs: np.ndarray, ys: np.ndarray, start: tuple[float, float]):
    """The box of the path's finite points and the start, SAMPLED_MARGIN of its span wider on each
    side (at least MIN_SAMPLED_HALF around its centre): what a paths figure fits its view to."""
    points = np.column_stack([np.append(np.asarray(xs, dtype=float), start[0]),
                              np.append(np.asarray(ys, dtype=float), start[1])])
    points = points[np.isfinite(points).all(axis=1)]
    low, high = points.min(axis=0), points.max(axis=0)
    centre, half = (low + high) / 2, np.maximum((high - low) / 2 * (1 + 2 * SAMPLED_MARGIN), MIN_SAMPLED_HALF)
    return ((float(centre[0] - half[0]), float(centre[0] + half[0])),
            (float(centre[1] - half[1]), float(centre[1] + half[1])))


def _bounds(bounds: Any, start: tuple[float, float]) -> tuple[tuple[float, float], tuple[float, float]]:
    try:
        (x_low, x_high), (y_low, y_high) = ((float(a), float(b)) for a, b in bounds)
    except (TypeError, ValueError):
        raise TracerError(f"invalid bounds {bounds!r}; expected ((x_low, x_high), (y_low, y_high))") from None
    if not (x_low < x_high and y_low < y_high and all(map(math.isfinite, (x_low, x_high, y_low, y_high)))):
        raise TracerError(f"invalid bounds {bounds!r}; each pair must be finite and increasing")
    return (x_low, x_high), (y_low, y_high)


def sample_callable(function: Callable, bounds, points: int = SAMPLED_POINTS) -> dict[str, Any]:
    """f on a points x points grid over `bounds`, in float64, as the metadata's "sampled" entry.

    The grid is evaluated in one call where f broadcasts (torch operations do),
    else point by point. Values keep 7 significant digits (float32's)."""
    import torch

    (x_low, x_high), (y_low, y_high) = bounds
    xs = torch.linspace(x_low, x_high, points, dtype=torch.float64)
    ys = torch.linspace(y_low, y_high, points, dtype=torch.float64)
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    with torch.no_grad():
        try:
            loss = torch.as_tensor(function(grid_x, grid_y), dtype=torch.float64)
            if loss.shape != grid_x.shape:
                raise ValueError("not elementwise")
        except Exception:
            try:
                loss = torch.tensor([[float(function(x, y)) for x, y in zip(row_x, row_y)]
                                     for row_x, row_y in zip(grid_x, grid_y)], dtype=torch.float64)
            except Exception as error:
                raise TracerError(f"cannot evaluate f(x, y) over {bounds} for its contour: "
                                  f"{type(error).__name__}: {error}") from None
    values = [[float(f"{v:.7g}") if math.isfinite(v) else None for v in row] for row in loss.tolist()]
    return {"x": [x_low, x_high], "y": [y_low, y_high], "points": points, "loss": values}


def sampled_grid(sampled: dict[str, Any]) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """loss_grid(xs, ys) of a "sampled" entry: bilinear interpolation, NaN outside the box. numpy only."""
    loss = np.array([[np.nan if v is None else v for v in row] for row in sampled["loss"]], dtype=np.float64)
    (x_low, x_high), (y_low, y_high) = sampled["x"], sampled["y"]
    count = int(sampled["points"])
    if loss.shape != (count, count):
        raise TracerError(f"sampled function grid has shape {loss.shape}, expected {(count, count)}")

    def grid(xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        fx = (np.asarray(xs, dtype=np.float64) - x_low) / (x_high - x_low) * (count - 1)
        fy = (np.asarray(ys, dtype=np.float64) - y_low) / (y_high - y_low) * (count - 1)
        inside_x, inside_y = (fx >= 0) & (fx <= count - 1), (fy >= 0) & (fy <= count - 1)
        ix = np.clip(np.floor(fx).astype(int), 0, count - 2)
        iy = np.clip(np.floor(fy).astype(int), 0, count - 2)
        tx, ty = (fx - ix)[None, :], (fy - iy)[:, None]
        corner = lambda dy, dx: loss[(iy + dy)[:, None], (ix + dx)[None, :]]  # noqa: E731
        values = ((1 - ty) * ((1 - tx) * corner(0, 0) + tx * corner(0, 1))
                  + ty * ((1 - tx) * corner(1, 0) + tx * corner(1, 1)))
        return np.where(inside_y[:, None] & inside_x[None, :], values, np.nan)

    return grid
