"""Summary granularity against full granularity: the same run, the summaries from the full columns."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tracer import Recorder, load_trace
from tracer.testing import record_small_run
from traced_configs import cases, run

# Summaries measure d from the displacement, d = (theta - theta_next) / lr,
# while the full columns recompute d in the optimizer's op order (or measure
# it in float64): theta_next is the exact step rounded to the parameters'
# dtype, so a measured |delta| is off by up to half an ulp of theta per
# coordinate, eps * |theta| in norm, plus a few roundings relative to the step.
MEASURED_D_TOLERANCE = 1e-4
MEASURED_D_ULPS = 1.0  # times eps * |theta|, on the displacement
# Norms and dot products reduced in float32 against float64 sums of the same values.
NORM_TOLERANCE = 1e-5

SHAPES = ((3, 2), (4,))


def _full_columns(trace, name, quantity):
    coordinates = [c for c in trace.meta["coordinates"] if c == name or c.startswith(f"{name}[")]
    return np.stack([trace[f"{c}.{quantity}"] for c in coordinates], axis=1)


def _cosine(a, b):
    with np.errstate(invalid="ignore"):  # a zero d (Rprop stalls) has no direction: NaN, as the trace's empty cell
        return (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.mark.parametrize("config, impl", cases())
def test_summaries_agree_with_the_full_trace(tmp_path, config, impl):
    full_path, summary_path = tmp_path / "full.trace.csv", tmp_path / "summary.trace.csv"
    run(config, impl, full_path)
    run(config, impl, summary_path, recorder_options={"granularity": "summary"})
    full, summary = load_trace(full_path), load_trace(summary_path)
    lr = config.kwargs["lr"]
    # 16-bit parameters: the same comparisons at float16's precision.
    scale = 1.0 if config.dtype == torch.float32 else float(torch.finfo(config.dtype).eps / torch.finfo(torch.float32).eps)
    for name in ("w0", "w1", "w2"):
        columns = {q: _full_columns(full, name, q) for q in ("theta", "g", "v", "s", "d")}
        close = lambda quantity, expected, rtol=NORM_TOLERANCE: np.testing.assert_allclose(
            summary[f"{name}.{quantity}"], expected, rtol=rtol * scale, atol=0, err_msg=quantity
        )
        close("theta_norm", np.linalg.norm(columns["theta"], axis=1))
        close("g_norm", np.linalg.norm(columns["g"], axis=1))
        for quantity in ("v", "s"):
            if np.isnan(columns[quantity]).all():
                assert np.isnan(summary[f"{name}.{quantity}_norm"]).all()
            else:
                close(f"{quantity}_norm", np.linalg.norm(columns[quantity], axis=1))
        d = columns["d"]
        # What rounding theta_next to the parameters' dtype can do to the displacement.
        rounding = MEASURED_D_ULPS * float(torch.finfo(config.dtype).eps) * summary[f"{name}.theta_norm"]

        def measured(quantity, expected, bound):
            actual = summary[f"{name}.{quantity}"]
            assert (np.isnan(actual) == np.isnan(expected)).all(), quantity
            ok = np.isnan(expected) | (np.abs(actual - expected) <= MEASURED_D_TOLERANCE * np.abs(expected) + bound)
            assert ok.all(), (quantity, actual[~ok], expected[~ok])

        moved = np.linalg.norm(d, axis=1)
        measured("d_norm", moved, rounding / lr)
        measured("displacement", np.nan_to_num(lr * moved, nan=0.0), rounding)
        measured("d_max", np.abs(d).max(axis=1), rounding / lr)
        # cos(g, d) moves by about the relative error of d: checked where that is below 1e-3.
        sharp = moved * lr > 1000 * rounding
        if name != "w0" and sharp.any():  # a scalar's cosine is +-1
            expected = np.where(sharp, _cosine(columns["g"], d), np.nan)
            np.testing.assert_allclose(summary[f"{name}.cos_g_d"][sharp], expected[sharp], rtol=1e-3, atol=1e-3)
            both = sharp[1:] & sharp[:-1]
            previous = _cosine(d[1:], d[:-1])
            np.testing.assert_allclose(summary[f"{name}.cos_d_prev"][1:][both], previous[both], rtol=1e-3, atol=1e-3)
        assert np.isnan(summary[f"{name}.cos_d_prev"][0])


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
