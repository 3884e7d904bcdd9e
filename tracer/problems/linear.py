"""Linear regression of the schedulers article (seeds/000): y = X @ [2, -3.4] + 4.2 + noise.

1000 samples X ~ N(0, 1) of shape (1000, 2), noise N(0, 0.01); the model is
nn.Linear(2, 1) with weight ~ N(0, 0.01) and bias 0; MSE on the mini-batch
(the article computes it on the whole data set, a slip); batches of 10,
shuffled every epoch; the scheduler steps once per epoch.

Three generators derived from `seed` keep the three kinds of randomness apart
(data, initial weights, shuffling), so changing one does not move the others.
"""

from __future__ import annotations

from typing import Any, Iterator

import torch

from tracer.problems.base import Problem

TRUE_WEIGHT = (2.0, -3.4)
TRUE_BIAS = 4.2
SAMPLES = 1000
LINEAR_SEED = 0
LINEAR_BATCH_SIZE = 10


class LinearProblem(Problem):
    """Linear regression with parameters `weight` (1 x 2) and `bias` (1)."""

    name = "linear"
    scheduler_every = "epoch"

    def __init__(self, seed: int = LINEAR_SEED, batch_size: int = LINEAR_BATCH_SIZE) -> None:
        super().__init__({"seed": int(seed), "batch_size": int(batch_size)})
        self.batch_size = int(batch_size)
        self._seed = int(seed)
        data = torch.Generator().manual_seed(self._seed)
        self.features = torch.normal(0.0, 1.0, (SAMPLES, 2), generator=data)
        labels = self.features @ torch.tensor(TRUE_WEIGHT) + TRUE_BIAS
        labels += torch.normal(0.0, 0.01, labels.shape, generator=data)
        self.labels = labels.reshape(-1, 1)

    @property
    def batches_per_epoch(self) -> int:
        return -(-SAMPLES // self.batch_size)

    def build_model(self) -> torch.nn.Module:
        model = torch.nn.Linear(2, 1)
        init = torch.Generator().manual_seed(self._seed + 1)
        with torch.no_grad():
            model.weight.normal_(0.0, 0.01, generator=init)
            model.bias.fill_(0.0)
        return model

    def batches(self, epoch: int) -> Iterator[tuple[int, Any]]:
        # One generator per epoch: any epoch's order is reproducible on its own.
        shuffle = torch.Generator().manual_seed(self._seed + 2 + epoch)
        perm = torch.randperm(SAMPLES, generator=shuffle)
        for index, start in enumerate(range(0, SAMPLES, self.batch_size)):
            chosen = perm[start : start + self.batch_size]
            yield index, (self.features[chosen], self.labels[chosen])

    def loss(self, model, batch) -> torch.Tensor:
        features, labels = batch
        return torch.nn.functional.mse_loss(model(features), labels)
