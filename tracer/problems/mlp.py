"""A small real network, for tracing beyond the 2-parameter problems.

Two interleaved spirals (512 points in the plane, two classes) classified by
a multilayer perceptron 2 -> 32 -> 32 -> 1 with tanh activations and a
logistic loss (binary cross-entropy on the logit). 1,185 parameters in six
tensors (`hidden1.weight`, `hidden1.bias`, ..., `output.bias`): too many to
draw coordinate by coordinate, which is what the recorder's `summary`
granularity and the renderer's `dashboard` are for.

Batches are reshuffled every epoch, with the seeding of `ShuffledDataProblem`.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import torch

from tracer.problems.base import ShuffledDataProblem

SAMPLES = 512
HIDDEN = 32
MLP_SEED = 0
MLP_BATCH_SIZE = 32
TURNS = 1.5  # how many times each spiral winds around the origin
NOISE = 0.05


class MLPProblem(ShuffledDataProblem):
    """Two-spirals classification with a 2-32-32-1 tanh network."""

    name = "mlp"
    scheduler_every = "update"

    def __init__(self, seed: int = MLP_SEED, batch_size: int = MLP_BATCH_SIZE) -> None:
        super().__init__(seed, batch_size)
        data = torch.Generator().manual_seed(self.seed)
        half = SAMPLES // 2
        angle = torch.linspace(0.25, 1.0, half) * (2 * math.pi * TURNS)
        radius = angle / (2 * math.pi * TURNS)
        arm = torch.stack((radius * torch.cos(angle), radius * torch.sin(angle)), dim=1)
        points = torch.cat((arm, -arm))  # the second spiral is the first turned by half a circle
        self.features = points + NOISE * torch.randn(points.shape, generator=data)
        self.labels = torch.cat((torch.zeros(half, 1), torch.ones(half, 1)))

    def build_model(self) -> torch.nn.Module:
        # Seeding the global generator only around the initialisation keeps
        # torch's default (Kaiming-uniform) init while staying reproducible.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed + 1)
            layers = OrderedDict(
                hidden1=torch.nn.Linear(2, HIDDEN),
                tanh1=torch.nn.Tanh(),
                hidden2=torch.nn.Linear(HIDDEN, HIDDEN),
                tanh2=torch.nn.Tanh(),
                output=torch.nn.Linear(HIDDEN, 1),
            )
            return torch.nn.Sequential(layers)

    def loss(self, model, batch) -> torch.Tensor:
        features, labels = batch
        return torch.nn.functional.binary_cross_entropy_with_logits(model(features), labels)

    def accuracy(self, model) -> float:
        """Share of the whole data set classified correctly (logit > 0 means class 1)."""
        with torch.no_grad():
            predicted = (model(self.features) > 0).float()
        return float((predicted == self.labels).float().mean())



def landscape_model() -> torch.nn.Module:
    """The problem's network, for `tracer landscape --model tracer.problems.mlp:landscape_model`."""
    return MLPProblem().build_model()


def landscape_data() -> tuple[torch.Tensor, torch.Tensor]:
    """The whole data set (features, labels), the evaluation batch of the mlp landscape (loss bce_with_logits)."""
    problem = MLPProblem()
    return problem.features, problem.labels
