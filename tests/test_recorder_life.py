"""A real training run's life under the recorder: new groups, resuming onto a trace, closures, several groups."""

from __future__ import annotations

import glob
import os
import re
import warnings

import numpy as np
import pytest
import torch

from tracer import Recorder, diff_traces, load_trace
from tracer.errors import TraceFormatError, TracerError

TARGET = torch.tensor([1.0, -2.0, 0.5])


def _loss(params):
    return sum(((p - TARGET[: p.numel()].reshape(p.shape)) ** 2).sum() * (k + 1) for k, p in enumerate(params))


def _start():
    params = [torch.tensor(0.3, requires_grad=True), torch.tensor([0.2, 0.1, -0.4], requires_grad=True)]
    return params, torch.optim.Adam(params, lr=0.05)


def _steps(params, optimizer, count, recorder=None):
    for _ in range(count):
        optimizer.zero_grad()
        loss = _loss(params)
        loss.backward()
        if recorder is not None:
            recorder.note(loss=loss)
        optimizer.step()


def test_a_tensor_replaced_in_a_group_ends_the_trace_and_training_goes_on(tmp_path):
    """Same count, another tensor: the trace's rows would read the old one; it ends as for a changed group."""
    params, optimizer = _start()
    path = tmp_path / "run.trace.csv"
    with pytest.warns(UserWarning, match=r"a parameter tensor in the optimizer's groups was replaced by another before "
                                         r"update 3.*ends at update 2, training goes on untraced"):
        with Recorder(optimizer, path) as recorder:
            _steps(params, optimizer, 2, recorder)
            replacement = params[1].detach().clone().requires_grad_(True)
            optimizer.param_groups[0]["params"][1] = replacement
            before = replacement.detach().clone()
            _steps([params[0], replacement], optimizer, 1, recorder)
    assert not torch.equal(replacement.detach(), before)  # the step was applied
    trace = load_trace(path)
    assert len(trace) == 2 and trace.status == "interrupted" and "was replaced" in trace.trailer["reason"]


@pytest.mark.parametrize("change", ["add_param_group", "append to a group"])
def test_a_changed_group_ends_the_trace_and_training_goes_on(tmp_path, change):
    params, optimizer = _start()
    path = tmp_path / "run.trace.csv"
    extra = torch.tensor([0.7], requires_grad=True)
    with pytest.warns(UserWarning, match=r"parameter groups changed before update 3 .* \[2\] traced, (\[2, 1\]|\[3\]) now.*"
                                         r"ends at update 2, training goes on untraced"):
        with Recorder(optimizer, path) as recorder:
            _steps(params, optimizer, 2, recorder)
            if change == "add_param_group":
                optimizer.add_param_group({"params": [extra]})
            else:
                optimizer.param_groups[0]["params"].append(extra)
            optimizer.zero_grad()
            _loss([*params, extra]).backward()
            before = [p.detach().clone() for p in (*params, extra)]
            optimizer.step()
            _steps([*params, extra], optimizer, 2, recorder)
    # The step was applied (training goes on); the two recorded rows are kept, the trailer says why it ended.
    assert not torch.equal(extra.detach(), before[-1])
    trace = load_trace(path)
    assert len(trace) == 2 and trace.status == "interrupted"
    assert "parameter groups changed before update 3" in trace.trailer["reason"]


def test_an_existing_trace_is_refused_by_default(tmp_path):
    path = tmp_path / "run.trace.csv"
    path.write_text("the old trace\n")
    params, optimizer = _start()
    with pytest.raises(TracerError, match=r"run\.trace\.csv already exists; pass if_exists='append' .* or if_exists='overwrite'"):
        Recorder(optimizer, path).start()
    assert path.read_text() == "the old trace\n"
    with Recorder(optimizer, path, if_exists="overwrite") as recorder:
        _steps(params, optimizer, 2, recorder)
    assert len(load_trace(path)) == 2


