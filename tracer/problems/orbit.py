"""The orbit regression of the articles: fit the semi-axes of the Earth-to-Mars
Hohmann transfer orbit to 512 noisy samples of its upper half.

The numpy side (constants, the committed samples, the loss over a grid of
(Wa, Wb), the fitted ellipse) imports no torch, so figures can be drawn without
it. The training side (`OrbitProblem`, `generate_orbit_samples`) imports torch
inside its functions.

The procedure, followed to the letter, reproduces the article's reference runs
(Momentum lr 0.012, 100 epochs ends at Wa 3.3384, Wb 0.9972 as printed):

- float32 everywhere; c = sqrt(a^2 - b^2) computed in Python (float64) and
  used as a Python scalar in float32 tensor arithmetic;
- torch's generator seeded with 9999, then x = linspace(-(a+c), a-c, 512),
  y = b * sqrt(1 - (x+c)^2 / a^2) + (rand(512) - 0.5) * 0.1;
- forward: q = 1 - (x+c)^2 / Wa^2; mask = q < 0; q[mask] = 0;
  y_pred = sqrt(q) * Wb; loss = MSE(y_pred[~mask], y[~mask]);
- every epoch: one int64 draw, then randperm(512); the batches are the
  consecutive 64-slices of the permutation (the order torch's shuffling
  DataLoader of the time produced).

We use a private `torch.Generator` seeded with 9999 rather than the global
one: its stream is identical (a test checks it), and nothing else that draws
random numbers can shift the batch order.
"""

from __future__ import annotations

import math
from functools import lru_cache
from importlib import resources
from typing import Any, Iterator

import numpy as np

from tracer.problems.base import Problem

ORBIT_A = 1.261845                                   # true semi-major axis (AU)
ORBIT_B = 1.234378                                   # true semi-minor axis (AU)
ORBIT_C = math.sqrt(ORBIT_A**2 - ORBIT_B**2)         # x offset: the Sun at the focus
ORBIT_N = 512
ORBIT_SEED = 9999
ORBIT_BATCH_SIZE = 64
ORBIT_START = (0.1, 1.8)                             # initial (Wa, Wb)
EARTH_ORBIT_RADIUS = 1.0                             # AU: the transfer orbit's perihelion, a - c
MARS_ORBIT_RADIUS = 1.5237                           # AU: its aphelion, a + c (drawn as circles by render/fit.py)
DATA_FILE = "orbit_data.npz"


@lru_cache(maxsize=1)
def _samples() -> tuple[np.ndarray, np.ndarray]:
    with resources.files("tracer.problems").joinpath(DATA_FILE).open("rb") as handle:
        data = np.load(handle)
        x, y = data["x"], data["y"]
    x.setflags(write=False)
    y.setflags(write=False)
    return x, y


def load_orbit_samples() -> tuple[np.ndarray, np.ndarray]:
    """The 512 samples (x, y), float32, as generated with seed 9999 (read-only arrays)."""
    return _samples()


