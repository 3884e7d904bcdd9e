"""Linear regression of the schedulers article (seeds/000): y = X @ [2, -3.4] + 4.2 + noise.

1000 samples X ~ N(0, 1) of shape (1000, 2), noise N(0, 0.01); the model is
nn.Linear(2, 1) with weight ~ N(0, 0.01) and bias 0; MSE on the mini-batch
(the article computes it on the whole data set, a slip); batches of 10,
shuffled every epoch (`ShuffledDataProblem`); the scheduler steps once per
epoch.
"""

from __future__ import annotations

import torch

from tracer.problems.base import ShuffledDataProblem

TRUE_WEIGHT = (2.0, -3.4)
TRUE_BIAS = 4.2
SAMPLES = 1000
LINEAR_SEED = 0
LINEAR_BATCH_SIZE = 10


class LinearProblem(ShuffledDataProblem):
    """Linear regression with parameters `weight` (1 x 2) and `bias` (1)."""

    name = "linear"
    scheduler_every = "epoch"

    def __init__(self, seed: int = LINEAR_SEED, batch_size: int = LINEAR_BATCH_SIZE) -> None:
        super().__init__(seed, batch_size)
        data = torch.Generator().manual_seed(self.seed)
        self.features = torch.normal(0.0, 1.0, (SAMPLES, 2), generator=data)
        labels = self.features @ torch.tensor(TRUE_WEIGHT) + TRUE_BIAS
        labels += torch.normal(0.0, 0.01, labels.shape, generator=data)
        self.labels = labels.reshape(-1, 1)

    def build_model(self) -> torch.nn.Module:
        model = torch.nn.Linear(2, 1)
        init = torch.Generator().manual_seed(self.seed + 1)
        with torch.no_grad():
            model.weight.normal_(0.0, 0.01, generator=init)
            model.bias.fill_(0.0)
        return model

    def loss(self, model, batch) -> torch.Tensor:
        features, labels = batch
        return torch.nn.functional.mse_loss(model(features), labels)
