"""What large real runs need of the Recorder: selection without a name per coordinate, the wrappers' name
prefixes dropped, a Recorder never started saying so, and the leaner memory mode (cos_d_prev=False)."""

from __future__ import annotations

import time
import warnings

import numpy as np
import pytest
import torch

from tracer import Recorder, load_trace
from tracer.errors import TracerError
from tracer.recorder import RecorderNotStartedWarning
from tracer.recording.selection import model_names, select_parameters
from tracer.testing import record_small_run


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Tanh(), torch.nn.Linear(3, 2))


def _train(model: torch.nn.Module, optimizer: torch.optim.Optimizer, steps: int, recorder: Recorder | None = None):
    torch.manual_seed(1)
    x, y = torch.randn(16, 4), torch.randn(16, 2)
    for _ in range(steps):
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        if recorder is not None:
            recorder.note(loss=loss)
        optimizer.step()


def test_summary_selection_names_no_coordinate():
    # 100 tensors of 1M elements: a name per coordinate would take seconds and gigabytes; the names are per tensor.
    params = [torch.zeros(1_000_000, requires_grad=True) for _ in range(100)]
    optimizer = torch.optim.SGD(params, lr=0.1)
    started = time.perf_counter()
    traced = select_parameters(optimizer, None, "summary", ["p7[999999]", "p3"])
    seconds = time.perf_counter() - started
    assert seconds < 5.0  # generous for a loaded machine; per-coordinate names took about 90 s here
    assert [t.coordinates for t in traced if t.full] == [
        tuple(f"p3[{i}]" for i in range(1_000_000)), ("p7[999999]",)
    ]
    assert traced[7].full_index.tolist() == [999999] and traced[7].summarized and not traced[3].summarized


@pytest.mark.parametrize(
    "full, message",
    [
        (["w0[6]"], r"full= names no parameter or coordinate: \['w0\[6\]'\]"),  # w0 has 6 elements: 0..5
        (["w0[-1]"], r"\['w0\[-1\]'\]"),
        (["nope[0]"], r"\['nope\[0\]'\]"),
    ],
)
def test_full_refuses_a_coordinate_that_is_not_there(tmp_path, full, message):
    with pytest.raises(TracerError, match=message):
        record_small_run(lambda p: torch.optim.SGD(p, lr=0.1), tmp_path / "t.csv", shapes=((3, 2),),
                         recorder_options={"full": full})


def test_full_coordinates_come_in_flat_order_once(tmp_path):
    path = tmp_path / "t.csv"
    record_small_run(lambda p: torch.optim.SGD(p, lr=0.1), path, shapes=((3, 2), (4,)),
                     recorder_options={"full": ["w0[5]", "w0[1]", "w0[5]", "w1[0]", "w1"]})
    meta = load_trace(path).meta
    assert meta["coordinates"] == ["w0[1]", "w0[5]", "w1[0]", "w1[1]", "w1[2]", "w1[3]"]
    assert meta["summarized"] == ["w0"]


def test_model_names_drop_the_wrappers_prefixes():
    assert model_names(["_orig_mod.0.weight", "_orig_mod.0.bias"]) == ["0.weight", "0.bias"]
    assert model_names(["module._orig_mod.fc.weight", "module.head._orig_mod.bias"]) == ["fc.weight", "head.bias"]
    # A module. that only some names start with is a submodule's own name: kept.
    assert model_names(["module.weight", "head.weight"]) == ["module.weight", "head.weight"]
    # Dropping would merge two names: both kept as they are.
    assert model_names(["_orig_mod.w", "w"]) == ["_orig_mod.w", "w"]


