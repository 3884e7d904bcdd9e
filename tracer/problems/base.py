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
