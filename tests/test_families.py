"""Every supported optimizer and flag set: d is what the step did, and tracing leaves training unchanged."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tracer import load_trace
from tracer.errors import TracerError
from tracer.families import FAMILIES, family_of, optimizer_name
from tracer.recorder import Recorder
from traced_configs import CONFIGS, SHAPES, cases, run

# "folded" families, relative to |theta_next| + lr*|d|: torch's addcdiv
# computes (value * t1) / t2 with Adam's value = -lr / bc1 (RMSprop's -lr)
# folded into the numerator, while d = t1 / t2 (scaled); reordering one
# multiply and one divide costs a few float32 roundings.
FOLDED_FACTOR_TOLERANCE = 4 * torch.finfo(torch.float32).eps


def _coordinates(trace):
    return [c[: -len(".theta")] for c in trace.columns if c.endswith(".theta")]


@pytest.mark.parametrize("config, impl", cases())
def test_d_is_the_step(tmp_path, config, impl):
    """theta_next = theta - lr * d on every update of every traced coordinate."""
    path = tmp_path / "run.trace.csv"
    run(config, impl, path)
    trace = load_trace(path)
    assert trace.status == "complete"
    assert trace.meta["optimizer"]["d"] == ("measured" if config.d_check == "measured" else "recomputed")
    # Outside the table (a user's class, a subclass overriding step()) the metadata says why d is measured.
    outside = impl == "user"
    assert (trace.meta["optimizer"]["d_note"] is not None) == outside, trace.meta["optimizer"]["d_note"]
    lr = trace["lr"]
    for coordinate in _coordinates(trace):
        theta = trace[f"{coordinate}.theta"]
        theta_next = np.append(theta[1:], trace.final[coordinate])
        d = trace[f"{coordinate}.d"]
        stepped = ~np.isnan(d)
        # No gradient, no d (the optimizer skipped the parameter) and theta does not move.
        assert (theta_next[~stepped] == theta[~stepped]).all(), coordinate
        assert stepped.sum() >= 8 and np.isfinite(d[stepped]).all(), coordinate
        theta, theta_next, d, lr_ = theta[stepped], theta_next[stepped], d[stepped], lr[stepped]
        if config.d_check == "measured":
            assert (d == (theta - theta_next) / lr_).all(), coordinate
            continue
        # The step replayed in float32, the parameters' dtype (lr is constant in these runs).
        replayed = torch.add(torch.tensor(theta, dtype=torch.float32), torch.tensor(d, dtype=torch.float32), alpha=-float(lr_[0]))
        replayed = replayed.double().numpy()
        if config.d_check == "bitwise":
            assert (replayed == theta_next).all(), coordinate
        else:
            bound = FOLDED_FACTOR_TOLERANCE * (np.abs(theta_next) + lr_ * np.abs(d))
            assert (np.abs(replayed - theta_next) <= bound).all(), coordinate


@pytest.mark.parametrize("config, impl", cases())
@pytest.mark.parametrize("granularity", ["full", "summary"])
def test_tracing_does_not_change_training(tmp_path, config, impl, granularity):
    untraced = run(config, impl, None)
    traced = run(config, impl, tmp_path / "run.trace.csv", recorder_options={"granularity": granularity})
    for a, b in zip(traced, untraced):
        assert torch.equal(a, b)


# The optimizer state keys of v and s per class (v of SGD and RMSprop only with momentum).
STATE_KEYS = {
    "SGD": ("momentum_buffer", None),
    "RMSprop": ("momentum_buffer", "square_avg"),
    "Adam": ("exp_avg", "exp_avg_sq"),
    "AdamW": ("exp_avg", "exp_avg_sq"),
    "NAdam": ("exp_avg", "exp_avg_sq"),
    "RAdam": ("exp_avg", "exp_avg_sq"),
    "Adamax": ("exp_avg", "exp_inf"),
    "Adagrad": (None, "sum"),
    "Adadelta": (None, "square_avg"),
    "ASGD": (None, None),
    "Rprop": (None, None),
    "SparseAdam": ("exp_avg", "exp_avg_sq"),
    "Adafactor": (None, "variance"),  # a vector's; a matrix's s is factored (row_var, col_var): no s cells
    "Muon": ("momentum_buffer", None),
    "LBFGS": (None, None),
    # Outside the table: the configs' state_keys.
    "Lion": ("exp_avg", None),
    "ScheduleFreeSGD": (None, None),
    "FactoredRMS": (None, "row"),  # a row factor: of the parameter's shape for a scalar only
    "SignSGD": (None, None),  # its momentum_buffer is no SGD momentum: not called v
}


@pytest.mark.parametrize("config, impl", cases())
def test_v_and_s_are_the_named_state(tmp_path, config, impl):
    """The trace names the state keys of v and s; their columns are the state tensors bit for bit, and empty exactly
    where the optimizer keeps none of the parameter's shape."""
    path = tmp_path / "run.trace.csv"
    states: list = []
    run(config, impl, path, steps=4, states=states)
    trace = load_trace(path)
    v_key, s_key = STATE_KEYS[config.cls]
    if config.cls in ("SGD", "RMSprop") and not config.kwargs.get("momentum", 0):
        v_key = None
    assert trace.meta["optimizer"]["state_keys"] == {"v": v_key, "s": s_key}
    checked = 0
    for name, shape in zip(("w0", "w1", "w2"), config.shapes or SHAPES):
        coordinates = [name] if shape == () else [f"{name}[{i}]" for i in range(int(np.prod(shape)))]
        for letter, key in (("v", v_key), ("s", s_key)):
            for update, state in enumerate(states, start=1):
                value = state[name].get(key) if key is not None else None
                row = trace[f"{coordinates[0]}.{letter}"][update - 1]
                has_grad = not np.isnan(trace[f"{coordinates[0]}.g"][update - 1])
                if value is None or tuple(value.shape) != shape or not has_grad:
                    assert np.isnan(row), (name, letter, update)
                    continue
                expected = value.to_dense().reshape(-1).double().numpy()
                cells = np.array([trace[f"{c}.{letter}"][update - 1] for c in coordinates])
                assert (cells == expected).all(), (name, letter, update)
                checked += 1
    assert checked > 0 or (v_key is None and s_key is None)