def orbit_curve(wa: float, wb: float, points: int = 400) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) of the upper half of the ellipse with semi-axes (wa, wb), centred at x = -c.

    Drawn by angle rather than by x, so the curve stays smooth where it meets
    the x axis (y = wb * sqrt(q) is vertical there)."""
    angle = np.linspace(0.0, np.pi, points)
    return abs(wa) * np.cos(angle) - ORBIT_C, abs(wb) * np.sin(angle)


def orbit_loss_grid(was: np.ndarray, wbs: np.ndarray) -> np.ndarray:
    """Masked MSE over the whole data set at every (Wa, Wb); shape (len(wbs), len(was)).

    The prediction is sqrt(q(Wa)) * Wb and the mask depends on Wa alone, so
    for each Wa the loss is a quadratic in Wb:
    Wb^2 * mean(q) - 2 Wb * mean(sqrt(q) y) + mean(y^2) over the kept points.
    That makes a 250 x 250 grid a few (Wa x 512) arrays, in float64 (the grid
    is for contours, not for reproducing the training arithmetic). Where no
    sample is kept (|Wa| too small) the loss is NaN.
    """
    x, y = (np.asarray(v, dtype=np.float64) for v in _samples())
    was = np.asarray(was, dtype=np.float64).reshape(-1, 1)
    wbs = np.asarray(wbs, dtype=np.float64).reshape(-1, 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        q = 1.0 - (x + ORBIT_C) ** 2 / was**2                # (len(was), N)
        kept = q >= 0
        count = kept.sum(axis=1)
        q = np.where(kept, q, 0.0)
        mean_q = q.sum(axis=1) / count
        mean_qy = (np.sqrt(q) * y).sum(axis=1) / count
        mean_yy = np.where(kept, y * y, 0.0).sum(axis=1) / count
        grid = wbs**2 * mean_q - 2.0 * wbs * mean_qy + mean_yy  # (len(wbs), len(was))
    return np.maximum(grid, 0.0)  # cancellation can dip a hair below zero


def generate_orbit_samples(seed: int = ORBIT_SEED, generator=None):
    """Build the data set with torch: returns (x, y) float32 tensors.

    When `generator` is given it is used (and advanced) instead of a fresh
    one seeded with `seed`; the batch order continues from that generator.
    """
    import torch

    if generator is None:
        generator = torch.Generator().manual_seed(seed)
    a, b, c = ORBIT_A, ORBIT_B, ORBIT_C
    x = torch.linspace(-(a + c), a - c, ORBIT_N, dtype=torch.float32)
    noise = (torch.rand(ORBIT_N, generator=generator, dtype=torch.float32) - 0.5) * 0.1
    y = b * torch.sqrt(1 - (x + c) ** 2 / a**2) + noise
    return x, y


class OrbitProblem(Problem):
    """Orbit regression: two scalar parameters Wa, Wb, batches of 64, float32."""

    name = "orbit"
    scheduler_every = "update"

    def __init__(self, seed: int = ORBIT_SEED, batch_size: int = ORBIT_BATCH_SIZE) -> None:
        super().__init__({"seed": int(seed), "batch_size": int(batch_size)})
        self.batch_size = int(batch_size)
        self._seed = int(seed)
        self._start_generator()

    def _start_generator(self) -> None:
        import torch

        self._generator = torch.Generator().manual_seed(self._seed)
        self.x, self.y = generate_orbit_samples(generator=self._generator)
        self._next_epoch = 0
        self._perm = None

    @property
    def batches_per_epoch(self) -> int:
        return -(-ORBIT_N // self.batch_size)

    def build_model(self):
        import torch

        model = torch.nn.Module()
        model.Wa = torch.nn.Parameter(torch.tensor(ORBIT_START[0], dtype=torch.float32))
        model.Wb = torch.nn.Parameter(torch.tensor(ORBIT_START[1], dtype=torch.float32))
        return model

    def batches(self, epoch: int) -> Iterator[tuple[int, Any]]:
        """The batches of `epoch`; epochs are drawn in order (an earlier one replays from the seed)."""
        import torch

        if epoch < self._next_epoch - 1:
            self._start_generator()
        while self._next_epoch <= epoch:
            # The int64 draw is the base seed the DataLoader of the time took
            # for its workers; we need only its effect on the generator.
            torch.empty((), dtype=torch.int64).random_(generator=self._generator)
            self._perm = torch.randperm(ORBIT_N, generator=self._generator)
            self._next_epoch += 1
        # One gather per epoch; the batches are views of it.
        x, y = self.x[self._perm], self.y[self._perm]
        for index, start in enumerate(range(0, ORBIT_N, self.batch_size)):
            yield index, (x[start : start + self.batch_size], y[start : start + self.batch_size])

    @staticmethod
    def forward(model, x):
        """(y_pred, mask): mask marks the samples outside the ellipse of semi-axis Wa."""
        import torch

        q = 1 - (x + ORBIT_C) ** 2 / model.Wa**2
        mask = q < 0
        q[mask] = 0
        return torch.sqrt(q) * model.Wb, mask

    def loss(self, model, batch):
        import torch

        x, y = batch
        y_pred, mask = self.forward(model, x)
        kept = ~mask
        return torch.nn.functional.mse_loss(y_pred[kept], y[kept])
