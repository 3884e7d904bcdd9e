"""Tracing runs that a framework's trainer drives: thin callbacks over ``tracer.Recorder``.

- ``tracer.integrations.lightning.TraceCallback``: a PyTorch Lightning ``Callback``.
- ``tracer.integrations.transformers.TraceCallback``: a Hugging Face ``transformers.TrainerCallback``.

Each takes the trace file's path and the Recorder's options (granularity
"summary" unless told otherwise), finds the optimizer the trainer made when
training begins, unwrapped (``unwrap_optimizer``), starts a Recorder on it
with the model's parameter names, notes the loss the trainer computed and
the epoch and batch before each optimizer step, and closes the trace when
training ends. The trainer's gradient accumulation, learning-rate scheduler,
gradient clipping and DDP need nothing more: the Recorder hooks the
optimizer's own ``step`` (one row per update, the lr in effect at that
update, the gradients the optimizer used, rank 0 writing under DDP). A step
that AMP's GradScaler skips (inf or NaN gradients) never calls the
optimizer's ``step``, so it writes no row: the ``update`` column counts the
updates that were applied.

Importing this package imports neither framework; each module imports its own.
"""

from __future__ import annotations

import torch

__all__ = ["unwrap_optimizer", "RECORDER_DEFAULTS"]

# Options the callbacks pass to the Recorder unless the user gives them: the trainers train real models.
RECORDER_DEFAULTS = {"granularity": "summary"}


def unwrap_optimizer(optimizer: object) -> torch.optim.Optimizer:
    """The optimizer that updates the parameters, out of the wrappers trainers put round it.

    A wrapper holding its optimizer at ``.optimizer`` (accelerate's
    AcceleratedOptimizer, which transformers.Trainer holds) or ``._optimizer``
    (Lightning's LightningOptimizer) is unwrapped, repeatedly; a plain
    ``torch.optim.Optimizer`` is returned as it is.
    """
    seen = {id(optimizer)}
    while True:
        inner = getattr(optimizer, "optimizer", None)
        if not isinstance(inner, torch.optim.Optimizer):
            inner = getattr(optimizer, "_optimizer", None)
        if not isinstance(inner, torch.optim.Optimizer) or id(inner) in seen:
            return optimizer  # type: ignore[return-value]
        seen.add(id(inner))
        optimizer = inner
