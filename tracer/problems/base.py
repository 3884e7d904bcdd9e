"""What every problem offers the runner; torch is imported only by the subclasses' methods."""

from __future__ import annotations

from typing import Any, Iterator


class Problem:
    """A training problem: data, a model factory, batches and a loss.

    Subclasses set `name`, `options` (JSON-able, written into the trace's
    metadata as `{"name": name, **options}`), `batch_size` (None when a
    problem has no data set) and `scheduler_every` (when a scheduler steps by
    default: after every "update" or after every "epoch").
    """

    name: str = ""
    batch_size: int | None = None
    scheduler_every: str = "update"

    def __init__(self, options: dict[str, Any]) -> None:
        self.options = dict(options)

    @property
    def batches_per_epoch(self) -> int:
        """Updates per epoch (for progress bars and schedules)."""
        return 1

    @property
    def meta(self) -> dict[str, Any]:
        """The trace metadata's `problem` entry."""
        return {"name": self.name, **self.options}

    def build_model(self):  # -> torch.nn.Module
        raise NotImplementedError

    def batches(self, epoch: int) -> Iterator[tuple[int, Any]]:
        raise NotImplementedError

    def loss(self, model, batch):  # -> torch.Tensor
        raise NotImplementedError


class ShuffledDataProblem(Problem):
    """A data set of `features` and `labels` in mini-batches, reshuffled every epoch.

    Subclasses build `features` and `labels` (torch tensors, one row per
    sample) in their `__init__` after calling this one. Generators derived
    from `seed` keep the kinds of randomness apart: `seed` for the data,
    `seed + 1` for the initial weights, `seed + 2 + epoch` for each epoch's
    order, so changing one does not move the others and any epoch's order is
    reproducible on its own.
    """

    features: Any
    labels: Any

    def __init__(self, seed: int, batch_size: int) -> None:
        super().__init__({"seed": int(seed), "batch_size": int(batch_size)})
        self.seed = int(seed)
        self.batch_size = int(batch_size)

    @property
    def batches_per_epoch(self) -> int:
        return -(-len(self.features) // self.batch_size)

    def batches(self, epoch: int) -> Iterator[tuple[int, Any]]:
        import torch

        samples = len(self.features)
        shuffle = torch.Generator().manual_seed(self.seed + 2 + epoch)
        perm = torch.randperm(samples, generator=shuffle)
        for index, start in enumerate(range(0, samples, self.batch_size)):
            chosen = perm[start : start + self.batch_size]
            yield index, (self.features[chosen], self.labels[chosen])
