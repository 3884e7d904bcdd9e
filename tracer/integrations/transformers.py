"""Trace a Hugging Face ``transformers.Trainer`` run: ``TraceCallback``, a ``transformers.TrainerCallback``.

Usage::

    from tracer.integrations.transformers import TraceCallback

    trainer = Trainer(model=model, args=args, train_dataset=data, callbacks=[TraceCallback("run.trace.csv")])
    trainer.train()

The Trainer holds accelerate's ``AcceleratedOptimizer``; the callback traces
the optimizer inside it. The trace is the one a ``tracer.Recorder`` on that
optimizer writes in a hand-written loop of the same run
(tests/test_integrations.py compares them, cell by cell).

The loss of a row is the loss the Trainer adds to its running total for the
update: the model's ``loss`` output of each of the update's batches, divided
by their number unless the model normalised it over them itself (it was
given ``num_items_in_batch``), summed. It is read from the model's output
by a forward hook, so a Trainer whose ``compute_loss`` or
``compute_loss_func`` computes the loss outside the model leaves the loss
cells empty (or holding the model's own loss, if it returns one). ``epoch``
is the epoch, ``batch`` the index of the update's last batch in it. Rows,
lr, gradient clipping, schedulers, AMP and DDP as ``tracer.integrations``
says. A run that raises ends without a trailer (no Trainer event follows an
exception): its trace reads as ``incomplete``, every row written before kept.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import torch
import transformers

from tracer.integrations import RECORDER_DEFAULTS, unwrap_optimizer
from tracer.recorder import Recorder

__all__ = ["TraceCallback"]


class TraceCallback(transformers.TrainerCallback):
    """Record the optimizer of a ``transformers.Trainer`` into a trace file.

    Args:
        path: the trace file to write.
        **recorder_options: the ``tracer.Recorder``'s keyword options
            (``granularity`` is "summary" unless given, ``every``, ``full``,
            ``cos_d_prev``, ``meta``, ``if_exists``, ...).

    ``recorder`` is the Recorder while training runs (None before).
    """

    def __init__(self, path: str | os.PathLike, **recorder_options: Any) -> None:
        self.path = path
        self.recorder_options = {**RECORDER_DEFAULTS, **recorder_options}
        self.recorder: Recorder | None = None
        self._losses: list[tuple[torch.Tensor, bool]] = []  # per batch of the update: loss, normalised by the model
        self._epoch = 0
        self._batch = -1
        self._hook: Any = None

    def on_train_begin(self, args: Any, state: Any, control: Any, model: torch.nn.Module | None = None,
                       optimizer: Any = None, **kwargs: Any) -> None:
        options = dict(self.recorder_options)
        meta = {"trainer": {"name": "transformers", "version": transformers.__version__,
                            "gradient_accumulation_steps": args.gradient_accumulation_steps,
                            "max_grad_norm": args.max_grad_norm, "lr_scheduler_type": str(args.lr_scheduler_type)},
                "batch_size": args.per_device_train_batch_size, "seed": args.seed,
                **(options.pop("meta", None) or {})}
        self.recorder = Recorder(unwrap_optimizer(optimizer), self.path, named_parameters=model.named_parameters(),
                                 meta=meta, **options).start()
        self._hook = model.register_forward_hook(self._keep_loss, with_kwargs=True)

    def _keep_loss(self, module: torch.nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        if not module.training:  # evaluation's forward passes are not the update's
            return
        self._batch += 1
        loss = output.get("loss") if isinstance(output, Mapping) else getattr(output, "loss", None)
        if isinstance(loss, torch.Tensor):
            self._losses.append((loss.detach(), kwargs.get("num_items_in_batch") is not None))

    def on_epoch_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._epoch = round(state.epoch or 0)
        self._batch = -1

    def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.recorder is None:
            return
        losses, self._losses = self._losses, []
        loss = None
        for value, normalised in losses:  # in the Trainer's order and arithmetic: its total adds these
            value = value if normalised else value / len(losses)
            loss = value if loss is None else loss + value
        self.recorder.note(loss=loss, epoch=self._epoch, batch=max(self._batch, 0))

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
        if self.recorder is not None:
            self.recorder.close()
