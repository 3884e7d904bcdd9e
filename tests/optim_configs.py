"""The optimizer configurations the tests run, kept as data, and the harness that runs them.

Like torch's OptimizerInfo (torch/testing/_internal/common_optimizers.py):
each configuration is a record with a readable id used as the pytest id. The
flag axes below are the documented flags of each optimizer; their product is
every flag combination. The harness runs ours and torch's side by side through
the public `tracer.testing.assert_optimizers_match`, which compares parameters
and every state tensor after every step.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.optim import lr_scheduler

import tracer.optim
from tracer.optimizer_check import bitwise_equal
from tracer.testing import assert_optimizers_match

TRACER_CLASSES: dict[str, type[torch.optim.Optimizer]] = {
    "sgd": tracer.optim.SGD,
    "rmsprop": tracer.optim.RMSprop,
    "adam": tracer.optim.Adam,
    "adamw": tracer.optim.AdamW,
}
TORCH_CLASSES: dict[str, type[torch.optim.Optimizer]] = {
    "sgd": torch.optim.SGD,
    "rmsprop": torch.optim.RMSprop,
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
}
# Which of torch's faster variants exist on the CPU for each class (checked on torch 2.13).
TORCH_FAST_VARIANTS: dict[str, tuple[str, ...]] = {
    "sgd": ("foreach", "fused"),
    "rmsprop": ("foreach",),  # torch.optim.RMSprop has no fused implementation
    "adam": ("foreach", "fused"),
    "adamw": ("foreach", "fused"),
}


@dataclass(frozen=True)
class OptimConfig:
    """One optimizer with one set of keyword arguments; `id` names it in test output."""

    name: str  # key of TRACER_CLASSES / TORCH_CLASSES
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        described = [
            key if value is True else f"{key}={value}"
            for key, value in self.kwargs.items()
            if value is not False and key != "lr"
        ]
        return "-".join([self.name, *described]) if described else f"{self.name}-defaults"

    def make(self, params: Iterable, impl: str = "tracer", **extra: Any) -> torch.optim.Optimizer:
        """Ours (impl="tracer") or torch's (impl="torch", with `extra` such as foreach=False)."""
        classes = TRACER_CLASSES if impl == "tracer" else TORCH_CLASSES
        # Tensor hyperparameters are copied: schedulers change a tensor lr in place.
        kwargs = {key: _fresh_copy(value) for key, value in self.kwargs.items()}
        return classes[self.name](params, **kwargs, **extra)


