"""Summary granularity against full granularity: the same run, the summaries from the full columns."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tracer import Recorder, load_trace
from tracer.testing import record_small_run

# Summaries measure d from the displacement, d = (theta - theta_next) / lr,
# in float32 (one rounding per step plus the float32 subtraction), while the
# full columns recompute d in the optimizer's op order: they agree to a few
# float32 ulps of theta relative to the step, not bit for bit.
MEASURED_D_TOLERANCE = 1e-4
# Norms and dot products reduced in float32 against float64 sums of the same values.
NORM_TOLERANCE = 1e-5

SHAPES = ((3, 2), (4,))
CONFIGS = [
    ("sgd wd maximize", "SGD", dict(lr=0.05, weight_decay=0.1, maximize=True)),
    ("momentum", "SGD", dict(lr=0.05, momentum=0.9)),
    ("nesterov wd", "SGD", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01)),
    ("rmsprop centered momentum wd", "RMSprop", dict(lr=0.01, centered=True, momentum=0.5, weight_decay=0.01)),
    ("rmsprop", "RMSprop", dict(lr=0.01)),
    ("adam amsgrad wd maximize", "Adam", dict(lr=0.01, amsgrad=True, weight_decay=0.1, maximize=True)),
    ("adamw", "AdamW", dict(lr=0.01, weight_decay=0.1)),
    ("adam fused", "Adam", dict(lr=0.01, fused=True)),
]


def _full_columns(trace, name, numel, quantity):
    return np.stack([trace[f"{name}[{k}].{quantity}"] for k in range(numel)], axis=1)


def _cosine(a, b):
    return (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.mark.parametrize("cls, kwargs", [(c, k) for _, c, k in CONFIGS], ids=[d for d, _, _ in CONFIGS])
def test_summaries_agree_with_the_full_trace(tmp_path, cls, kwargs):
    make = lambda params: getattr(torch.optim, cls)(params, **kwargs)
    full_path, summary_path = tmp_path / "full.trace.csv", tmp_path / "summary.trace.csv"
    record_small_run(make, full_path, shapes=SHAPES)
    record_small_run(make, summary_path, shapes=SHAPES, recorder_options={"granularity": "summary"})
    full, summary = load_trace(full_path), load_trace(summary_path)
    lr = kwargs["lr"]
    for k, shape in enumerate(SHAPES):
        name, numel = f"w{k}", math.prod(shape)
        columns = {q: _full_columns(full, name, numel, q) for q in ("theta", "g", "v", "s", "d")}
        close = lambda quantity, expected, rtol=NORM_TOLERANCE: np.testing.assert_allclose(
            summary[f"{name}.{quantity}"], expected, rtol=rtol, atol=0, err_msg=quantity
        )
        close("theta_norm", np.linalg.norm(columns["theta"], axis=1))
        close("g_norm", np.linalg.norm(columns["g"], axis=1))
        for quantity in ("v", "s"):
            if np.isnan(columns[quantity]).all():
                assert np.isnan(summary[f"{name}.{quantity}_norm"]).all()
            else:
                close(f"{quantity}_norm", np.linalg.norm(columns[quantity], axis=1))
        d = columns["d"]
        close("d_norm", np.linalg.norm(d, axis=1), MEASURED_D_TOLERANCE)
        close("displacement", lr * np.linalg.norm(d, axis=1), MEASURED_D_TOLERANCE)
        close("d_max", np.abs(d).max(axis=1), MEASURED_D_TOLERANCE)
        close("cos_g_d", _cosine(columns["g"], d), MEASURED_D_TOLERANCE)
        assert np.isnan(summary[f"{name}.cos_d_prev"][0])
        close("cos_d_prev", np.concatenate([[np.nan], _cosine(d[1:], d[:-1])]), MEASURED_D_TOLERANCE)


def test_summary_with_zero_learning_rate_leaves_d_empty(tmp_path):
    path = tmp_path / "zero.trace.csv"

    def make(params):
        optimizer = torch.optim.SGD(params, lr=0.1, momentum=0.9)
        # lr = 0 for the first 3 updates, then 0.1: d cannot be measured while theta does not move.
        torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.0 if step < 3 else 1.0)
        return optimizer

    record_small_run(make, path, steps=3, shapes=SHAPES, recorder_options={"granularity": "summary"})
    trace = load_trace(path)
    assert (trace["lr"] == 0).all() and (trace["w0.displacement"] == 0).all() and (trace["step_size"] == 0).all()
    for quantity in ("d_norm", "d_max", "cos_g_d", "cos_d_prev"):
        assert np.isnan(trace[f"w0.{quantity}"]).all(), quantity
    assert np.isfinite(trace["w0.g_norm"]).all() and np.isfinite(trace["w0.v_norm"]).all()


def test_half_precision_summaries_are_reduced_in_float32(tmp_path):
    # |theta|^2 = 100 * 300^2 overflows float16 (largest 65504): the reductions run in float32.
    param = torch.full((100,), 300.0, dtype=torch.float16, requires_grad=True)
    optimizer = torch.optim.SGD([param], lr=0.5)
    path = tmp_path / "half.trace.csv"
    with Recorder(optimizer, path, granularity="summary"):
        for _ in range(2):
            param.grad = torch.ones(100, dtype=torch.float16)
            optimizer.step()
    trace = load_trace(path)
    assert trace.status == "complete"
    np.testing.assert_allclose(trace["p0.theta_norm"], [3000.0, 2995.0], rtol=1e-6)
    np.testing.assert_allclose(trace["p0.g_norm"], [10.0, 10.0], rtol=1e-6)
    np.testing.assert_allclose(trace["p0.d_norm"], [10.0, 10.0], rtol=1e-6)
    np.testing.assert_allclose(trace["p0.d_max"], [1.0, 1.0], rtol=1e-6)
    np.testing.assert_allclose(trace["p0.cos_d_prev"][1:], [1.0], rtol=1e-6)


def test_cosines_stay_within_minus_one_and_one(tmp_path):
    # A constant gradient in an awkward direction: every d is parallel to the
    # previous one and to g, and float32 reductions of the dot product and of
    # the norms round differently, which used to give cosines of 1 + a few ulp.
    generator = torch.Generator().manual_seed(3)
    direction = torch.randn(1000, generator=generator)
    param = torch.zeros(1000, requires_grad=True)
    optimizer = torch.optim.SGD([param], lr=0.1)
    path = tmp_path / "parallel.trace.csv"
    with Recorder(optimizer, path, granularity="summary"):
        for _ in range(20):
            param.grad = direction.clone()
            optimizer.step()
    trace = load_trace(path)
    for column in ("p0.cos_d_prev", "p0.cos_g_d"):
        values = trace[column][np.isfinite(trace[column])]
        assert values.size and np.all(np.abs(values) <= 1.0), column
        np.testing.assert_allclose(values, 1.0, rtol=1e-5)
