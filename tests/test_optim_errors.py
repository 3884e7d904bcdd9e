"""Invalid input fails eagerly with the error torch raises, and a plain message.

The cases are data (like torch's OptimizerErrorInput): the optimizer, its
keyword arguments, the error type and a regex for the message. One generic
test runs every case against ours and, where torch has the same check,
against torch's, to show that the behaviour is the same.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pytest
import torch
from optim_configs import TORCH_CLASSES, TRACER_CLASSES

import tracer.optim
from tracer.errors import TracerError


@dataclass(frozen=True)
class ErrorCase:
    name: str  # key of TRACER_CLASSES
    kwargs: dict[str, Any]
    error: type[Exception]
    message: str  # regex searched in the message, which must match torch's too
    desc: str

    @property
    def id(self) -> str:
        return f"{self.name}-{self.desc}"


CONSTRUCTOR_ERRORS = [
    ErrorCase("sgd", {"lr": -1.0}, ValueError, r"Invalid learning rate: -1\.0", "negative-lr"),
    ErrorCase(
        "sgd",
        {"lr": torch.tensor([0.1, 0.2])},
        ValueError,
        r"Tensor lr must be 1-element",
        "tensor-lr-2-elements",
    ),
    ErrorCase(
        "sgd", {"momentum": -0.5}, ValueError, r"Invalid momentum value: -0\.5", "negative-momentum"
    ),
    ErrorCase(
        "sgd",
        {"weight_decay": -0.1},
        ValueError,
        r"Invalid weight_decay value: -0\.1",
        "negative-weight-decay",
    ),
    ErrorCase(
        "sgd",
        {"nesterov": True},
        ValueError,
        r"Nesterov momentum requires a momentum and zero dampening",
        "nesterov-without-momentum",
    ),
    ErrorCase(
        "sgd",
        {"nesterov": True, "momentum": 0.9, "dampening": 0.1},
        ValueError,
        r"Nesterov momentum requires a momentum and zero dampening",
        "nesterov-with-dampening",
    ),
    ErrorCase(
        "rmsprop", {"lr": -1e-3}, ValueError, r"Invalid learning rate: -0\.001", "negative-lr"
    ),
    ErrorCase(
        "rmsprop", {"eps": -1e-8}, ValueError, r"Invalid epsilon value: -1e-08", "negative-eps"
    ),
    ErrorCase(
        "rmsprop",
        {"momentum": -0.1},
        ValueError,
        r"Invalid momentum value: -0\.1",
        "negative-momentum",
    ),
    ErrorCase(
        "rmsprop",
        {"weight_decay": -1.0},
        ValueError,
        r"Invalid weight_decay value: -1\.0",
        "negative-weight-decay",
    ),
    ErrorCase(
        "rmsprop", {"alpha": -0.99}, ValueError, r"Invalid alpha value: -0\.99", "negative-alpha"
    ),
    ErrorCase("adam", {"lr": -1e-3}, ValueError, r"Invalid learning rate: -0\.001", "negative-lr"),
    ErrorCase("adam", {"eps": -1.0}, ValueError, r"Invalid epsilon value: -1\.0", "negative-eps"),
    ErrorCase(
        "adam",
        {"betas": (1.0, 0.999)},
        ValueError,
        r"Invalid beta parameter at index 0: 1\.0",
        "beta1-is-1",
    ),
    ErrorCase(
        "adam",
        {"betas": (-0.1, 0.999)},
        ValueError,
        r"Invalid beta parameter at index 0: -0\.1",
        "beta1-negative",
    ),
    ErrorCase(
        "adam",
        {"betas": (0.9, 1.5)},
        ValueError,
        r"Invalid beta parameter at index 1: 1\.5",
        "beta2-above-1",
    ),
    ErrorCase(
        "adam",
        {"betas": (0.9, -1e-3)},
        ValueError,
        r"Invalid beta parameter at index 1: -0\.001",
        "beta2-negative",
    ),
    ErrorCase(
        "adam",
        {"weight_decay": -0.1},
        ValueError,
        r"Invalid weight_decay value: -0\.1",
        "negative-weight-decay",
    ),
    ErrorCase(
        "adam",
        {"betas": (0.9, torch.tensor(0.999))},
        ValueError,
        r"betas must be either both floats or both Tensors",
        "mixed-betas",
    ),
    ErrorCase("adamw", {"lr": -1.0}, ValueError, r"Invalid learning rate: -1\.0", "negative-lr"),
    ErrorCase(
        "adamw",
        {"betas": (0.9, 1.0)},
        ValueError,
        r"Invalid beta parameter at index 1: 1\.0",
        "beta2-is-1",
    ),
    ErrorCase(
        "adamw",
        {"weight_decay": -1e-2},
        ValueError,
        r"Invalid weight_decay value: -0\.01",
        "negative-weight-decay",
    ),
]


def _make(impl: str, case: ErrorCase) -> torch.optim.Optimizer:
    params = [torch.zeros(3, requires_grad=True)]
    if impl == "torch":
        return TORCH_CLASSES[case.name](params, foreach=False, **case.kwargs)
    return TRACER_CLASSES[case.name](params, **case.kwargs)


@pytest.mark.parametrize("impl", ("tracer", "torch"))
@pytest.mark.parametrize("case", CONSTRUCTOR_ERRORS, ids=lambda case: case.id)
def test_invalid_hyperparameters_raise_eagerly_like_torch(case, impl):
    with pytest.raises(case.error, match=case.message):
        _make(impl, case)


@pytest.mark.parametrize("case", CONSTRUCTOR_ERRORS, ids=lambda case: case.id)
def test_our_messages_say_what_is_accepted(case):
    """Beyond torch's text, ours name the value received and, for range checks, what is accepted."""
    with pytest.raises(case.error) as raised:
        _make("tracer", case)
    message = str(raised.value)
    assert "\n" not in message
    if "Invalid" in message:
        assert re.search(r"\(expected .+\)$", message), message


