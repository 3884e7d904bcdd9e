"""Any optimizer is traced, and no number it writes is wrong: the displacement check, state_keys, a registered
family, groups without lr, LBFGS's closure, add_param_group mid-run, Muon beside AdamW."""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pytest
import torch

from tracer import load_trace
from tracer.diff import diff_traces
from tracer.errors import TracerError
from tracer.families import Family, register_family, unregister_family
from tracer.info import format_summary, summarize
from tracer.probes import probe_sgd
from tracer.recorder import Recorder
from tracer.render import render_figure
from user_optimizers import Lion, SignSGD


def _train(optimizer, params, path, *, steps=6, closure=False, **options):
    """A tiny quadratic, traced; returns the parameters after the run (and the warnings raised)."""
    target = torch.linspace(-1, 1, 6)

    def loss_of():
        flat = torch.cat([p.reshape(-1) for p in params])
        return ((flat - target[: flat.numel()]) ** 2).sum() + (flat**4).sum()

    def step_closure():
        optimizer.zero_grad()
        loss = loss_of()
        loss.backward()
        return loss

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with Recorder(optimizer, path, named_parameters=[(f"w{k}", p) for k, p in enumerate(params)], **options):
            for _ in range(steps):
                if closure:
                    optimizer.step(step_closure)
                else:
                    step_closure()
                    optimizer.step()
    return [p.detach().clone() for p in params], [str(w.message) for w in caught if "tracer" in str(w.message)]


def _params():
    return [torch.tensor(0.3, requires_grad=True), torch.tensor([[0.1, -0.2], [0.4, 0.5]], requires_grad=True)]


class _LyingSGD(torch.optim.SGD):
    """Runs SGD's arithmetic exactly; only the family registered for it lies about d."""


def _lying_probe(grads, states, group, thetas):
    result = probe_sgd(grads, states, group, thetas)
    return dataclasses.replace(result, d=tuple(2 * d for d in result.d))


@pytest.fixture
def lying_family():
    register_family(Family("lying_sgd", (_LyingSGD,), "momentum_buffer", None, _lying_probe, momentum_v=True))
    yield
    unregister_family("lying_sgd")


def test_a_lying_probe_is_caught_and_d_switches_to_measured(tmp_path, lying_family):
    params = _params()
    path = tmp_path / "lying.trace.csv"
    _, messages = _train(_LyingSGD(params, lr=0.05, momentum=0.9), params, path)
    trace = load_trace(path)
    assert trace.meta["optimizer"]["name"] == "lying_sgd" and trace.meta["optimizer"]["d"] == "recomputed"
    # One warning per parameter, naming it and the size of the disagreement, at the first update.
    assert len(messages) == 2 and all("recomputed d disagrees with the displacement at update 1" in m for m in messages)
    assert "'w0'" in messages[0] and "'w1'" in messages[1]
    assert set(trace.trailer["d_switched"]) == {"w0", "w1"}
    assert trace.trailer["d_switched"]["w0"]["update"] == 1
    # From the switch on d is measured: (theta - theta_next) / lr, bit for bit.
    for coordinate in ["w0"] + [f"w1[{i}]" for i in range(4)]:
        theta = trace[f"{coordinate}.theta"]
        theta_next = np.append(theta[1:], trace.final[coordinate])
        assert (trace[f"{coordinate}.d"] == (theta - theta_next) / 0.05).all(), coordinate
    # Training itself is untouched.
    untraced = _LyingSGD(reference := _params(), lr=0.05, momentum=0.9)
    for _ in range(6):
        untraced.zero_grad()
        flat = torch.cat([p.reshape(-1) for p in reference])
        (((flat - torch.linspace(-1, 1, 6)[:5]) ** 2).sum() + (flat**4).sum()).backward()
        untraced.step()
    assert all(torch.equal(a, b.detach()) for a, b in zip(load_params(trace), reference))


def load_params(trace):
    final = trace.final
    return [torch.tensor(final["w0"], dtype=torch.float32),
            torch.tensor([final[f"w1[{i}]"] for i in range(4)], dtype=torch.float32).reshape(2, 2)]


def test_an_honest_probe_never_switches(tmp_path):
    params = _params()
    _, messages = _train(torch.optim.SGD(params, lr=0.05, momentum=0.9), params, tmp_path / "sgd.trace.csv")
    trace = load_trace(tmp_path / "sgd.trace.csv")
    assert messages == [] and "d_switched" not in trace.trailer


