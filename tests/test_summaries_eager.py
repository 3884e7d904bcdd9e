"""The eager summary pass is the definitions of the reductions (tracer.summaries), against float64 sums.

The native pass is tested against it (tests/test_native_summaries.py).
"""

from __future__ import annotations

import math

import torch

from tracer.summaries import REDUCTIONS
from tracer.summaries.eager import PASSES_RTOL, SummaryInput, reduce_eager


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


def test_eager_reductions_are_the_definitions():
    theta, after, grad, v, s, prev = _inputs(1000, 0, moments=True, previous=True)
    delta, got = _run(reduce_eager, theta, after, grad, 0.1, v, s, prev)
    assert torch.equal(delta, theta - after)
    g = grad + 0.1 * theta
    exact = {  # float64 references; the eager float32 BLAS sums agree to PASSES_RTOL
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
        assert math.isclose(got[name], value.item(), rel_tol=PASSES_RTOL), name
    assert got["delta_abs_max"] == delta.abs().max().item()
