"""Probes: d is the vector the step used, theta_next = theta - lr * d."""

from __future__ import annotations

import pytest
import torch

from tracer.errors import TracerError
from tracer.families import family_of, optimizer_name, read_group
from tracer.probes import ProbeResult

try:
    import tracer.optim as ours
except ImportError:  # pragma: no cover - tracer.optim is written concurrently
    ours = None

# Tolerance for the probes that cannot be bitwise, relative to |theta_next| + lr*|d|:
# torch's addcdiv computes (value * t1) / t2 with Adam's value = -lr / bc1 (and
# RMSprop's value = -lr) folded into the numerator, while d = t1 / t2 (scaled);
# reordering one multiply and one divide costs a few float32 roundings.
FOLDED_FACTOR_TOLERANCE = 4 * torch.finfo(torch.float32).eps

# (desc, class name, kwargs, bitwise): bitwise where torch subtracts d itself.
CONFIGS = [
    ("sgd", "SGD", dict(lr=0.01), True),
    ("sgd wd maximize", "SGD", dict(lr=0.01, weight_decay=0.1, maximize=True), True),
    ("momentum", "SGD", dict(lr=0.01, momentum=0.9), True),
    ("momentum dampening", "SGD", dict(lr=0.01, momentum=0.9, dampening=0.5), True),
    ("nesterov wd", "SGD", dict(lr=0.01, momentum=0.9, nesterov=True, weight_decay=0.01), True),
    ("rmsprop momentum", "RMSprop", dict(lr=0.01, momentum=0.9), True),
    ("rmsprop centered momentum", "RMSprop", dict(lr=0.01, momentum=0.9, centered=True), True),
    ("rmsprop", "RMSprop", dict(lr=0.01), False),
    ("rmsprop centered wd", "RMSprop", dict(lr=0.01, centered=True, weight_decay=0.1), False),
    ("adam", "Adam", dict(lr=0.01), False),
    ("adam amsgrad wd maximize", "Adam", dict(lr=0.01, amsgrad=True, weight_decay=0.1, maximize=True), False),
    ("adamw", "AdamW", dict(lr=0.01, weight_decay=0.1), False),
]


def _cases():
    for desc, cls, kwargs, bitwise in CONFIGS:
        yield pytest.param(torch.optim, cls, kwargs, bitwise, id=f"torch {desc}")
        yield pytest.param(
            ours, cls, kwargs, bitwise, id=f"tracer {desc}",
            marks=pytest.mark.skipif(ours is None, reason="tracer.optim is not there yet"),
        )


@pytest.mark.parametrize("module, cls, kwargs, bitwise", list(_cases()))
def test_direction_reproduces_the_step(module, cls, kwargs, bitwise):
    generator = torch.Generator().manual_seed(7)
    param = torch.randn(257, generator=generator).requires_grad_(True)
    optimizer = getattr(module, cls)([param], **kwargs)
    lr = kwargs["lr"]
    for _ in range(30):
        param.grad = torch.randn(257, generator=generator)
        before = param.detach().clone()
        optimizer.step()
        result = read_group(family_of(optimizer), [param.grad], [optimizer.state[param]], optimizer.param_groups[0], [before], [param.detach()])
        replayed = torch.add(before, result.d[0], alpha=-lr)
        after = param.detach()
        if bitwise:
            assert torch.equal(replayed, after)
        else:
            bound = FOLDED_FACTOR_TOLERANCE * (after.abs() + lr * result.d[0].abs())
            assert ((replayed - after).abs() <= bound).all()


def test_probe_result_is_frozen():
    result = ProbeResult(g=(torch.zeros(1),), v=None, s=None, d=(torch.zeros(1),))
    with pytest.raises(AttributeError):
        result.g = ()


@pytest.mark.parametrize(
    "make, family, name",
    [
        (lambda p: torch.optim.SGD(p, lr=0.1), "sgd", "sgd"),
        (lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9), "sgd", "momentum"),
        (lambda p: torch.optim.RMSprop(p), "rmsprop", "rmsprop"),
        (lambda p: torch.optim.Adam(p), "adam", "adam"),
        (lambda p: torch.optim.AdamW(p), "adam", "adamw"),
    ],
    ids=["sgd", "momentum", "rmsprop", "adam", "adamw"],
)
def test_family_and_name(make, family, name):
    optimizer = make([torch.zeros(2, requires_grad=True)])
    assert family_of(optimizer).name == family and optimizer_name(optimizer) == name


def test_unsupported_optimizer_is_a_clear_error():
    optimizer = torch.optim.LBFGS([torch.zeros(2, requires_grad=True)])
    with pytest.raises(TracerError, match="LBFGS.*supported are .*Adagrad"):
        family_of(optimizer)
