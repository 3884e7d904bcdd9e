"""The recorder on every optimizer family, ours and torch's: it must not change training."""

from __future__ import annotations

import math

import pytest
import torch

from tracer import load_trace
from tracer.testing import record_small_run

try:
    import tracer.optim as ours
except ImportError:  # pragma: no cover - tracer.optim is written concurrently
    ours = None

# (desc, torch.optim class, keyword arguments). Every configuration runs with
# torch's class and, where ours accepts the flags, with tracer.optim's class.
CONFIGS = [
    ("sgd", "SGD", dict(lr=0.05)),
    ("sgd wd maximize", "SGD", dict(lr=0.05, weight_decay=0.1, maximize=True)),
    ("momentum", "SGD", dict(lr=0.05, momentum=0.9)),
    ("momentum dampening", "SGD", dict(lr=0.05, momentum=0.9, dampening=0.3)),
    ("nesterov wd", "SGD", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01)),
    ("rmsprop", "RMSprop", dict(lr=0.01)),
    ("rmsprop centered", "RMSprop", dict(lr=0.01, centered=True)),
    ("rmsprop centered momentum wd", "RMSprop", dict(lr=0.01, centered=True, momentum=0.5, weight_decay=0.01)),
    ("adam", "Adam", dict(lr=0.01)),
    ("adam amsgrad wd maximize", "Adam", dict(lr=0.01, amsgrad=True, weight_decay=0.1, maximize=True)),
    ("adamw", "AdamW", dict(lr=0.01, weight_decay=0.1)),
    ("adamw amsgrad", "AdamW", dict(lr=0.01, amsgrad=True)),
]
# torch-only flags: other implementations of the same algorithms.
TORCH_ONLY = [
    ("sgd foreach momentum", "SGD", dict(lr=0.05, momentum=0.9, foreach=True)),
    ("rmsprop foreach centered", "RMSprop", dict(lr=0.01, centered=True, foreach=True)),
    ("adam foreach", "Adam", dict(lr=0.01, foreach=True)),
    ("adam fused", "Adam", dict(lr=0.01, fused=True)),
    ("adamw fused amsgrad", "AdamW", dict(lr=0.01, fused=True, amsgrad=True)),
]


def _cases():
    for desc, cls, kwargs in CONFIGS + TORCH_ONLY:
        yield pytest.param("torch", cls, kwargs, id=f"torch {desc}")
    for desc, cls, kwargs in CONFIGS:
        yield pytest.param(
            "tracer", cls, kwargs, id=f"tracer {desc}",
            marks=pytest.mark.skipif(ours is None, reason="tracer.optim is not there yet"),
        )


def factory(impl: str, cls: str, kwargs: dict):
    module = torch.optim if impl == "torch" else ours
    return lambda params: getattr(module, cls)(params, **kwargs)


@pytest.mark.parametrize("impl, cls, kwargs", list(_cases()))
@pytest.mark.parametrize("granularity", ["full", "summary"])
def test_tracing_does_not_change_training(tmp_path, impl, cls, kwargs, granularity):
    make = factory(impl, cls, kwargs)
    shapes = ((), ()) if granularity == "full" else ((3, 2), (4,))
    untraced = record_small_run(make, None, shapes=shapes)
    path = tmp_path / "run.trace.csv"
    traced = record_small_run(make, path, shapes=shapes, recorder_options={"granularity": granularity})
    for a, b in zip(traced, untraced):
        assert torch.equal(a, b)
    trace = load_trace(path)
    assert len(trace) == 24 and trace.status == "complete"
    assert list(trace["update"]) == list(range(1, 25))
    if granularity == "full":
        assert trace.final == {"w0": traced[0].item(), "w1": traced[1].item()}
        # theta_next of one row is theta of the next one: the trace is the run.
        assert trace["w0.theta"][1:].tolist() == [float(v) for v in _thetas(trace, "w0")[1:]]
    # step_size is lr * |d| and the measured displacement agrees with it.
    step, moved = trace["step_size"], trace["displacement"]
    assert ((step - moved).__abs__() <= 1e-5 * step + 1e-7).all()


def _thetas(trace, coordinate):
    return trace[f"{coordinate}.theta"]


@pytest.mark.parametrize("cls, kwargs", [(c, k) for _, c, k in CONFIGS], ids=[d for d, _, _ in CONFIGS])
def test_empty_cells_where_the_optimizer_has_no_such_quantity(tmp_path, cls, kwargs):
    path = tmp_path / "run.trace.csv"
    record_small_run(factory("torch", cls, kwargs), path, steps=3)
    trace = load_trace(path)
    momentum = kwargs.get("momentum", 0) > 0 or cls in ("Adam", "AdamW")
    assert bool(math.isnan(trace["w0.v"][0])) == (not momentum)
    assert bool(math.isnan(trace["w0.s"][0])) == (cls == "SGD")
    assert not math.isnan(trace["w0.g"][0]) and not math.isnan(trace["w0.d"][0])
    u = [trace["w0.u"][0], trace["w1.u"][0]]
    assert math.hypot(*u) == pytest.approx(1.0, abs=1e-12)
