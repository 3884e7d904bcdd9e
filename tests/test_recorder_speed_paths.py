"""The recorder's fast paths agree with its plain one: the native summary pass, sampling with ``every``.

Speed is measured in benchmarks/bench_recorder.py, not here.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tracer import Recorder, load_trace
from tracer.errors import DivergenceError, TracerError
from tracer.recording import summary
from tracer.summaries.eager import PASSES_COSINE_ATOL, PASSES_RTOL
from tracer.testing import record_small_run
from tracer.trace import SUMMARY_QUANTITIES

SHAPES = ((40, 3), (64,))
OPTIMIZERS = [
    ("adamw", lambda params: torch.optim.AdamW(params, lr=0.01, weight_decay=0.1)),
    ("sgd momentum", lambda params: torch.optim.SGD(params, lr=0.05, momentum=0.9)),
]
SUMMARY = {"granularity": "summary"}


def _summary_columns(trace):
    return [c for c in trace.columns if c.rsplit(".", 1)[-1] in SUMMARY_QUANTITIES]


@pytest.mark.parametrize("make", [m for _, m in OPTIMIZERS], ids=[d for d, _ in OPTIMIZERS])
def test_fast_summaries_agree_with_eager_and_leave_training_alone(tmp_path, make):
    summary_pass = "native"
    untraced = record_small_run(make, None, shapes=SHAPES)
    eager_params = record_small_run(make, tmp_path / "eager.trace.csv", shapes=SHAPES, recorder_options={**SUMMARY, "summary_pass": "eager"})
    fused_params = record_small_run(
        make, tmp_path / "fused.trace.csv", shapes=SHAPES, recorder_options={**SUMMARY, "summary_pass": summary_pass}
    )
    for a, b, c in zip(untraced, eager_params, fused_params):
        assert torch.equal(a, b) and torch.equal(a, c)  # tracing only reads: bit for bit
    eager, fused = load_trace(tmp_path / "eager.trace.csv"), load_trace(tmp_path / "fused.trace.csv")
    assert fused.columns == eager.columns and len(fused) == len(eager) == 24
    for column in fused.columns:
        a, b = fused[column], eager[column]
        assert np.array_equal(np.isnan(a), np.isnan(b)), column
        quantity = column.rsplit(".", 1)[-1]
        if quantity.startswith("cos"):
            # Dot products summed in another order; the tolerance is on the cosine itself.
            np.testing.assert_allclose(a, b, rtol=0, atol=2 * PASSES_COSINE_ATOL, err_msg=column)
        elif quantity in ("d_max", "update", "epoch", "batch", "lr", "loss"):
            assert np.array_equal(a, b, equal_nan=True), column  # max and copied values: bit for bit
        else:
            # Norms: square roots of sums of squares, half the sums' relative tolerance.
            np.testing.assert_allclose(a, b, rtol=PASSES_RTOL, atol=0, err_msg=column)


@pytest.mark.parametrize("every", [2, 3, 5])
def test_sampled_rows_equal_the_same_updates_recorded_every_time(tmp_path, every):
    make = OPTIMIZERS[0][1]
    all_params = record_small_run(make, tmp_path / "all.trace.csv", shapes=SHAPES, recorder_options={**SUMMARY, "summary_pass": "eager"})
    some_params = record_small_run(
        make, tmp_path / "some.trace.csv", shapes=SHAPES, recorder_options={**SUMMARY, "summary_pass": "eager", "every": every}
    )
    assert all(torch.equal(a, b) for a, b in zip(all_params, some_params))
    everything, sampled = load_trace(tmp_path / "all.trace.csv"), load_trace(tmp_path / "some.trace.csv")
    updates = list(range(1, 25, every))
    assert sampled["update"].tolist() == updates and sampled.meta["every"] == every and "every" not in everything.meta
    assert sampled.status == "complete" and sampled.trailer["updates"] == len(updates)
    rows = [u - 1 for u in updates]
    # Every summary, cos_d_prev included (the update before each recorded one is measured), and
    # the step size: the same operations on the same numbers, so bit for bit.
    for column in sampled.columns:
        assert np.array_equal(sampled[column], everything[column][rows], equal_nan=True), column
    assert np.isnan(sampled["w0.cos_d_prev"][0]) and not np.isnan(sampled["w0.cos_d_prev"][1:]).any()


def test_sampling_full_granularity(tmp_path):
    make = OPTIMIZERS[1][1]
    record_small_run(make, tmp_path / "all.trace.csv")
    record_small_run(make, tmp_path / "some.trace.csv", recorder_options={"every": 10})
    everything, sampled = load_trace(tmp_path / "all.trace.csv"), load_trace(tmp_path / "some.trace.csv")
    assert sampled["update"].tolist() == [1.0, 11.0, 21.0]
    for column in sampled.columns:
        assert np.array_equal(sampled[column], everything[column][[0, 10, 20]], equal_nan=True), column
    assert sampled.final == everything.final  # theta after the run's last update, recorded or not


BAD_OPTIONS = [
    (dict(every=0), r"invalid every 0; accepted: a whole number of updates >= 1"),
    (dict(every=2.0), r"invalid every 2\.0"),
    (dict(every=True), r"invalid every True"),
    (dict(summary_pass="fast"), r"invalid summary_pass 'fast'; accepted: 'auto', 'native', 'eager'"),
    (dict(meta={"every": 3}), r"meta may not set \['every'\]"),
]


@pytest.mark.parametrize("options, message", [(o, m) for o, m in BAD_OPTIONS], ids=[m[:30] for _, m in BAD_OPTIONS])
def test_bad_speed_options(tmp_path, options, message):
    optimizer = torch.optim.SGD([torch.zeros(2, requires_grad=True)], lr=0.1)
    with pytest.raises(TracerError, match=message):
        Recorder(optimizer, tmp_path / "x.trace.csv", **options)
    assert not (tmp_path / "x.trace.csv").exists()


def _train(path, steps, *, lr=0.01, fail_at=None, recorder_options=None):
    """AdamW on a quadratic over two tensors; after each step, the rows the file holds. Returns (rows per step, params)."""
    generator = torch.Generator().manual_seed(5)
    params = [torch.randn(40, 3, generator=generator).requires_grad_(True), torch.randn(64, generator=generator).requires_grad_(True)]
    optimizer = torch.optim.AdamW(params, lr=lr)
    rows_seen = []
    with Recorder(optimizer, path, granularity="summary", summary_pass="eager", **(recorder_options or {})) as recorder:
        for step in range(steps):
            loss = sum((p * p).sum() for p in params) * (1e38 if step == fail_at else 1.0)
            optimizer.zero_grad()
            loss.backward()
            recorder.note(loss=loss.detach(), batch=step)
            optimizer.step()
            rows_seen.append(len(load_trace(path)))
    return rows_seen, [p.detach().clone() for p in params]


@pytest.fixture
def slow_copies(monkeypatch):
    """Every device-to-host copy of the summaries is still under way when first asked (an accelerator's case, on a CPU)."""
    monkeypatch.setattr(summary.PendingSummaries, "ready", lambda self: False)


def test_on_a_cpu_each_row_is_written_by_its_own_step(tmp_path):
    rows, _ = _train(tmp_path / "now.trace.csv", 6)
    assert rows == [1, 2, 3, 4, 5, 6]  # a CPU's copy is done at once


def test_deferred_rows_are_complete_in_order_and_nothing_is_lost(tmp_path, monkeypatch):
    _, reference_params = _train(tmp_path / "reference.trace.csv", 6)
    monkeypatch.setattr(summary.PendingSummaries, "ready", lambda self: False)  # as the slow_copies fixture
    rows, params = _train(tmp_path / "later.trace.csv", 6)
    assert rows == [0, 1, 2, 3, 4, 5]  # each row written one update later ...
    later, reference = load_trace(tmp_path / "later.trace.csv"), load_trace(tmp_path / "reference.trace.csv")
    assert len(later) == 6 and later.status == "complete"  # ... and the last on close
    assert all(torch.equal(a, b) for a, b in zip(params, reference_params))
    for column in later.columns:  # the same numbers, whenever they are written
        assert np.array_equal(later[column], reference[column], equal_nan=True), column


def test_deferred_rows_survive_a_crash(tmp_path, slow_copies):
    path = tmp_path / "crash.trace.csv"
    with pytest.raises(RuntimeError, match="the data loader broke"):
        param = torch.ones(20, requires_grad=True)
        optimizer = torch.optim.SGD([param], lr=0.1)
        with Recorder(optimizer, path, granularity="summary", summary_pass="eager"):
            for step in range(3):
                optimizer.zero_grad()
                (param * param).sum().backward()
                optimizer.step()
            raise RuntimeError("the data loader broke")
    trace = load_trace(path)
    assert trace.status == "interrupted" and trace["update"].tolist() == [1.0, 2.0, 3.0]


def test_a_deferred_divergence_stops_one_update_late_and_the_trace_ends_where_it_diverged(tmp_path, slow_copies):
    path = tmp_path / "diverged.trace.csv"
    with pytest.raises(DivergenceError, match="diverged at update 3: .*loss=inf"):
        _train(path, 6, fail_at=2)
    trace = load_trace(path)
    assert trace.status == "diverged" and trace.diverged_at == 3 and trace["update"].tolist() == [1.0, 2.0, 3.0]