def test_an_sgd_subclass_overriding_step_gets_measured_d_and_says_so(tmp_path):
    """The case that once wrote SGD's d (2.0, 1.8, ...) for a sign update: now d is the sign, measured."""
    params = _params()
    _, messages = _train(SignSGD(params, lr=0.01), params, tmp_path / "sign.trace.csv")
    trace = load_trace(tmp_path / "sign.trace.csv")
    optimizer = trace.meta["optimizer"]
    assert (optimizer["name"], optimizer["d"]) == ("signsgd", "measured")
    assert optimizer["d_note"] == "user_optimizers.SignSGD overrides step() of the sgd family: d measured, not recomputed"
    assert optimizer["state_keys"] == {"v": None, "s": None}
    # |d| = 1 up to the rounding of theta - lr * sign in float32 (|theta| <= 1: 2 ulps of 1 over lr = 0.01).
    np.testing.assert_allclose(np.abs(trace["w1[0].d"]), 1.0, atol=2 * 2**-23 / 0.01)
    np.testing.assert_allclose(trace["step_size"], 0.01 * np.sqrt(5), rtol=1e-4)
    assert messages == []


def test_state_keys_name_v_and_s_of_a_users_optimizer(tmp_path):
    params = _params()
    _train(Lion(params, lr=0.01), params, tmp_path / "lion.trace.csv", state_keys={"v": "exp_avg"})
    trace = load_trace(tmp_path / "lion.trace.csv")
    assert trace.meta["optimizer"]["state_keys"] == {"v": "exp_avg", "s": None}
    assert (trace["w1[2].v"] == trace["w1[2].state:exp_avg"]).all() and np.isnan(trace["w1[2].s"]).all()


@pytest.mark.parametrize(
    "state_keys, message",
    [
        ({"v": "momentum"}, r"^state_keys v='momentum' is not an optimizer state key; Lion's state after its first step has exp_avg$"),
        ({"m": "exp_avg"}, r"^invalid state_keys \{'m': 'exp_avg'\}; accepted: a dict mapping 'v' and/or 's' to optimizer state keys"),
        ({"v": 3}, r"^invalid state_keys \{'v': 3\}"),
    ],
    ids=["unknown key", "unknown letter", "not a string"],
)
def test_bad_state_keys_are_refused_in_one_line(tmp_path, state_keys, message):
    params = _params()
    path = tmp_path / "lion.trace.csv"
    with pytest.raises(TracerError, match=message):
        _train(Lion(params, lr=0.01), params, path, state_keys=state_keys)
    if path.exists():  # refused at the first step: the trace ends there, readable
        assert load_trace(path).status == "interrupted"


def test_a_registered_family_names_a_packages_optimizer(tmp_path):
    class PackagedLion(Lion):
        pass

    register_family(Family("packaged_lion", (PackagedLion,), "exp_avg", None))
    try:
        params = _params()
        _train(PackagedLion(params, lr=0.01), params, tmp_path / "lion.trace.csv")
    finally:
        unregister_family("packaged_lion")
    optimizer = load_trace(tmp_path / "lion.trace.csv").meta["optimizer"]
    assert (optimizer["name"], optimizer["d"], optimizer["d_note"]) == ("packaged_lion", "measured", None)
    assert optimizer["state_keys"] == {"v": "exp_avg", "s": None}


@pytest.mark.parametrize(
    "family, message",
    [
        (Family("sgd", (Lion,), None, None), r"a family named 'sgd' is already in the table"),
        (Family("empty", (), None, None), r"family 'empty' must name its torch\.optim\.Optimizer subclasses"),
        ("lion", r"register_family takes a tracer\.families\.Family, got str"),
    ],
    ids=["taken name", "no classes", "not a family"],
)
def test_register_family_refuses_bad_records(family, message):
    with pytest.raises(TracerError, match=message):
        register_family(family)


class _StepSize(torch.optim.Optimizer):
    """Plain gradient descent whose group option is ``step_size``, not ``lr``: d has no scale."""

    def __init__(self, params, step_size=0.1):
        super().__init__(params, dict(step_size=step_size))

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                p.sub_(p.grad, alpha=group["step_size"])


def test_a_group_without_lr_has_empty_d_and_its_displacement(tmp_path):
    params = _params()
    _train(_StepSize(params), params, tmp_path / "plain.trace.csv", granularity="summary")
    trace = load_trace(tmp_path / "plain.trace.csv")
    assert trace.meta["optimizer"]["d_note"] == (
        "_stepsize is not in the family table: d measured; "
        "d empty for group 0: it has no lr (the displacement is still recorded)"
    ).replace("_stepsize is", "test_any_optimizer._StepSize is")
    assert np.isnan(trace["lr"]).all() and np.isnan(trace["w1.d_norm"]).all()
    assert (trace["w1.displacement"] > 0).all() and (trace["displacement"] > 0).all()
    assert (trace["step_size"] == 0).all()