@pytest.mark.parametrize("requested", ["2.weight[1]", "_orig_mod.2.weight[1]"])
def test_a_compiled_models_names_and_full(tmp_path, requested):
    model = _model()
    compiled = torch.compile(model)  # not run: its parameters are the model's, named with _orig_mod.
    assert next(iter(compiled.named_parameters()))[0].startswith("_orig_mod.")
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    path = tmp_path / "c.trace.csv"
    with Recorder(optimizer, path, named_parameters=compiled.named_parameters(), full=[requested]) as recorder:
        _train(model, optimizer, 2, recorder)
    meta = load_trace(path).meta
    assert [p["name"] for p in meta["parameters"]] == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert meta["coordinates"] == ["2.weight[1]"]


def test_data_parallels_module_prefix_is_dropped(tmp_path):
    model = _model()
    wrapped = torch.nn.DataParallel(model)  # on a CPU it only wraps: its names start with module.
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    path = tmp_path / "d.trace.csv"
    with Recorder(optimizer, path, named_parameters=wrapped.named_parameters(), full=["module.0.bias"]) as recorder:
        _train(model, optimizer, 1, recorder)
    meta = load_trace(path).meta
    assert meta["summarized"] == ["0.weight", "2.weight", "2.bias"]
    assert meta["coordinates"] == ["0.bias[0]", "0.bias[1]", "0.bias[2]"]


def test_a_recorder_never_started_says_so_once(tmp_path):
    model = _model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    path = tmp_path / "never.trace.csv"
    Recorder(optimizer, path, named_parameters=model.named_parameters())
    with pytest.warns(RecorderNotStartedWarning, match=r"never started, so it records nothing") as caught:
        _train(model, optimizer, 3)
    assert len([w for w in caught if w.category is RecorderNotStartedWarning]) == 1
    assert "\n" not in str(caught[0].message) and not path.exists()


def test_a_started_recorder_does_not_warn(tmp_path):
    model = _model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    recorder = Recorder(optimizer, tmp_path / "r.trace.csv", named_parameters=model.named_parameters())
    with warnings.catch_warnings():
        warnings.simplefilter("error", RecorderNotStartedWarning)
        with recorder:
            _train(model, optimizer, 2, recorder)
        _train(model, optimizer, 1)  # after close: detached, and silent


@pytest.mark.parametrize("every", [1, 3])
@pytest.mark.parametrize("summary_pass", ["native", "eager"])
def test_without_cos_d_prev_every_other_cell_is_the_same(tmp_path, every, summary_pass):
    paths = {}
    for keep in (True, False):
        model = _model()
        optimizer = torch.optim.AdamW(model.parameters(), lr=0.01, weight_decay=0.1)
        paths[keep] = tmp_path / f"{keep}.trace.csv"
        with Recorder(optimizer, paths[keep], named_parameters=model.named_parameters(), granularity="summary",
                      every=every, summary_pass=summary_pass, cos_d_prev=keep) as recorder:
            _train(model, optimizer, 7, recorder)
            held = sum(b.snapshot.nbytes + (0 if b.previous_delta is None else b.previous_delta.nbytes)
                       for b in recorder._summary._buffers.values())
        # 4 bytes per float32 parameter for the snapshot, 4 more for the previous delta.
        assert held == sum(p.numel() for p in model.parameters()) * (8 if keep else 4)
    kept, lean = load_trace(paths[True]), load_trace(paths[False])
    assert lean.meta["cos_d_prev"] is False and "cos_d_prev" not in kept.meta
    assert kept.columns == lean.columns and len(kept) == len(lean) == len(range(1, 8, every))
    for column in kept.columns:
        if column.endswith(".cos_d_prev"):
            assert np.isnan(lean[column]).all() and np.isfinite(kept[column][1:]).all()
        else:
            np.testing.assert_array_equal(kept[column], lean[column], err_msg=column)


def test_cos_d_prev_option_is_checked(tmp_path):
    optimizer = torch.optim.SGD([torch.zeros(3, requires_grad=True)], lr=0.1)
    with pytest.raises(TracerError, match=r"invalid cos_d_prev 'no'; accepted: True or False"):
        Recorder(optimizer, tmp_path / "t.csv", cos_d_prev="no")

