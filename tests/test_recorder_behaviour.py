"""The recorder's file: columns, granularity, metadata, divergence, interruption."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tracer import Recorder, load_trace
from tracer.errors import DivergenceError, TracerError
from tracer.recorder import SUMMARY_QUANTITIES
from tracer.testing import record_small_run


def test_metadata_has_every_key(tmp_path):
    path = tmp_path / "run.trace.csv"
    record_small_run(
        lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9), path, steps=2,
        recorder_options={"meta": {"label": "Momentum", "epochs": 1, "seed": 3}},
    )
    meta = load_trace(path).meta
    assert meta["label"] == "Momentum" and meta["epochs"] == 1 and meta["seed"] == 3
    assert meta["problem"] is None and meta["scheduler"] is None and meta["batch_size"] is None
    assert meta["granularity"] == "full" and meta["coordinates"] == ["w0", "w1"] and meta["summarized"] == []
    assert meta["parameters"] == [{"name": "w0", "shape": [], "group": 0}, {"name": "w1", "shape": [], "group": 0}]
    assert meta["param_groups"] == 1
    optimizer = meta["optimizer"]
    assert optimizer["name"] == "momentum" and optimizer["class"] == "torch.optim.sgd.SGD" and optimizer["impl"] == "torch"
    assert optimizer["hyperparameters"]["lr"] == 0.05 and optimizer["hyperparameters"]["momentum"] == 0.9
    assert set(meta["versions"]) == {"tracer", "torch", "python", "numpy"}


def test_summary_and_mixed_granularity(tmp_path):
    path = tmp_path / "s.trace.csv"
    make = lambda p: torch.optim.Adam(p, lr=0.01)
    record_small_run(make, path, shapes=((3, 2), (4,)), recorder_options={"granularity": "summary"})
    trace = load_trace(path)
    assert trace.meta["granularity"] == "summary" and trace.meta["summarized"] == ["w0", "w1"]
    # Adam's state, by key, after the parameters' columns (tracer.recording.state).
    assert trace.columns == ["update", "epoch", "batch", "lr", "loss"] + [
        f"w{k}.{q}" for k in range(2) for q in SUMMARY_QUANTITIES
    ] + [f"w{k}.state_norm:{key}" for k in range(2) for key in ("step", "exp_avg", "exp_avg_sq")] + [
        "step_size", "displacement"]
    np.testing.assert_array_equal(trace["w1.state_norm:exp_avg"], trace["w1.v_norm"])
    np.testing.assert_array_equal(trace["w1.state_norm:step"], np.arange(1, len(trace) + 1))
    assert trace.final == {}
    assert np.isnan(trace["w0.cos_d_prev"][0]) and (np.abs(trace["w0.cos_d_prev"][1:]) <= 1 + 1e-6).all()
    d_norm = np.hypot(trace["w0.d_norm"], trace["w1.d_norm"])
    np.testing.assert_allclose(trace["step_size"], 0.01 * d_norm, rtol=1e-12)
    assert (trace["w0.d_max"] <= trace["w0.d_norm"] * (1 + 1e-6)).all()

    mixed = tmp_path / "m.trace.csv"
    record_small_run(make, mixed, shapes=((3, 2), (4,)), recorder_options={"full": ["w0[4]", "w1"]})
    trace = load_trace(mixed)
    assert trace.meta["granularity"] == "mixed"
    assert trace.meta["coordinates"] == ["w0[4]", "w1[0]", "w1[1]", "w1[2]", "w1[3]"]
    assert trace.meta["summarized"] == ["w0"]
    assert "w0[4].u" in trace and "w0.d_norm" in trace and "w1.d_norm" not in trace


def test_two_parameter_groups_have_one_lr_column_each(tmp_path):
    path = tmp_path / "g.trace.csv"
    make = lambda p: torch.optim.SGD([{"params": [p[0]], "lr": 0.1}, {"params": [p[1]]}], lr=0.01)
    record_small_run(make, path, steps=3)
    trace = load_trace(path)
    assert trace["lr[0]"].tolist() == [0.1] * 3 and trace["lr[1]"].tolist() == [0.01] * 3
    step = np.hypot(0.1 * trace["w0.d"], 0.01 * trace["w1.d"])
    np.testing.assert_allclose(trace["step_size"], step, rtol=1e-12)


def test_lr_column_follows_the_scheduler(tmp_path):
    w = torch.tensor(1.0, requires_grad=True)
    optimizer = torch.optim.SGD([w], lr=0.1)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)
    with Recorder(optimizer, tmp_path / "lr.trace.csv") as rec:
        for _ in range(5):
            optimizer.zero_grad()
            (w * w).backward()
            rec.note(loss=torch.tensor(2.0))
            optimizer.step()
            scheduler.step()
    trace = load_trace(tmp_path / "lr.trace.csv")
    assert trace["lr"].tolist() == [0.1, 0.1, 0.05, 0.05, 0.025]
    assert trace["loss"].tolist() == [2.0] * 5 and trace.columns[5] == "p0.theta"


def _diverging(tmp_path, on_divergence):
    return record_small_run(
        lambda p: torch.optim.SGD(p, lr=10.0), tmp_path / "d.trace.csv", steps=200, loss_scale=1e3,
        recorder_options={"on_divergence": on_divergence},
    )


def test_divergence_stops_the_run_and_keeps_every_row(tmp_path):
    with pytest.raises(DivergenceError, match=r"diverged at update \d+"):
        _diverging(tmp_path, "stop")
    trace = load_trace(tmp_path / "d.trace.csv")
    assert trace.status == "diverged" and trace.diverged_at == len(trace)
    last = len(trace) - 1
    assert not all(math.isfinite(trace[c][last]) for c in ("loss", "w0.theta", "w0.g"))
    assert all(np.isfinite(trace["w0.theta"][:last - 1]))


def test_divergence_can_continue(tmp_path):
    _diverging(tmp_path, "continue")
    trace = load_trace(tmp_path / "d.trace.csv")
    assert trace.status == "diverged" and len(trace) == 200 and 1 < trace.diverged_at < 200


def test_interrupted_run(tmp_path):
    w = torch.tensor(1.0, requires_grad=True)
    optimizer = torch.optim.Adam([w], lr=0.1)
    with pytest.raises(KeyboardInterrupt):
        with Recorder(optimizer, tmp_path / "i.trace.csv"):
            for step in range(10):
                optimizer.zero_grad()
                (w * w).backward()
                optimizer.step()
                if step == 3:
                    raise KeyboardInterrupt
    trace = load_trace(tmp_path / "i.trace.csv")
    assert trace.status == "interrupted" and len(trace) == 4 and trace.final == {"p0": w.item()}
    # The hooks are gone: stepping again writes nothing.
    optimizer.step()
    assert len(load_trace(tmp_path / "i.trace.csv")) == 4


def test_bad_options_are_clear_errors(tmp_path):
    optimizer = torch.optim.SGD([torch.zeros(2, requires_grad=True)], lr=0.1)
    cases = [
        (dict(granularity="every"), "invalid granularity 'every'"),
        (dict(on_divergence="ignore"), "invalid on_divergence 'ignore'"),
        (dict(full=["nope"]), r"full= names no parameter or coordinate: \['nope'\]"),
        (dict(meta={"granularity": "full"}), "meta may not set"),
        (dict(if_exists="replace"), "invalid if_exists 'replace'; accepted: error, append, overwrite"),
    ]
    for options, message in cases:
        with pytest.raises(TracerError, match=message):
            Recorder(optimizer, tmp_path / "x.trace.csv", **options)


@pytest.mark.parametrize("full", [["w[1]", "w[4]"], ["w[4]", "w[0]"], ["w"]], ids=["some", "out-of-order", "whole"])
def test_state_columns_hold_the_state_at_each_traced_coordinate(tmp_path, full):
    """Per-coordinate state columns are the state tensor's values there, update by update, bit for bit; the
    step count's norm is the count; a summarised tensor's state norms are its v_norm and s_norm."""
    torch.manual_seed(0)
    w, b = torch.nn.Parameter(torch.randn(2, 3)), torch.nn.Parameter(torch.randn(3))
    optimizer = torch.optim.Adam([w, b], lr=0.01)
    path = tmp_path / "run.trace.csv"
    seen = []
    with Recorder(optimizer, path, named_parameters=[("w", w), ("b", b)], granularity="summary", full=full):
        for _ in range(4):
            optimizer.zero_grad()
            ((w.sum(0) * b).sum() ** 2).backward()
            optimizer.step()
            seen.append({key: value.clone() for key, value in optimizer.state[w].items()})
    trace = load_trace(path)
    coordinates = [f"w[{i}]" for i in range(6)] if full == ["w"] else full
    for update, state in enumerate(seen):
        for coordinate in coordinates:
            flat = int(coordinate[2:-1])
            for key in ("exp_avg", "exp_avg_sq"):
                assert trace[f"{coordinate}.state:{key}"][update] == state[key].reshape(-1)[flat].item(), (key, update)
        assert trace["w.state_norm:step"][update] == update + 1
    np.testing.assert_array_equal(trace["b.state_norm:exp_avg"], trace["b.v_norm"])
    np.testing.assert_array_equal(trace["b.state_norm:exp_avg_sq"], trace["b.s_norm"])
