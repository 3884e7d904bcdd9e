"""Trace a PyTorch Lightning run: ``TraceCallback``, a ``lightning.pytorch.Callback``.

Usage::

    from tracer.integrations.lightning import TraceCallback

    trainer = lightning.Trainer(max_epochs=3, callbacks=[TraceCallback("run.trace.csv")])
    trainer.fit(model, train_loader)

The trace is the one a ``tracer.Recorder`` on the same optimizer writes in a
hand-written loop of the same run (tests/test_integrations.py compares them,
cell by cell). Its loss is the loss ``training_step`` returned, as Lightning
backpropagates it: divided by ``accumulate_grad_batches`` and summed over
the update's batches (their mean), unscaled under 16-bit AMP; ``epoch`` is
the trainer's epoch and ``batch`` the index of the update's last batch in
it. Rows, lr, gradient clipping, schedulers, AMP and DDP as
``tracer.integrations`` says.
"""

from __future__ import annotations

import os
from typing import Any

import lightning.pytorch as pl
import torch

from tracer.errors import TracerError
from tracer.integrations import RECORDER_DEFAULTS, unwrap_optimizer
from tracer.recorder import Recorder

__all__ = ["TraceCallback"]


class TraceCallback(pl.Callback):
    """Record the optimizer of a ``lightning.pytorch.Trainer`` into a trace file.

    Args:
        path: the trace file to write.
        optimizer_index: which of the Trainer's optimizers to trace, when
            ``configure_optimizers`` returns several (default 0, the only one).
        **recorder_options: the ``tracer.Recorder``'s keyword options
            (``granularity`` is "summary" unless given, ``every``, ``full``,
            ``cos_d_prev``, ``meta``, ``if_exists``, ...).

    ``recorder`` is the Recorder while training runs (None before).
    """

    def __init__(self, path: str | os.PathLike, *, optimizer_index: int = 0, **recorder_options: Any) -> None:
        self.path = path
        self.optimizer_index = optimizer_index
        self.recorder_options = {**RECORDER_DEFAULTS, **recorder_options}
        self.recorder: Recorder | None = None
        self._losses: list[torch.Tensor] = []  # the update's batches' losses so far, as backpropagated, unscaled
        self._batch: int | None = None

    def on_train_start(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        optimizers = trainer.optimizers
        if not 0 <= self.optimizer_index < len(optimizers):
            raise TracerError(
                f"TraceCallback(optimizer_index={self.optimizer_index}) but the Trainer has {len(optimizers)} "
                f"optimizer(s); accepted: 0 to {len(optimizers) - 1}"
            )
        options = dict(self.recorder_options)
        meta = {"trainer": {"name": "lightning", "version": pl.__version__,
                            "accumulate_grad_batches": trainer.accumulate_grad_batches,
                            "precision": str(trainer.precision)},
                "epochs": trainer.max_epochs, **(options.pop("meta", None) or {})}
        optimizer = unwrap_optimizer(optimizers[self.optimizer_index])
        self.recorder = Recorder(optimizer, self.path, named_parameters=pl_module.named_parameters(), meta=meta,
                                 **options).start()

    def on_train_batch_start(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", batch: Any,
                             batch_idx: int) -> None:
        self._batch = batch_idx

    def on_before_backward(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", loss: torch.Tensor) -> None:
        loss = loss.detach()
        scale = getattr(getattr(trainer.precision_plugin, "scaler", None), "_scale", None)
        if isinstance(scale, torch.Tensor):
            # 16-bit AMP hands the scaled loss; the scale is a power of two, so dividing is exact (and on the device).
            loss = loss / scale.to(loss.dtype)
        self._losses.append(loss)

    def on_before_optimizer_step(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule",
                                 optimizer: torch.optim.Optimizer) -> None:
        if self.recorder is None:
            return
        losses, self._losses = self._losses, []
        # Each loss is divided by accumulate_grad_batches already: their sum is the update's mean loss.
        loss = sum(losses[1:], losses[0]) if losses else None
        self.recorder.note(loss=loss, epoch=trainer.current_epoch, batch=self._batch)

    def on_train_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        self._close(None)

    def on_exception(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", exception: BaseException) -> None:
        self._close("interrupted")

    def _close(self, status: str | None) -> None:
        if self.recorder is not None:
            self.recorder.close(status)
