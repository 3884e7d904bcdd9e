"""Hand-written optimizers that match torch.optim bit for bit.

``SGD``, ``RMSprop``, ``Adam`` and ``AdamW`` take torch's arguments and
defaults (without foreach, fused, capturable and differentiable), subclass
``torch.optim.Optimizer`` (so lr schedulers, parameter groups, closures, hooks
and state_dict work) and keep torch's state keys, so a state_dict moves
between ours and torch's in both directions. Each algorithm is written out in
one single-tensor function (``sgd_update``, ``rmsprop_update``,
``adam_update``) with the operations in the order of torch's for-loop
implementation, which is what makes the results bitwise equal.

``build_optimizer`` makes one by name, ours or torch's. (Which algorithm an
optimizer instance runs, ours or torch's, is ``tracer.families.family_of``: the
recorder's business, not the optimizers'.)
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch.optim.optimizer import ParamsT

from tracer.errors import TracerError
from tracer.optim.adam import Adam, AdamW, adam_update
from tracer.optim.rmsprop import RMSprop, rmsprop_update
from tracer.optim.sgd import SGD, sgd_update

__all__ = [
    "IMPLEMENTATIONS",
    "LABEL_NAMES",
    "OPTIMIZER_NAMES",
    "SGD",
    "Adam",
    "AdamW",
    "RMSprop",
    "adam_update",
    "build_optimizer",
    "rmsprop_update",
    "sgd_update",
]

LABEL_NAMES = {"sgd": "SGD", "momentum": "Momentum", "rmsprop": "RMSprop", "adam": "Adam", "adamw": "AdamW"}
"""Each optimizer name as a legend writes it (``tracer.run.default_label``: "Adam lr=0.01")."""
OPTIMIZER_NAMES = tuple(LABEL_NAMES)
IMPLEMENTATIONS = ("tracer", "torch")

_TRACER_CLASSES: dict[str, type[torch.optim.Optimizer]] = {
    "sgd": SGD,
    "momentum": SGD,
    "rmsprop": RMSprop,
    "adam": Adam,
    "adamw": AdamW,
}
_TORCH_CLASSES: dict[str, type[torch.optim.Optimizer]] = {
    "sgd": torch.optim.SGD,
    "momentum": torch.optim.SGD,
    "rmsprop": torch.optim.RMSprop,
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
}
# Names that are an algorithm with some hyperparameters preset (overridable).
_PRESETS: dict[str, dict[str, Any]] = {"momentum": {"momentum": 0.9, "dampening": 0}}


def build_optimizer(
    name: str, params: ParamsT, *, impl: str = "tracer", **hyperparameters: Any
) -> torch.optim.Optimizer:
    """Make the optimizer called `name` over `params`.

    Args:
        name: one of OPTIMIZER_NAMES. "momentum" is SGD with momentum 0.9
            (overridable) and dampening 0; "sgd" is SGD (momentum 0 unless given).
        params: parameters or parameter groups, as for any torch optimizer.
        impl: "tracer" for ours, "torch" for torch.optim's with foreach=False
            (its for-loop implementation, the one ours matches bit for bit).
        **hyperparameters: the class's keyword arguments (lr, betas, ...).

    Raises:
        TracerError: unknown name, impl or hyperparameter; the message lists
            the accepted ones. Invalid values (lr < 0, ...) raise ValueError
            from the optimizer's own checks.

    Examples:
        >>> import torch
        >>> weights = [torch.zeros(3, requires_grad=True)]
        >>> optimizer = build_optimizer("momentum", weights, lr=0.01)
        >>> type(optimizer).__name__, optimizer.defaults["momentum"]
        ('SGD', 0.9)
        >>> type(build_optimizer("adam", weights, impl="torch")).__module__
        'torch.optim.adam'
    """
    if name not in OPTIMIZER_NAMES:
        raise TracerError(
            f"unknown optimizer {name!r}; expected one of: {', '.join(OPTIMIZER_NAMES)}"
        )
    if impl not in IMPLEMENTATIONS:
        raise TracerError(
            f"unknown optimizer implementation {impl!r}; "
            f"expected one of: {', '.join(IMPLEMENTATIONS)}"
        )
    accepted = [
        argument
        for argument in inspect.signature(_TRACER_CLASSES[name]).parameters
        if argument != "params"
    ]
    unknown = sorted(set(hyperparameters) - set(accepted))
    if unknown:
        raise TracerError(
            f"unknown hyperparameter(s) {', '.join(unknown)} for optimizer {name!r}; "
            f"expected some of: {', '.join(accepted)}"
        )
    arguments = {**_PRESETS.get(name, {}), **hyperparameters}
    if impl == "torch":
        return _TORCH_CLASSES[name](params, foreach=False, **arguments)
    return _TRACER_CLASSES[name](params, **arguments)