def test_lbfgs_one_row_per_step_with_the_first_loss(tmp_path):
    params = _params()
    optimizer = torch.optim.LBFGS(params, lr=0.5, max_iter=4)
    evaluations = []
    real_step = optimizer.step

    def counting_step(closure):
        def counted():
            loss = closure()
            evaluations.append(loss.item())
            return loss
        return real_step(counted)

    optimizer.step = counting_step
    _train(optimizer, params, tmp_path / "lbfgs.trace.csv", steps=3, closure=True)
    trace = load_trace(tmp_path / "lbfgs.trace.csv")
    assert len(trace) == 3 and trace.status == "complete"
    assert len(evaluations) > 3  # the closure ran several times per step; the row keeps the first of each step
    assert trace["loss"][0] == evaluations[0]
    assert trace.meta["state"]["w0"].keys() >= {"d", "t", "old_dirs", "func_evals", "n_iter"}
    assert trace["w0.state:n_iter"][-1] > 3 and (trace["w0.state_norm:d"] > 0).all()


def _add_group_run(path):
    torch.manual_seed(0)
    first, second = torch.nn.Linear(3, 2), torch.nn.Linear(2, 1)
    optimizer = torch.optim.Adam(first.parameters(), lr=0.01)
    x = torch.randn(8, 3)
    messages = []

    def step():
        loss = second(torch.tanh(first(x))).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    if path is None:
        for update in range(6):
            if update == 3:
                optimizer.add_param_group({"params": second.parameters(), "lr": 0.02})
            step()
    else:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with Recorder(optimizer, path, granularity="summary"):
                for update in range(6):
                    if update == 3:
                        optimizer.add_param_group({"params": second.parameters(), "lr": 0.02})
                    step()
        messages = [str(w.message) for w in caught if "tracer" in str(w.message)]
    return [p.detach().clone() for p in [*first.parameters(), *second.parameters()]], messages


def test_add_param_group_mid_run_ends_the_trace_and_training_goes_on(tmp_path):
    path = tmp_path / "grow.trace.csv"
    traced, messages = _add_group_run(path)
    untraced, _ = _add_group_run(None)
    assert all(torch.equal(a, b) for a, b in zip(traced, untraced))
    trace = load_trace(path)
    assert (len(trace), trace.status) == (3, "interrupted")
    assert trace.trailer["reason"].startswith("the optimizer's parameter groups changed before update 4")
    assert len(messages) == 1 and "training goes on untraced" in messages[0]


def test_muon_beside_adamw_two_traces_taken_together(tmp_path):
    """Muon for the matrices, AdamW for the rest, in one loop: one trace each, read together by info, render, diff."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    matrices = [p for p in model.parameters() if p.dim() == 2]
    others = [p for p in model.parameters() if p.dim() != 2]
    muon, adamw = torch.optim.Muon(matrices, lr=0.02), torch.optim.AdamW(others, lr=0.01)
    names = {id(p): n for n, p in model.named_parameters()}
    x, y = torch.randn(32, 4), torch.randn(32, 1)
    paths = [tmp_path / "muon.trace.csv", tmp_path / "adamw.trace.csv"]
    with Recorder(muon, paths[0], named_parameters=[(names[id(p)], p) for p in matrices], granularity="summary",
                  meta={"label": "Muon (matrices)"}), \
         Recorder(adamw, paths[1], named_parameters=[(names[id(p)], p) for p in others], granularity="summary",
                  meta={"label": "AdamW (biases)"}):
        for _ in range(5):
            loss = torch.nn.functional.mse_loss(model(x), y)
            muon.zero_grad()
            adamw.zero_grad()
            loss.backward()
            muon.step()
            adamw.step()
    muon_trace, adamw_trace = map(load_trace, paths)
    assert (muon_trace.meta["optimizer"]["name"], adamw_trace.meta["optimizer"]["name"]) == ("muon", "adamw")
    assert muon_trace.meta["optimizer"]["state_keys"] == {"v": "momentum_buffer", "s": None}
    assert muon_trace.meta["summarized"] == ["0.weight", "2.weight"] and adamw_trace.meta["summarized"] == ["0.bias", "2.bias"]
    assert "muon" in format_summary(summarize(muon_trace))
    assert render_figure("dashboard", paths, tmp_path / "both.png").stat().st_size > 1000
    report = diff_traces(muon_trace, adamw_trace)
    assert not report.equal and "only in" in report.report()


def test_the_state_figure_needs_state_columns(tmp_path):
    from tracer.errors import RenderError

    params = _params()
    path = tmp_path / "plain.trace.csv"
    _train(torch.optim.SGD(params, lr=0.05), params, path, record_state=False)
    assert not [c for c in load_trace(path).columns if ".state" in c]
    with pytest.raises(RenderError, match=r"figure 'state' needs the optimizer's state columns"):
        render_figure("state", [path], tmp_path / "state.png")
