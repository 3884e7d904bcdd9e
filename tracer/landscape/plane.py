"""The plane of a training run: two directions in parameter space, and the run projected on it (numpy only).

As loss-landscape (Li et al. 2018) does for trajectories: the plane passes
through the final point of the first run (its ``origin``); its directions
are the top two principal components of the snapshots' offsets from that
point, ``theta_i - origin``, over every run given (so several runs from one
start share one plane); ``explained_variance[j]`` is the share of the
offsets' variance (about their mean, as a PCA) along direction j.

With ``normalization="filter"`` each direction is rescaled filter by filter
(each slice along a tensor's first dimension; a 0-D or 1-D tensor is one
filter) to the norm of the origin's filter, as loss-landscape's filter-wise
normalisation. The directions are then no longer orthonormal, and a vector
x is projected by least squares: the coordinates (a, b) minimising
``|x - a e1 - b e2|``. Without it the directions are orthonormal and the
coordinates are the dot products ``e1 . x``, ``e2 . x``.
"""

from __future__ import annotations

import pathlib
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from tracer.errors import TracerError
from tracer.npz_files import read_npz

NORMALIZATIONS = ("none", "filter")
SNAPSHOT_FORMAT = "tracer-snapshots"


@dataclass(frozen=True)
class Snapshots:
    """One run's snapshot file read back (see ``tracer.recording.snapshots``).

    ``theta``, ``g``, ``v``, ``d``, ``step``: one row per snapshot update
    (``updates``, 1-based: theta is the point before that update); ``v`` is
    None when the optimizer keeps no first moment; ``final``: the parameters
    after the last update (``updates_done``).
    """

    path: pathlib.Path
    meta: dict[str, Any]
    updates: np.ndarray
    theta: np.ndarray
    g: np.ndarray
    v: np.ndarray | None
    d: np.ndarray
    step: np.ndarray
    final: np.ndarray

    @property
    def parameters(self) -> list[tuple[str, tuple[int, ...]]]:
        return [(p["name"], tuple(p["shape"])) for p in self.meta["parameters"]]

    @property
    def updates_done(self) -> int:
        return int(self.meta["updates_done"])


def load_snapshots(path: str | pathlib.Path) -> Snapshots:
    """Read a snapshot file; TracerError naming the file when it is missing or not one."""
    path = pathlib.Path(path)
    arrays, meta = read_npz(path, what="snapshot", format_name=SNAPSHOT_FORMAT,
                            missing_hint="it is written when the recorder closes")
    try:
        return Snapshots(path, meta, arrays["updates"], arrays["theta"], arrays["g"], arrays.get("v"), arrays["d"],
                         arrays["step"], arrays["final"])
    except (KeyError, ValueError) as error:
        raise TracerError(f"{path}: not a tracer snapshot file ({error})") from None


@dataclass(frozen=True)
class Plane:
    """Two directions through ``origin`` (vectors of all parameters, flattened in optimizer order)."""

    origin: np.ndarray
    directions: np.ndarray  # (2, parameters)
    explained_variance: tuple[float, float]
    normalization: str
    parameters: list[tuple[str, tuple[int, ...]]]

    def project(self, vectors: np.ndarray) -> np.ndarray:
        """Coordinates (n, 2) of vectors (n, parameters) in the plane's directions (no origin taken off)."""
        vectors = np.asarray(vectors, dtype=np.float64)
        dots = vectors @ self.directions.T
        if self.normalization == "none":
            return dots
        gram = self.directions @ self.directions.T
        return np.linalg.solve(gram, dots.T).T

    def locate(self, points: np.ndarray) -> np.ndarray:
        """Coordinates (n, 2) of points of parameter space, relative to the origin."""
        return self.project(np.asarray(points, dtype=np.float64) - self.origin)

    def point(self, a: float, b: float) -> np.ndarray:
        """The parameters at coordinates (a, b): origin + a e1 + b e2."""
        return self.origin + a * self.directions[0] + b * self.directions[1]


def _filter_normalized(direction: np.ndarray, origin: np.ndarray, parameters: Sequence[tuple[str, tuple]]) -> np.ndarray:
    out = direction.copy()
    offset = 0
    for _, shape in parameters:
        size = int(np.prod(shape, dtype=np.int64))
        rows = shape[0] if len(shape) >= 2 else 1
        d = out[offset:offset + size].reshape(rows, -1)
        w = origin[offset:offset + size].reshape(rows, -1)
        norms = np.linalg.norm(d, axis=1, keepdims=True)
        d *= np.divide(np.linalg.norm(w, axis=1, keepdims=True), norms, out=np.zeros_like(norms), where=norms > 0)
        offset += size
    return out


def check_same_parameters(runs: Sequence[Snapshots]) -> None:
    """TracerError unless every run has the same parameters (names and shapes) and start."""
    first = runs[0]
    for run in runs[1:]:
        if run.parameters != first.parameters:
            raise TracerError(
                f"{run.path} and {first.path} have different parameters ({len(run.parameters)} vs "
                f"{len(first.parameters)} tensors, or other names or shapes); one plane needs runs of one model"
            )
        if len(run.theta) and len(first.theta) and not np.array_equal(run.theta[0], first.theta[0]):
            raise TracerError(
                f"{run.path} and {first.path} start from different parameters; one plane is shared by runs "
                f"from the same start"
            )


def find_plane(runs: Sequence[Snapshots], normalization: str = "none") -> Plane:
    """The plane of the runs' snapshots: origin the first run's final point, directions their top-2 PCA."""
    if normalization not in NORMALIZATIONS:
        raise TracerError(f"invalid normalization {normalization!r}; accepted: {', '.join(NORMALIZATIONS)}")
    if not runs:
        raise TracerError("no run given; pass at least one trace with snapshots")
    check_same_parameters(runs)
    origin = runs[0].final.astype(np.float64)
    offsets = np.concatenate([np.vstack([r.theta, r.final[None, :]]).astype(np.float64) for r in runs]) - origin
    if len(offsets) < 3:
        raise TracerError(f"a plane needs at least 3 points of the runs; the snapshots hold {len(offsets)}")
    centred = offsets - offsets.mean(axis=0)
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)
    variance = singular**2
    total = float(variance.sum())
    if len(variance) < 2 or total == 0 or variance[1] == 0:
        raise TracerError("the runs do not move in two independent directions; no plane to draw them on")
    directions = vt[:2].copy()
    # A deterministic sign: the first run's start lies at negative coordinates (paths run towards +, +).
    start = offsets[0] @ directions.T
    directions *= np.where(start > 0, -1.0, 1.0)[:, None]
    parameters = runs[0].parameters
    if normalization == "filter":
        directions = np.stack([_filter_normalized(d, origin, parameters) for d in directions])
    explained = (float(variance[0] / total), float(variance[1] / total))
    return Plane(origin, directions, explained, normalization, parameters)
