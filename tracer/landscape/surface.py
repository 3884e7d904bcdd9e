"""The loss over a run's plane, and the surface file the renderer reads (the torch side).

    from tracer.landscape import landscape
    landscape(["logs/adam.trace.csv", "logs/momentum.trace.csv"], model,
              lambda m: loss_fn(m(x), y), "logs/mlp.surface.npz", grid=(41, 41))

The traces must have been recorded with snapshots (``Recorder(...,
snapshots=SnapshotPolicy(...))``). The loss at grid point (a, b) is
``loss_fn(model)`` with the model's parameters set to ``origin + a e1 + b
e2`` (``tracer.landscape.plane``), in eval mode and without gradients; the
model's parameters are restored afterwards.

The surface file (numpy .npz, read without torch by
``tracer.render.landscape``) holds ``meta`` (JSON: format, version, the
plane's explained variance and normalisation, the runs), ``x`` and ``y``
(the grid's coordinates), ``loss`` (shape (len(y), len(x))), ``directions``
(2, parameters) and per run i: ``run{i}_done`` (updates done at each
point), ``run{i}_xy`` (the snapshots' points and the final point, relative
to the origin), and at each snapshot update ``run{i}_g``, ``run{i}_v``
(NaN when the optimizer keeps no v), ``run{i}_d`` and ``run{i}_step``
(theta_next - theta), each projected on the plane.
"""

from __future__ import annotations

import json
import os
import pathlib
import tempfile
from typing import Any, Callable, Sequence

import numpy as np
import torch

from tracer.errors import TracerError
from tracer.landscape.plane import Plane, Snapshots, find_plane, load_snapshots
from tracer.progress import Progress

SURFACE_FORMAT = "tracer-surface"
SURFACE_VERSION = 1
DEFAULT_GRID = (41, 41)
DEFAULT_MARGIN = 0.25  # share of the paths' span added on each side of the fitted range
MAX_SHARE_OF_MEMORY = 0.5  # a grid may take at most this share of the memory available now

LossClosure = Callable[[torch.nn.Module], torch.Tensor]


def snapshots_of_trace(trace_path: str | os.PathLike) -> tuple[Any, Snapshots]:
    """(trace, its snapshots); TracerError when the trace was recorded without snapshots."""
    from tracer.trace import load_trace

    trace = load_trace(trace_path)
    entry = trace.meta.get("snapshots")
    if not isinstance(entry, dict) or not isinstance(entry.get("file"), str):
        raise TracerError(
            f"trace {trace.path} has no parameter snapshots; record it with "
            f"Recorder(..., snapshots=SnapshotPolicy(every=10))"
        )
    return trace, load_snapshots(pathlib.Path(trace.path).parent / entry["file"])


def model_parameters(model: torch.nn.Module, plane: Plane) -> list[torch.Tensor]:
    """The model's parameters in the snapshots' order; TracerError when names or shapes differ."""
    named = dict(model.named_parameters())
    found = [(name, tuple(tensor.shape)) for name, tensor in named.items()]
    if sorted(found) != sorted(plane.parameters):
        expected = ", ".join(f"{n} {list(s)}" for n, s in plane.parameters[:4])
        got = ", ".join(f"{n} {list(s)}" for n, s in found[:4])
        raise TracerError(
            f"the model's parameters do not match the snapshots': the snapshots have {len(plane.parameters)} "
            f"tensors ({expected}{', ...' if len(plane.parameters) > 4 else ''}), the model {len(found)} "
            f"({got}{', ...' if len(found) > 4 else ''})"
        )
    return [named[name] for name, _ in plane.parameters]


def check_grid(points: tuple[int, int]) -> None:
    """TracerError when the grid has fewer than 2 points a side or would not fit in memory."""
    nx, ny = points
    if min(nx, ny) < 2:
        raise TracerError(f"invalid grid {nx}x{ny}; a surface needs at least 2 points a side")
    needed = 3 * 8 * nx * ny  # the loss (float64) and the two coordinate meshes the renderer builds
    available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    if needed > MAX_SHARE_OF_MEMORY * available:
        raise TracerError(
            f"grid {nx}x{ny} is too large for memory: it needs {needed / 2**30:.3g} GiB, "
            f"{MAX_SHARE_OF_MEMORY:.0%} of the {available / 2**30:.3g} GiB available is accepted; use fewer points"
        )


def grid_axes(paths: Sequence[np.ndarray], points: tuple[int, int], xlim: tuple[float, float] | None = None,
              ylim: tuple[float, float] | None = None, margin: float = DEFAULT_MARGIN) -> tuple[np.ndarray, np.ndarray]:
    """The grid's x and y coordinates: the ranges given, else fitted to the paths (and the origin) with a margin."""
    stacked = np.vstack([np.zeros((1, 2))] + [p[np.isfinite(p).all(axis=1)] for p in paths])
    low, high = stacked.min(axis=0), stacked.max(axis=0)
    span = np.maximum(high - low, 1e-12)
    fitted = [(low[i] - margin * span[i], high[i] + margin * span[i]) for i in range(2)]
    ranges = [given if given is not None else fitted[i] for i, given in enumerate((xlim, ylim))]
    for name, (a, b) in zip(("x", "y"), ranges):
        if not a < b:
            raise TracerError(f"invalid {name} range {a},{b}; expected LOW,HIGH with LOW < HIGH")
    return (np.linspace(*ranges[0], points[0]), np.linspace(*ranges[1], points[1]))