# ---------------------------------------------------------------- sparse gradients


def _sparse_grad_param() -> torch.Tensor:
    param = torch.zeros(4, requires_grad=True)
    param.grad = torch.sparse_coo_tensor([[0, 2]], [1.0, -2.0], (4,), check_invariants=True)
    return param


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("rmsprop", r"RMSprop does not support sparse gradients"),
        ("adam", r"Adam does not support sparse gradients"),
        ("adamw", r"does not support sparse gradients"),
    ],
)
@pytest.mark.parametrize("impl", ("tracer", "torch"))
def test_sparse_gradients_raise_like_torch_and_change_nothing(name, message, impl):
    dense = torch.ones(2, requires_grad=True)
    dense.grad = torch.ones(2)
    params = [dense, _sparse_grad_param()]
    classes = TORCH_CLASSES if impl == "torch" else TRACER_CLASSES
    optimizer = classes[name](params, **({"foreach": False} if impl == "torch" else {}))
    with pytest.raises(RuntimeError, match=message):
        optimizer.step()
    # The whole group is checked before anything is updated.
    assert torch.equal(dense, torch.ones(2))


@pytest.mark.parametrize("momentum", (0.0, 0.9))
def test_sgd_supports_sparse_gradients_like_torch(momentum):
    ours, theirs = _sparse_grad_param(), _sparse_grad_param()
    tracer.optim.SGD([ours], lr=0.1, momentum=momentum).step()
    torch.optim.SGD([theirs], lr=0.1, momentum=momentum, foreach=False).step()
    assert torch.equal(ours, theirs)


# ---------------------------------------------------------------- build_optimizer

BUILD_ERRORS = [
    (
        {"name": "adagrad"},
        r"unknown optimizer 'adagrad'; expected one of: sgd, momentum, rmsprop, adam, adamw",
    ),
    (
        {"name": "adam", "impl": "jax"},
        r"unknown optimizer implementation 'jax'; expected one of: tracer, torch",
    ),
    (
        {"name": "adam", "bettas": (0.9, 0.99)},
        r"unknown hyperparameter\(s\) bettas for optimizer 'adam'; expected some of: lr, betas, eps",
    ),
    ({"name": "sgd", "foreach": True}, r"unknown hyperparameter\(s\) foreach for optimizer 'sgd'"),
]


@pytest.mark.parametrize(("arguments", "message"), BUILD_ERRORS, ids=lambda value: str(value)[:40])
def test_build_optimizer_rejects_unknown_names_with_the_valid_choices(arguments, message):
    with pytest.raises(TracerError, match=message) as raised:
        tracer.optim.build_optimizer(params=[torch.zeros(1, requires_grad=True)], **arguments)
    assert "\n" not in str(raised.value)
