"""The summary reductions: the fused (compiled) pass agrees with the eager one.

The fused pass is compiled by torch.compile once per combination of present
inputs; these tests use small tensors and two combinations, so compiling
(a few seconds each on a CPU) is the bulk of their time. Speed is measured in
benchmarks/bench_recorder.py, not here.
"""

from __future__ import annotations

import math

import pytest
import torch

from tracer.summary_kernels import FUSED_COSINE_ATOL, FUSED_RTOL, REDUCTIONS, FusedReducer, reduce_eager

SQUARES = ("theta_sq", "delta_sq", "g_sq", "v_sq", "s_sq")
DOTS = {"g_dot_delta": ("g_sq", "delta_sq"), "previous_dot_delta": ("previous_sq", "delta_sq")}


def _inputs(size: int, seed: int, *, moments: bool, previous: bool):
    generator = torch.Generator().manual_seed(seed)
    theta = torch.randn(size, generator=generator)
    after = theta - 1e-3 * torch.randn(size, generator=generator)
    grad = torch.randn(size, generator=generator)
    v = torch.randn(size, generator=generator) if moments else None
    s = torch.rand(size, generator=generator) if moments else None
    prev = torch.randn(size, generator=generator) if previous else None
    return theta, after, grad, v, s, prev


def _run(reduce, theta, after, grad, g_theta, v, s, prev):
    snapshot, out = theta.clone(), torch.zeros(len(REDUCTIONS))
    reduce(snapshot, after, grad, g_theta, v, s, prev, out)
    return snapshot, dict(zip(REDUCTIONS, out.tolist()))


def test_eager_reductions_are_the_definitions():
    theta, after, grad, v, s, prev = _inputs(1000, 0, moments=True, previous=True)
    delta, got = _run(reduce_eager, theta, after, grad, 0.1, v, s, prev)
    assert torch.equal(delta, theta - after)
    g = grad + 0.1 * theta
    exact = {  # float64 references; the eager float32 BLAS sums agree to FUSED_RTOL
        "theta_sq": theta.double().square().sum(),
        "delta_sq": delta.double().square().sum(),
        "g_sq": g.double().square().sum(),
        "v_sq": v.double().square().sum(),
        "s_sq": s.double().square().sum(),
        "g_dot_delta": (g.double() * delta.double()).sum(),
        "previous_dot_delta": (prev.double() * delta.double()).sum(),
    }
    for name, value in exact.items():
        assert math.isclose(got[name], value.item(), rel_tol=FUSED_RTOL), name
    assert got["delta_abs_max"] == delta.abs().max().item()


@pytest.mark.parametrize(
    "moments, previous, g_theta, size",
    [(True, True, 0.0, 4099), (True, True, -0.01, 17), (False, False, 0.0, 1000), (False, False, 0.0, 1)],
    ids=["adam-like, previous delta", "weight decay in g", "sgd-like, first update", "one element"],
)
def test_fused_agrees_with_eager(moments, previous, g_theta, size):
    reducer = FusedReducer()
    theta, after, grad, v, s, prev = _inputs(size, 1, moments=moments, previous=previous)
    eager_delta, eager = _run(reduce_eager, theta, after, grad, g_theta, v, s, prev)
    fused_delta, fused = _run(reducer, theta, after, grad, g_theta, v, s, prev)
    assert reducer.fused, "torch.compile should work on this machine (gcc is installed)"
    assert torch.equal(fused_delta, eager_delta)  # one subtraction: bit for bit
    assert fused["delta_abs_max"] == eager["delta_abs_max"]
    present = {"v_sq": moments, "s_sq": moments}
    for name in SQUARES:
        if present.get(name, True):
            assert math.isclose(fused[name], eager[name], rel_tol=FUSED_RTOL), name
    norms = {**eager, "previous_sq": 0.0 if prev is None else prev.double().square().sum().item()}
    for name, (a, b) in DOTS.items():
        if name == "previous_dot_delta" and not previous:
            continue
        assert abs(fused[name] - eager[name]) <= FUSED_COSINE_ATOL * math.sqrt(norms[a] * norms[b]), name


def test_fused_falls_back_to_eager_when_compiling_fails():
    reducer = FusedReducer()

    def broken(*args):
        raise RuntimeError("no C++ compiler")

    reducer._compiled = broken
    theta, after, grad, v, s, prev = _inputs(100, 2, moments=True, previous=True)
    with pytest.warns(RuntimeWarning, match="could not be compiled .*no C\\+\\+ compiler.*using the eager"):
        delta, got = _run(reducer, theta, after, grad, 0.0, v, s, prev)
    assert not reducer.fused
    eager_delta, eager = _run(reduce_eager, theta, after, grad, 0.0, v, s, prev)
    assert torch.equal(delta, eager_delta) and got == eager  # the eager path itself: identical
