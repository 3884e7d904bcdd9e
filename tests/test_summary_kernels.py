"""The summary reductions: the fused (compiled) pass agrees with the eager one.

The fused pass is compiled by torch.compile once per family shape (which of
v and s exist) and chunk size; these tests use small tensors, chunks of 2 and
two families, so compiling (seconds each on a CPU) is the bulk of their time. Speed is measured in
benchmarks/bench_recorder.py, not here.
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch
import torch._dynamo
import torch._inductor.config

from tracer.summaries import REDUCTIONS
from tracer.summaries.compiled import FusedReducer
from tracer.summaries.eager import FUSED_COSINE_ATOL, FUSED_RTOL, SummaryInput, reduce_eager

SQUARES = ("theta_sq", "delta_sq", "g_sq", "previous_sq", "v_sq", "s_sq")
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
    reduce(SummaryInput(snapshot, after, grad, g_theta, v, s, prev), out)
    return snapshot, dict(zip(REDUCTIONS, out.tolist()))


def _run_fused(reducer, inputs, g_theta):
    """Every (theta, after, grad, v, s, prev) of ``inputs`` through one reducer call."""
    snapshots = [theta.clone() for theta, *_ in inputs]
    items = [SummaryInput(snap, after, grad, g_theta, v, s, prev) for snap, (_, after, grad, v, s, prev) in zip(snapshots, inputs)]
    out = torch.zeros(len(items), len(REDUCTIONS))
    reducer(items, out)
    return [(snap, dict(zip(REDUCTIONS, row))) for snap, row in zip(snapshots, out.tolist())]


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
        "previous_sq": prev.double().square().sum(),
    }
    for name, value in exact.items():
        assert math.isclose(got[name], value.item(), rel_tol=FUSED_RTOL), name
    assert got["delta_abs_max"] == delta.abs().max().item()


@pytest.mark.parametrize(
    "moments, previous, g_theta",
    [(True, True, 0.0), (True, True, -0.01), (False, False, 0.0)],
    ids=["adam-like, previous delta", "weight decay in g", "sgd-like, first update"],
)
def test_fused_agrees_with_eager(moments, previous, g_theta):
    reducer = FusedReducer(chunk=2)
    # 5 tensors: two whole chunks and a padded one; lengths 1 and 7 go the eager way.
    inputs = [_inputs(size, seed, moments=moments, previous=previous) for seed, size in enumerate([4099, 1000, 1, 7, 333])]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fused_results = _run_fused(reducer, inputs, g_theta)
    if not reducer.fused:
        # Whether inductor compiles depends on the machine (torch 2.13 cannot under
        # ATEN_CPU_CAPABILITY=default on some CPUs, can on others): the fallback itself
        # is checked, whatever the machine, by the test below.
        said = [str(w.message) for w in caught if "could not be compiled" in str(w.message)]
        assert said, "a fused pass that falls back must say so"
        pytest.skip(f"torch.compile cannot compile here: {said[0]}")
    for (theta, after, grad, v, s, prev), (fused_delta, fused) in zip(inputs, fused_results):
        eager_delta, eager = _run(reduce_eager, theta, after, grad, g_theta, v, s, prev)
        assert torch.equal(fused_delta, eager_delta)  # one subtraction: bit for bit
        assert fused["delta_abs_max"] == eager["delta_abs_max"]
        for name in SQUARES:
            if (moments or name not in ("v_sq", "s_sq")) and (previous or name != "previous_sq"):
                assert math.isclose(fused[name], eager[name], rel_tol=FUSED_RTOL), name
        norms = eager
        for name, (a, b) in DOTS.items():
            if name == "previous_dot_delta" and not previous:
                continue
            assert abs(fused[name] - eager[name]) <= FUSED_COSINE_ATOL * math.sqrt(norms[a] * norms[b]), name


@pytest.fixture
def no_cxx_compiler():
    """Inductor pointed at a C++ compiler that does not exist, its caches off: compiling fails on any machine."""
    torch._dynamo.reset()  # an earlier test's compiled chunk would otherwise be reused without compiling
    with torch._inductor.config.patch({"cpp.cxx": ("/nonexistent/c++",), "fx_graph_cache": False}):
        yield
    torch._dynamo.reset()


def test_fused_falls_back_to_eager_when_compiling_fails(no_cxx_compiler):
    reducer = FusedReducer(chunk=2)
    inputs = [_inputs(100, seed, moments=True, previous=True) for seed in range(3)]
    with pytest.warns(RuntimeWarning, match="could not be compiled .*C\\+\\+ compiler.*using the eager"):
        results = _run_fused(reducer, inputs, 0.0)
    assert not reducer.fused
    for (theta, after, grad, v, s, prev), (delta, got) in zip(inputs, results):
        eager_delta, eager = _run(reduce_eager, theta, after, grad, 0.0, v, s, prev)
        assert torch.equal(delta, eager_delta) and got == eager  # the eager path itself: identical
    # Later calls go the eager way at once, without trying to compile again.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = _run_fused(reducer, inputs, 0.0)
    assert [got for _, got in again] == [got for _, got in results]
