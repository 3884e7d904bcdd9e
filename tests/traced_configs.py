"""Every optimizer configuration the recorder is tested on, as data, and the small run that traces one.

One table (like torch's OptimizerInfo and optax's _OPTIMIZERS_UNDER_TEST):
each row is an optimizer class name with keyword arguments: every one of
torch 2.13's ``torch.optim`` (the 15: SGD ... Adafactor, Muon, LBFGS), and
the user-written ones of ``user_optimizers`` (Lion, a schedule-free SGD that
keeps extra iterates, one whose state tensors have other shapes than the
parameter, a subclass of SGD that overrides ``step()``). A row says which
implementations run it (torch's, tracer.optim's where it has the class and
flags, or "user"), how its d relates to the step (``d_check``), the
parameters' dtype and shapes, whether the gradients are sparse, whether
``step`` takes a closure (LBFGS), and the ``state_keys`` naming v and s for
an optimizer outside the family table. ``run`` trains a tiny model with it,
traced or not.

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
from user_optimizers import USER_OPTIMIZERS

D_CHECKS = ("bitwise", "folded", "measured")
MATRICES = ((3, 2), (2, 4), (4, 3))  # Muon orthogonalises matrices only


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
    shapes: tuple[tuple[int, ...], ...] | None = None  # the parameters' shapes (default SHAPES; Muon takes matrices)
    closure: bool = False  # step(closure) that computes the loss and gradients (LBFGS)
    state_keys: Mapping[str, str] | None = None  # Recorder(state_keys=...): v and s of an optimizer outside the table

    def __post_init__(self) -> None:
        assert self.d_check in D_CHECKS, self.d_check

    @property
    def impls(self) -> tuple[str, ...]:
        if self.cls in USER_OPTIMIZERS:
            return ("user",)
        return ("torch",) * self.theirs + ("tracer",) * self.ours

    def make(self, params, impl: str = "torch") -> torch.optim.Optimizer:
        if impl == "user":
            return USER_OPTIMIZERS[self.cls](params, **self.kwargs)
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
    C("adafactor", "Adafactor", dict(lr=0.01)),
    C("adafactor wd maximize", "Adafactor", dict(lr=0.01, weight_decay=0.1, maximize=True)),
    C("muon", "Muon", dict(lr=0.02), shapes=MATRICES),
    C("muon nesterov off wd", "Muon", dict(lr=0.02, nesterov=False, weight_decay=0.1), shapes=MATRICES),
    C("lbfgs", "LBFGS", dict(lr=0.5, max_iter=3), closure=True),
    # Written by their users (tests/user_optimizers.py), outside the family table.
    C("lion", "Lion", dict(lr=0.01, weight_decay=0.1), state_keys={"v": "exp_avg"}),
    C("schedule-free sgd", "ScheduleFreeSGD", dict(lr=0.05)),
    C("factored rms", "FactoredRMS", dict(lr=0.01), state_keys={"s": "row"}),
    C("sgd subclass overriding step", "SignSGD", dict(lr=0.01)),
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
    states: list | None = None,
) -> list[torch.Tensor]:
    """Train a tiny regression with the configuration for ``steps`` updates, traced into ``path`` (None: untraced).

    Returns the parameters (detached clones) after the last step. ``states``,
    if given, receives after each step every parameter's state, cloned
    (``{name: {key: value}}``).
    """
    generator = torch.Generator().manual_seed(1234)
    x = torch.rand(32, generator=generator) * 2 - 1
    y = 1.3 * x + 0.4 + 0.05 * torch.randn(32, generator=generator)
    params = [
        (0.1 + 0.3 * k + 0.01 * torch.arange(max(1, torch.Size(shape).numel())).reshape(shape))
        .to(config.dtype)
        .requires_grad_(True)
        for k, shape in enumerate(config.shapes or SHAPES)
    ]
    optimizer = config.make(params, impl)
    names = [f"w{k}" for k in range(len(params))]

    def loss_of():
        prediction = sum(x * p.float().reshape(-1).mean() ** (k + 1) for k, p in enumerate(params))
        return ((prediction - y) ** 2).mean()

    def closure():
        optimizer.zero_grad()
        loss = loss_of()
        loss.backward()
        return loss

    def loop(recorder=None):
        for step in range(steps):
            if config.closure:  # the closure computes the gradients, as often as the optimizer asks
                if recorder is not None:
                    recorder.note(epoch=0, batch=step)
                optimizer.step(closure)
                _keep_state(optimizer, params, names, states)
                continue
            loss = loss_of()
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
            _keep_state(optimizer, params, names, states)

    if path is None:
        loop()
    else:
        options = {"state_keys": config.state_keys, **(recorder_options or {})}
        with Recorder(optimizer, path, named_parameters=zip(names, params), **options) as recorder:
            loop(recorder)
    return [p.detach().clone() for p in params]


def _keep_state(optimizer, params, names, states) -> None:
    if states is not None:
        states.append({
            name: {key: value.clone() if isinstance(value, torch.Tensor) else value for key, value in optimizer.state.get(p, {}).items()}
            for name, p in zip(names, params)
        })