@torch.no_grad()
def evaluate_surface(model: torch.nn.Module, loss_fn: LossClosure, plane: Plane, xs: np.ndarray, ys: np.ndarray,
                     *, progress: bool = True) -> np.ndarray:
    """The loss at every grid point (shape (len(ys), len(xs))), the model's parameters set to plane.point(x, y)."""
    params = model_parameters(model, plane)
    check_grid((len(xs), len(ys)))
    saved = [p.detach().clone() for p in params]
    sizes = [p.numel() for p in params]
    origin = torch.from_numpy(plane.origin)
    e1, e2 = (torch.from_numpy(d) for d in plane.directions)
    training = model.training
    model.eval()
    loss = np.empty((len(ys), len(xs)))
    try:
        with Progress(len(xs) * len(ys), "landscape", enabled=progress) as bar:
            for row, b in enumerate(ys):
                for column, a in enumerate(xs):
                    point = origin + float(a) * e1 + float(b) * e2
                    for param, piece in zip(params, point.split(sizes)):
                        param.copy_(piece.view(param.shape))
                    try:
                        loss[row, column] = float(loss_fn(model))
                    except Exception as error:  # the user's closure: say where, in one line
                        raise TracerError(f"the loss closure failed at grid point ({a:.4g}, {b:.4g}): "
                                          f"{type(error).__name__}: {error}") from None
                    bar.advance()
    finally:
        for param, value in zip(params, saved):
            param.copy_(value)
        model.train(training)
    return loss


def run_arrays(plane: Plane, run: Snapshots) -> dict[str, np.ndarray]:
    """One run's points and its g, v, d and step at each snapshot update, projected on the plane."""
    points = np.vstack([run.theta, run.final[None, :]])
    v = run.v if run.v is not None else np.full_like(run.g, np.nan)
    return {
        "done": np.append(run.updates - 1, run.updates_done).astype(np.int64),
        "xy": plane.locate(points),
        "g": plane.project(run.g),
        "v": plane.project(v),
        "d": plane.project(run.d),
        "step": plane.project(run.step),
    }


def write_surface(out: str | os.PathLike, plane: Plane, xs: np.ndarray, ys: np.ndarray, loss: np.ndarray,
                  runs: Sequence[Snapshots], traces: Sequence[Any], loss_name: str = "") -> pathlib.Path:
    """Write the surface file atomically (a temporary file beside it, renamed when complete)."""
    out = pathlib.Path(out)
    meta = {
        "format": SURFACE_FORMAT,
        "version": SURFACE_VERSION,
        "explained_variance": list(plane.explained_variance),
        "normalization": plane.normalization,
        "parameters": sum(int(np.prod(shape, dtype=np.int64)) for _, shape in plane.parameters),
        "origin": {"trace": pathlib.Path(traces[0].path).name, "updates_done": runs[0].updates_done},
        "loss": loss_name,
        "runs": [
            {"trace": pathlib.Path(trace.path).name, "label": trace.meta.get("label"),
             "optimizer": (trace.meta.get("optimizer") or {}).get("name"), "updates_done": run.updates_done,
             "every": run.meta.get("every")}
            for trace, run in zip(traces, runs)
        ],
    }
    arrays: dict[str, np.ndarray] = {"meta": np.array(json.dumps(meta)), "x": xs, "y": ys, "loss": loss,
                                     "directions": plane.directions}
    for index, run in enumerate(runs):
        for key, value in run_arrays(plane, run).items():
            arrays[f"run{index}_{key}"] = value
    parent = out.parent if str(out.parent) else pathlib.Path(".")
    if not parent.is_dir():
        raise TracerError(f"cannot write {str(out)!r}: directory {str(parent)!r} does not exist")
    handle, name = tempfile.mkstemp(dir=parent, prefix=f".{out.name}.", suffix=".npz")
    os.close(handle)
    try:
        np.savez(name, **arrays)
        os.chmod(name, 0o644)
        os.replace(name, out)
    finally:
        if os.path.exists(name):
            os.unlink(name)
    return out


def landscape(traces: Sequence[str | os.PathLike], model: torch.nn.Module, loss_fn: LossClosure,
              out: str | os.PathLike, *, grid: int | tuple[int, int] = DEFAULT_GRID,
              xlim: tuple[float, float] | None = None, ylim: tuple[float, float] | None = None,
              margin: float = DEFAULT_MARGIN, normalization: str = "none", progress: bool = True,
              loss_name: str = "") -> pathlib.Path:
    """Find the plane of the traces' snapshots, evaluate ``loss_fn(model)`` over it, write the surface file.

    Every check (snapshots present, same model, parameters matching the
    model's, grid size) is made before the evaluation; nothing is written
    when one fails.
    """
    if not str(out).endswith(".npz"):
        raise TracerError(f"the surface file must end in .npz, got {str(out)!r}")
    grid = (grid, grid) if isinstance(grid, int) else tuple(grid)
    loaded = [snapshots_of_trace(path) for path in traces]
    if not loaded:
        raise TracerError("no trace given; pass at least one trace recorded with snapshots")
    trace_list = [trace for trace, _ in loaded]
    runs = [run for _, run in loaded]
    plane = find_plane(runs, normalization)
    model_parameters(model, plane)
    check_grid(grid)
    xs, ys = grid_axes([plane.locate(np.vstack([r.theta, r.final[None, :]])) for r in runs], grid,
                       xlim, ylim, margin)
    loss = evaluate_surface(model, loss_fn, plane, xs, ys, progress=progress)
    return write_surface(out, plane, xs, ys, loss, runs, trace_list, loss_name)
