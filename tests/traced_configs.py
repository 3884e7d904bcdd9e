"""Every optimizer configuration the recorder is tested on, as data, and the small run that traces one.

One table (like torch's OptimizerInfo and optax's _OPTIMIZERS_UNDER_TEST):
each row is a torch.optim class name with keyword arguments, which
implementations run it (torch's, and tracer.optim's where it has the class
and flags), how its d relates to the step (``d_check``), the parameters'
dtype and whether the gradients are sparse. ``run`` trains a tiny model with
it, traced or not.

``d_check`` says how ``theta_next = theta - lr * d`` holds for the family's d:
- "bitwise": d is recomputed in the optimizer's own op order and
  ``theta - lr * d`` replays the step bit for bit.
- "folded": d is recomputed, but torch folds lr into a fused op
  (``addcdiv(theta, v, denom, value=-lr/bc1)``), or the step is a fused
  kernel that rounds (or contracts into FMAs) where the recomputation does
  not, so the replay differs from the step by a few float32 roundings
  (FOLDED_FACTOR_TOLERANCE).
- "measured": d is measured, ``d = (theta - theta_next) / lr`` in float64,
  and equals that bit for bit (every family without a probe, and 16-bit
  parameters of every family).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Mapping

import torch

import tracer.optim as ours
from tracer.recorder import Recorder

D_CHECKS = ("bitwise", "folded", "measured")


@dataclass(frozen=True)
class TracedConfig:
    """One traced optimizer configuration; ``desc`` is its pytest id."""

    desc: str
    cls: str  # a torch.optim class name (and tracer.optim's, where ``ours`` is True)
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    d_check: str = "measured"
    ours: bool = False  # tracer.optim has the class and accepts these flags
    dtype: torch.dtype = torch.float32
    sparse: bool = False  # gradients are handed to the optimizer as sparse tensors (SparseAdam)
    theirs: bool = True  # torch has the class with these flags (not RMSprop's fused, which only ours has)

    def __post_init__(self) -> None:
        assert self.d_check in D_CHECKS, self.d_check

    @property
    def impls(self) -> tuple[str, ...]:
        return ("torch",) * self.theirs + ("tracer",) * self.ours

    def make(self, params, impl: str = "torch") -> torch.optim.Optimizer:
        module = torch.optim if impl == "torch" else ours
        return getattr(module, self.cls)(params, **self.kwargs)


C = TracedConfig
CONFIGS: tuple[TracedConfig, ...] = (
    C("sgd", "SGD", dict(lr=0.05), "bitwise", ours=True),
    C("sgd wd maximize", "SGD", dict(lr=0.05, weight_decay=0.1, maximize=True), "bitwise", ours=True),
    C("momentum", "SGD", dict(lr=0.05, momentum=0.9), "bitwise", ours=True),
    C("momentum dampening", "SGD", dict(lr=0.05, momentum=0.9, dampening=0.3), "bitwise", ours=True),
    C("nesterov wd", "SGD", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01), "bitwise", ours=True),
    C("sgd foreach momentum", "SGD", dict(lr=0.05, momentum=0.9, foreach=True), "bitwise"),
    C("momentum fused nesterov wd", "SGD", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01, fused=True), "folded", ours=True),
    C("rmsprop", "RMSprop", dict(lr=0.01), "folded", ours=True),
    C("rmsprop centered", "RMSprop", dict(lr=0.01, centered=True), "folded", ours=True),
    C("rmsprop centered momentum wd", "RMSprop", dict(lr=0.01, centered=True, momentum=0.5, weight_decay=0.01), "bitwise", ours=True),
    C("rmsprop foreach centered", "RMSprop", dict(lr=0.01, centered=True, foreach=True), "folded"),
    C("rmsprop fused centered momentum", "RMSprop", dict(lr=0.01, centered=True, momentum=0.5, fused=True), "folded", ours=True, theirs=False),
    C("adam", "Adam", dict(lr=0.01), "folded", ours=True),
    C("adam amsgrad wd maximize", "Adam", dict(lr=0.01, amsgrad=True, weight_decay=0.1, maximize=True), "folded", ours=True),
    C("adamw", "AdamW", dict(lr=0.01, weight_decay=0.1), "folded", ours=True),
    C("adamw amsgrad", "AdamW", dict(lr=0.01, amsgrad=True), "folded", ours=True),
    C("adam foreach", "Adam", dict(lr=0.01, foreach=True), "folded"),
    C("adam fused", "Adam", dict(lr=0.01, fused=True), "folded", ours=True),
    C("adamw fused amsgrad", "AdamW", dict(lr=0.01, fused=True, amsgrad=True), "folded", ours=True),
    # torch's fused kernel steps float16 parameters in float32 from state it rounds to float16: d is measured.
    C("adamw fused float16", "AdamW", dict(lr=0.01, fused=True), "measured", dtype=torch.float16),
    C("nadam", "NAdam", dict(lr=0.01)),
    C("nadam decoupled wd", "NAdam", dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True)),
    C("radam", "RAdam", dict(lr=0.01)),
    C("radam wd maximize", "RAdam", dict(lr=0.01, weight_decay=0.1, maximize=True)),
    C("adamax", "Adamax", dict(lr=0.01)),
    C("adamax wd foreach", "Adamax", dict(lr=0.01, weight_decay=0.1, foreach=True)),
    C("adagrad", "Adagrad", dict(lr=0.05)),
    C("adagrad lr_decay wd", "Adagrad", dict(lr=0.05, lr_decay=0.01, weight_decay=0.1)),
    C("adadelta", "Adadelta", dict(lr=1.0)),
    C("adadelta wd maximize", "Adadelta", dict(lr=1.0, weight_decay=0.1, maximize=True)),
    C("asgd", "ASGD", dict(lr=0.05, t0=3)),
    C("rprop", "Rprop", dict(lr=0.01)),
    C("rprop maximize foreach", "Rprop", dict(lr=0.01, maximize=True, foreach=True)),
    C("sparse adam", "SparseAdam", dict(lr=0.01), sparse=True),
)
del C

SHAPES = ((), (3, 2), (4,))
# The last parameter has no gradient at every third update: the optimizer
# skips it there, so its step count (Adam's bias correction) falls behind.
SKIPPED_EVERY = 3


def cases(configs=CONFIGS):
    """(config, impl) pairs with their pytest ids, every implementation of every row."""
    import pytest

    return [pytest.param(config, impl, id=f"{impl} {config.desc}") for config in configs for impl in config.impls]


def run(
    config: TracedConfig,
    impl: str,
    path: str | os.PathLike | None,
    *,
    steps: int = 12,
    recorder_options: dict | None = None,
) -> list[torch.Tensor]:
    """Train a tiny regression with the configuration for ``steps`` updates, traced into ``path`` (None: untraced).

    Returns the parameters (detached clones) after the last step.
    """
    generator = torch.Generator().manual_seed(1234)
    x = torch.rand(32, generator=generator) * 2 - 1
    y = 1.3 * x + 0.4 + 0.05 * torch.randn(32, generator=generator)
    params = [
        (0.1 + 0.3 * k + 0.01 * torch.arange(max(1, torch.Size(shape).numel())).reshape(shape))
        .to(config.dtype)
        .requires_grad_(True)
        for k, shape in enumerate(SHAPES)
    ]
    optimizer = config.make(params, impl)

    def loop(recorder=None):
        for step in range(steps):
            prediction = sum(x * p.float().reshape(-1).mean() ** (k + 1) for k, p in enumerate(params))
            loss = ((prediction - y) ** 2).mean()
            optimizer.zero_grad()
            loss.backward()
            if step % SKIPPED_EVERY == SKIPPED_EVERY - 1:
                params[-1].grad = None
            if config.sparse:
                for p in params:
                    if p.grad is not None:
                        p.grad = p.grad.to_sparse()
            if recorder is not None:
                recorder.note(loss=loss, epoch=0, batch=step)
            optimizer.step()

    if path is None:
        loop()
    else:
        names = [f"w{k}" for k in range(len(params))]
        with Recorder(optimizer, path, named_parameters=zip(names, params), **(recorder_options or {})) as recorder:
            loop(recorder)
    return [p.detach().clone() for p in params]
