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

    def train_epoch(self, model, optimizer, epoch: int, recorder=None) -> Iterator[int]:
        """One epoch of training, one update per mini-batch: the loss, its gradient, the loss (with
        epoch and batch) noted on ``recorder`` if given, the optimizer's step.

        Yields each mini-batch's index after its update: a caller steps its
        scheduler or its progress bar there.
        """
        for batch_index, batch in self.batches(epoch):
            loss = self.loss(model, batch)
            optimizer.zero_grad()
            loss.backward()
            if recorder is not None:
                recorder.note(loss=loss.item(), epoch=epoch, batch=batch_index)
            optimizer.step()
            yield batch_index

    def train(self, model, optimizer, epochs: int, recorder=None) -> None:
        """``epochs`` epochs of ``train_epoch``, from epoch 0, with nothing between updates."""
        for epoch in range(epochs):
            for _ in self.train_epoch(model, optimizer, epoch, recorder):
                pass


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