@pytest.mark.parametrize("granularity", ["full", "summary"])
@pytest.mark.parametrize("cut", ["closed", "cut mid-row"])
def test_append_continues_a_resumed_run(tmp_path, granularity, cut):
    """3 updates, a checkpoint, 2 more appended: the trace of the uninterrupted run."""
    whole = tmp_path / "whole.trace.csv"
    params, optimizer = _start()
    with Recorder(optimizer, whole, granularity=granularity) as recorder:
        _steps(params, optimizer, 5, recorder)

    resumed = tmp_path / "resumed.trace.csv"
    params, optimizer = _start()
    with Recorder(optimizer, resumed, granularity=granularity) as recorder:
        _steps(params, optimizer, 3, recorder)
    checkpoint = ([p.detach().clone() for p in params], optimizer.state_dict())
    if cut == "cut mid-row":  # no trailer and half a row, as a power cut can leave it
        text = resumed.read_text()
        resumed.write_text(text[: text.index("#end ")] + "4,,,0.05,0.12")

    params, optimizer = _start()
    with torch.no_grad():
        for p, saved in zip(params, checkpoint[0]):
            p.copy_(saved)
    optimizer.load_state_dict(checkpoint[1])
    if cut == "cut mid-row":
        # Refused in one line, the file unchanged: the tail is not a whole row; the message says how to go on.
        before = resumed.read_bytes()
        with pytest.raises(TraceFormatError, match=r"an unterminated last line of 13 bytes after its 3 whole rows, "
                                                   r"not a whole row .* \(truncate -s (\d+) FILE\)") as refused:
            Recorder(optimizer, resumed, granularity=granularity, if_exists="append").start()
        assert resumed.read_bytes() == before and "\n" not in str(refused.value)
        os.truncate(resumed, int(re.search(r"truncate -s (\d+)", str(refused.value)).group(1)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with Recorder(optimizer, resumed, granularity=granularity, if_exists="append") as recorder:
            _steps(params, optimizer, 2, recorder)

    trace = load_trace(resumed)
    assert trace.status == "complete" and trace["update"].tolist() == [1, 2, 3, 4, 5]
    assert trace.trailer["updates"] == 5
    # The first appended row cannot know the previous update's delta.
    columns = [glob.escape(c) for c in trace.columns if not c.endswith(".cos_d_prev")]  # "w[0]" is no pattern
    result = diff_traces(resumed, whole, columns=columns)
    assert result.equal, result.report()
    assert trace.final == load_trace(whole).final
    for column in trace.columns:
        if column.endswith(".cos_d_prev"):
            assert np.isnan(trace[column][3]) and trace[column][4] == load_trace(whole)[column][4]


def test_append_refuses_another_run(tmp_path):
    path = tmp_path / "run.trace.csv"
    params, optimizer = _start()
    with Recorder(optimizer, path) as recorder:
        _steps(params, optimizer, 2, recorder)
    before = path.read_bytes()
    other = torch.optim.SGD(params, lr=0.1)
    with pytest.raises(TracerError, match=r"cannot append to .*run\.trace\.csv: its optimizer class differ"):
        Recorder(other, path, if_exists="append").start()
    fewer = torch.optim.Adam(params[:1], lr=0.05)
    with pytest.raises(TracerError, match=r"its columns, parameters differ"):
        Recorder(fewer, path, if_exists="append").start()
    assert path.read_bytes() == before


def test_step_with_a_closure_records_its_loss(tmp_path):
    params, optimizer = _start()
    path = tmp_path / "run.trace.csv"
    losses = []

    def closure():
        optimizer.zero_grad()
        loss = _loss(params)
        loss.backward()
        losses.append(loss.item())
        return loss

    with Recorder(optimizer, path):
        for k in range(4):
            if k % 2:
                optimizer.step(closure=closure)
            else:
                optimizer.step(closure)
    assert load_trace(path)["loss"].tolist() == losses


def test_every_group_has_its_hyperparameters(tmp_path):
    params, _ = _start()
    optimizer = torch.optim.SGD(
        [{"params": params[:1]}, {"params": params[1:], "lr": 0.02, "momentum": 0.5}], lr=0.1, momentum=0.9
    )
    path = tmp_path / "run.trace.csv"
    with Recorder(optimizer, path) as recorder:
        _steps(params, optimizer, 1, recorder)
    meta = load_trace(path).meta["optimizer"]
    assert meta["hyperparameters"]["lr"] == 0.1
    groups = meta["group_hyperparameters"]
    assert [(g["lr"], g["momentum"]) for g in groups] == [(0.1, 0.9), (0.02, 0.5)]