def _fresh_copy(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.clone()
    if isinstance(value, tuple):
        return tuple(_fresh_copy(item) for item in value)
    return value


def _product(
    name: str, base: Mapping[str, Any], axes: Sequence[Sequence[Mapping[str, Any]]]
) -> list[OptimConfig]:
    """One config per combination of one choice from each axis (a choice is a dict of kwargs)."""
    return [
        OptimConfig(name, {**base, **{k: v for choice in choices for k, v in choice.items()}})
        for choices in itertools.product(*axes)
    ]


LR = 0.01
WEIGHT_DECAY_AXIS = ({}, {"weight_decay": 0.1})
MAXIMIZE_AXIS = ({}, {"maximize": True})

# Every flag combination of every optimizer (without a scheduler).
SGD_CONFIGS = _product(
    "sgd",
    {"lr": LR},
    [
        (
            {},
            {"dampening": 0.1},  # dampening without momentum: accepted, no effect
            {"momentum": 0.9},
            {"momentum": 0.9, "nesterov": True},
            {"momentum": 0.9, "dampening": 0.1},
        ),
        WEIGHT_DECAY_AXIS,
        MAXIMIZE_AXIS,
    ],
)
RMSPROP_CONFIGS = _product(
    "rmsprop",
    {"lr": LR},
    [
        ({}, {"momentum": 0.5}),
        ({}, {"centered": True}),
        WEIGHT_DECAY_AXIS,
        MAXIMIZE_AXIS,
    ],
) + [
    OptimConfig("rmsprop", {"lr": LR, "alpha": 0.9, "eps": 1e-6, "momentum": 0.9, "centered": True})
]
ADAM_CONFIGS = _product(
    "adam",
    {"lr": LR},
    [
        ({}, {"amsgrad": True}),
        ({}, {"weight_decay": 0.1}, {"weight_decay": 0.1, "decoupled_weight_decay": True}),
        MAXIMIZE_AXIS,
    ],
) + [OptimConfig("adam", {"lr": LR, "betas": (0.8, 0.99), "eps": 1e-6, "amsgrad": True})]
ADAMW_CONFIGS = _product(
    "adamw",
    {"lr": LR},
    [
        ({}, {"amsgrad": True}),
        ({}, {"weight_decay": 0.0}, {"weight_decay": 0.1}),  # {} is AdamW's default 1e-2
        MAXIMIZE_AXIS,
    ],
)
ALL_CONFIGS = SGD_CONFIGS + RMSPROP_CONFIGS + ADAM_CONFIGS + ADAMW_CONFIGS

# One representative per algorithm, with most of its flags on, for the schedulers.
REPRESENTATIVE_CONFIGS = [
    OptimConfig("sgd", {"lr": LR, "weight_decay": 0.1}),
    OptimConfig("sgd", {"lr": LR, "momentum": 0.9, "nesterov": True, "weight_decay": 0.1}),
    OptimConfig("rmsprop", {"lr": LR, "momentum": 0.5, "centered": True, "weight_decay": 0.1}),
    OptimConfig("adam", {"lr": LR, "amsgrad": True, "weight_decay": 0.1}),
    OptimConfig("adamw", {"lr": LR, "amsgrad": True}),
]

# Against torch's foreach and fused variants (slower to run on the CPU, and
# only within a tolerance): the representatives plus the flags they leave off.
FAST_VARIANT_CONFIGS = REPRESENTATIVE_CONFIGS + [
    OptimConfig("sgd", {"lr": LR, "momentum": 0.9, "dampening": 0.1, "maximize": True}),
    OptimConfig("rmsprop", {"lr": LR, "weight_decay": 0.1, "maximize": True}),
    OptimConfig(
        "adam", {"lr": LR, "weight_decay": 0.1, "decoupled_weight_decay": True, "maximize": True}
    ),
    OptimConfig("adamw", {"lr": LR, "maximize": True}),
]

STEPS = 25

# Each scheduler with arguments that make lr (and, for OneCycleLR, momentum or
# beta1) change several times within STEPS steps.
SCHEDULERS: dict[str, Callable[[torch.optim.Optimizer], lr_scheduler.LRScheduler]] = {
    "StepLR": lambda opt: lr_scheduler.StepLR(opt, step_size=5, gamma=0.5),
    "MultiStepLR": lambda opt: lr_scheduler.MultiStepLR(opt, milestones=[3, 10, 18], gamma=0.3),
    "ExponentialLR": lambda opt: lr_scheduler.ExponentialLR(opt, gamma=0.9),
    "LinearLR": lambda opt: lr_scheduler.LinearLR(opt, start_factor=0.25, total_iters=10),
    "MultiplicativeLR": lambda opt: lr_scheduler.MultiplicativeLR(
        opt, lr_lambda=lambda epoch: 0.95
    ),
    "LambdaLR": lambda opt: lr_scheduler.LambdaLR(opt, lr_lambda=lambda epoch: 1.0 / (1.0 + epoch)),
    "CosineAnnealingLR": lambda opt: lr_scheduler.CosineAnnealingLR(opt, T_max=10, eta_min=1e-4),
    "OneCycleLR": lambda opt: lr_scheduler.OneCycleLR(opt, max_lr=0.05, total_steps=STEPS),
}

SHAPE_SETS: dict[str, list[tuple[int, ...]]] = {
    "one-tensor": [(7, 5)],
    "several-tensors": [(4,), (3, 5), (2, 3, 4), ()],
}
DTYPES = (torch.float32, torch.float64)


# ---------------------------------------------------------------- the harness


def make_params(
    shapes: Sequence[tuple[int, ...]], dtype: torch.dtype, seed: int = 0
) -> list[torch.Tensor]:
    """Deterministic pseudo-random leaf tensors; call twice for two identical sets."""
    generator = torch.Generator().manual_seed(seed)
    return [
        torch.randn(shape, generator=generator, dtype=dtype).requires_grad_() for shape in shapes
    ]


def set_grads(param_sets: Sequence[Sequence[torch.Tensor]], step: int, seed: int = 0) -> None:
    """Give the parameters of every set the same fresh gradients for this step.

    Gradients change every step (the generator is seeded by step) and in
    scale, so the running averages see varied inputs.
    """
    generator = torch.Generator().manual_seed(1_000_003 * seed + step)
    for index, reference in enumerate(param_sets[0]):
        grad = torch.randn(reference.shape, generator=generator, dtype=reference.dtype)
        grad.mul_(1.0 + (step + index) % 3)
        for params in param_sets:
            params[index].grad = grad.clone()


def assert_bitwise_equal_optimizers(
    ours: torch.optim.Optimizer, theirs: torch.optim.Optimizer, context: str = ""
) -> None:
    """Parameters, every state tensor (keys, dtypes, values) and group hyperparameters are identical."""
    assert len(ours.param_groups) == len(theirs.param_groups)
    for group_ours, group_theirs in zip(ours.param_groups, theirs.param_groups, strict=True):
        for key in ("lr", "momentum", "betas"):
            if key in group_ours:
                assert group_ours[key] == group_theirs[key], f"{context}: group {key}"
        for index, (p_ours, p_theirs) in enumerate(
            zip(group_ours["params"], group_theirs["params"], strict=True)
        ):
            assert bitwise_equal(p_ours, p_theirs), f"{context}: parameter {index} differs"
            state_ours, state_theirs = ours.state.get(p_ours, {}), theirs.state.get(p_theirs, {})
            assert state_ours.keys() == state_theirs.keys(), (
                f"{context}: state keys of parameter {index}"
            )
            for key, value in state_theirs.items():
                assert value.dtype == state_ours[key].dtype, f"{context}: dtype of {key}"
                assert bitwise_equal(state_ours[key], value), (
                    f"{context}: state {key} of parameter {index} differs"
                )


def run_side_by_side(
    config: OptimConfig,
    dtype: torch.dtype,
    shapes: Sequence[tuple[int, ...]],
    *,
    steps: int = STEPS,
    schedulers: Sequence[str] = (),
    reference: Mapping[str, Any] = {"foreach": False},  # noqa: B006 (read only)
    ulps: float = 0,
    seed: int = 0,
) -> None:
    """Step ours and torch's (with `reference` options) `steps` times, comparing after every step.

    The comparison is the public `tracer.testing.assert_optimizers_match`
    (parameters, every state tensor, the groups' lr, momentum and betas;
    ulps=0: bit for bit); on top of it the two must keep the same state keys.
    It runs once without a scheduler and once with each of `schedulers`
    (names in SCHEDULERS).
    """
    result = assert_optimizers_match(
        TRACER_CLASSES[config.name],
        functools.partial(TORCH_CLASSES[config.name], **reference),
        configs=[config.kwargs],
        shapes=shapes,
        dtypes=[dtype],
        steps=steps,
        schedulers={name: SCHEDULERS[name] for name in schedulers},
        ulps=ulps,
        seed=seed,
    )
    assert not (result.only_in_candidate or result.only_in_reference), result.report()