@pytest.mark.parametrize("config, impl", cases())
def test_every_state_key_is_recorded(tmp_path, config, impl):
    """Every state key of every parameter is in the metadata, and recorded: per coordinate (full) or as its norm."""
    states: list = []
    run(config, impl, tmp_path / "full.trace.csv", steps=2, states=states)
    run(config, impl, tmp_path / "summary.trace.csv", steps=2, recorder_options={"granularity": "summary"})
    full, summary = load_trace(tmp_path / "full.trace.csv"), load_trace(tmp_path / "summary.trace.csv")
    for name, shape in zip(("w0", "w1", "w2"), config.shapes or SHAPES):
        state = states[0][name]
        assert set(full.meta["state"].get(name, {})) == set(state) == set(summary.meta["state"].get(name, {}))
        first = [name] if shape == () else [f"{name}[0]"]
        for key, value in state.items():
            if not isinstance(value, torch.Tensor):
                if isinstance(value, (int, float)):
                    assert full[f"{name}.state:{key}"][0] == value
                continue
            if tuple(value.shape) == shape:
                assert full[f"{first[0]}.state:{key}"][0] == value.reshape(-1)[0].double().item(), key
            else:
                assert f"{name}.state_norm:{key}" in full.columns
            norm = torch.linalg.vector_norm(value.to_dense().double()).item()
            np.testing.assert_allclose(summary[f"{name}.state_norm:{key}"][0], norm, rtol=1e-6)


def family_of_config(config) -> str:
    return family_of(config.make([torch.zeros(1, 1, dtype=config.dtype, requires_grad=True)], config.impls[0])).name


def test_every_family_is_in_the_table():
    """Every family has a row, and every optimizer torch.optim has (the 15 of torch 2.13) is a row."""
    assert {family.name for family in FAMILIES} <= {family_of_config(config) for config in CONFIGS}
    torch_classes = {name for name in dir(torch.optim) if isinstance(getattr(torch.optim, name), type)
                     and issubclass(getattr(torch.optim, name), torch.optim.Optimizer) and name != "Optimizer"}
    assert len(torch_classes) == 15 and torch_classes <= {config.cls for config in CONFIGS}


class _NoGroups:
    """Steps something, but has no parameter groups: nothing the recorder can trace."""

    def step(self):
        pass


# Bad inputs at construction: (what is made, error type, message regex).
REFUSED = [
    (lambda: _NoGroups(), TracerError, r"cannot trace optimizer test_families\._NoGroups: it has no param_groups list and step hooks; accepted: any torch\.optim\.Optimizer"),
    (lambda: torch.optim.SGD([torch.zeros(2, dtype=torch.complex64, requires_grad=True)], lr=0.1), TracerError, r"cannot trace complex parameter 'p0' \(torch\.complex64\)"),
]


@pytest.mark.parametrize("make, error, message", REFUSED, ids=["no param_groups", "complex"])
def test_refused_at_construction(tmp_path, make, error, message):
    path = tmp_path / "run.trace.csv"
    with pytest.raises(error, match=message):
        Recorder(make(), path)
    assert not path.exists()


@pytest.mark.parametrize(
    "make, name",
    [
        (lambda p: torch.optim.SGD(p, lr=0.1), "sgd"),
        (lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9), "momentum"),
        (lambda p: torch.optim.RMSprop(p), "rmsprop"),
        (lambda p: torch.optim.Adam(p), "adam"),
        (lambda p: torch.optim.AdamW(p), "adamw"),
        (lambda p: torch.optim.NAdam(p), "nadam"),
        (lambda p: torch.optim.Rprop(p), "rprop"),
    ],
    ids=["sgd", "momentum", "rmsprop", "adam", "adamw", "nadam", "rprop"],
)
def test_display_name(tmp_path, make, name):
    optimizer = make([torch.zeros(2, requires_grad=True)])
    assert optimizer_name(optimizer) == name
    assert Recorder(optimizer, tmp_path / "run.trace.csv").meta["optimizer"]["name"] == name
