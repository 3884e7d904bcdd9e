"""assert_optimizers_match / compare_optimizers and `tracer check-optimizer`: equal pairs, known
differences, differing state keys, closures, bad input, and the docs page's example (docs/check-optimizer.md) as written."""

from __future__ import annotations

import functools
import math
import pathlib
import re
import shlex
import subprocess
import sys

import numpy as np
import pytest
import torch

import tracer.optim
from tracer.cli import main
from tracer.errors import TracerError
from tracer.optimizer_check import parse_config, parse_state_keys
from tracer.optimizer_check.compare import _difference
from tracer.testing import assert_optimizers_match, compare_optimizers

PAGE = pathlib.Path(__file__).resolve().parents[1] / "docs" / "check-optimizer.md"
FLOAT32_EPS = torch.finfo(torch.float32).eps


# ---------------------------------------------------------------- equal pairs


def test_ours_equal_torch_for_loop_in_every_case_and_every_state_key():
    result = assert_optimizers_match(
        tracer.optim.SGD,
        functools.partial(torch.optim.SGD, foreach=False),
        configs=[{"lr": 0.1, "momentum": 0.9}, {"lr": 0.1, "nesterov": True, "momentum": 0.5}],
    )
    # 2 configs x 2 dtypes x (no scheduler, StepLR)
    assert len(result.cases) == 8 and result.equal
    assert result.compared_state_keys == {"momentum_buffer"}
    assert not result.only_in_candidate and not result.only_in_reference
    assert result.report().startswith("tracer.optim.sgd.SGD matches torch.optim.sgd.SGD(foreach=False) bit for bit")


class _OurLBFGS(torch.optim.LBFGS):
    """torch's L-BFGS under another name: a candidate that takes a closure."""


def test_closure_taking_optimizers_are_compared_through_the_closure():
    # strong_wolfe evaluates the closure several times per update, at other points.
    config = {"lr": 0.5, "line_search_fn": "strong_wolfe", "max_iter": 4}
    result = assert_optimizers_match(_OurLBFGS, torch.optim.LBFGS, configs=[config], steps=6)
    assert {"d", "t", "old_dirs", "func_evals", "n_iter"} <= result.compared_state_keys
    # Without the line search the candidate moves elsewhere at the first update.
    no_search = compare_optimizers(
        lambda params, **kwargs: _OurLBFGS(params, **{**kwargs, "line_search_fn": None}),
        torch.optim.LBFGS, configs=[config], steps=6, schedulers={}, dtypes=[torch.float64],
    )
    assert not no_search.equal and no_search.update == 1
    assert no_search.differences[0].what == "parameter 0"


class _StepWithoutClosure(torch.optim.SGD):
    def step(self):  # noqa: D102 (an optimizer whose step takes no closure)
        return super().step()


def test_an_optimizer_whose_step_takes_no_closure_gets_its_gradients_set():
    assert_optimizers_match(_StepWithoutClosure, torch.optim.SGD, configs=[{"lr": 0.1, "momentum": 0.9}])


# ---------------------------------------------------------------- known differences


class _AdamNudgedAtUpdate3(torch.optim.Adam):
    """torch's Adam, except that exp_avg of parameter 1 gets NUDGE added after update 3."""

    NUDGE = 1e-3

    def step(self, closure=None):
        loss = super().step(closure)
        second = self.param_groups[0]["params"][1]
        state = self.state[second]
        if state["step"].item() == 3:
            state["exp_avg"].add_(self.NUDGE)
        return loss


def test_a_difference_is_reported_at_its_update_parameter_and_state_key():
    result = compare_optimizers(_AdamNudgedAtUpdate3, torch.optim.Adam, dtypes=[torch.float32], schedulers={})
    assert not result.equal and result.update == 3
    assert [difference.what for difference in result.differences] == ["parameter 1 state 'exp_avg'"]
    difference = result.differences[0]
    assert difference.state_key == "exp_avg"
    # float32 rounding of (exp_avg + 1e-3) - exp_avg: within one ulp of exp_avg (|exp_avg| < 4 here).
    assert difference.absolute == pytest.approx(_AdamNudgedAtUpdate3.NUDGE, abs=4 * FLOAT32_EPS)
    # In float32 ulps of the reference value: numpy's spacing of it, the textbook definition.
    assert difference.precision == "float32"
    at_worst = abs(difference.candidate_value - difference.reference_value)
    assert difference.ulps == at_worst / float(np.spacing(np.float32(abs(difference.reference_value))))
    # The element named is the one furthest in ulps; the absolute difference is the largest over all.
    assert 0 < at_worst <= difference.absolute
    report = result.report()
    assert "first at update 3 of 25, config {}, float32, no scheduler:" in report
    assert "parameter 1 state 'exp_avg': differs by up to 0.001" in report
    assert "equal at this update: state exp_avg_sq, step" in report
    assert "configs=[{}]" in report and "steps=3" in report
    with pytest.raises(AssertionError, match=r"first at update 3 of 25"):
        assert_optimizers_match(_AdamNudgedAtUpdate3, torch.optim.Adam)
    # Accepting that many ulps lets update 3 pass: the next difference (if any) is later.
    looser = compare_optimizers(
        _AdamNudgedAtUpdate3, torch.optim.Adam, dtypes=[torch.float32], schedulers={}, ulps=difference.ulps
    )
    assert looser.equal or looser.update > 3


def test_a_scheduler_case_names_the_scheduler():
    class ReadsLrOnce(torch.optim.SGD):
        """SGD that keeps the lr it was built with: a scheduler cannot change it."""

        def step(self, closure=None):
            for group in self.param_groups:
                group.setdefault("first_lr", group["lr"])
                group["lr"], scheduled = group["first_lr"], group["lr"]
            loss = super().step(closure)
            for group in self.param_groups:
                group["lr"] = scheduled
            return loss

    result = compare_optimizers(ReadsLrOnce, torch.optim.SGD, configs=[{"lr": 0.1}], dtypes=[torch.float64])
    # StepLR halves lr after update 5: update 6 is the first to use another lr.
    assert result.case.scheduler == "StepLR" and result.update == 6
    assert [d.what for d in result.differences] == ["parameter 0", "parameter 1", "parameter 2", "parameter 3"]
    assert "scheduler StepLR" in result.report() and "schedulers={'StepLR': ...}" in result.report()


# ---------------------------------------------------------------- state keys


def _page_block(heading: str, language: str, index: int = 0) -> str:
    """The index-th ```language block of the page docs/check-optimizer.md (its title: `heading`)."""
    text = PAGE.read_text()
    assert text.startswith(f"{heading}\n")
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.S)[index]


CHECK_SECTION = "# Check your own optimizer: `tracer check-optimizer`"
WRONG_LINE = 'denom = (state["v"] / (1 - beta2**t) + group["eps"]).sqrt()'
TORCH_LINE = 'denom = (state["v"].sqrt() / (1 - beta2**t) ** 0.5).add_(group["eps"])'


def _my_adam(fixed: bool) -> type[torch.optim.Optimizer]:
    source = _page_block(CHECK_SECTION, "python")
    assert WRONG_LINE in source
    namespace: dict = {}
    exec(source.replace(WRONG_LINE, TORCH_LINE) if fixed else source, namespace)  # noqa: S102 (the page's code)
    return namespace["MyAdam"]


def test_state_keys_only_one_has_are_reported_and_a_key_map_pairs_them():
    my_adam = _my_adam(fixed=True)
    unmapped = assert_optimizers_match(my_adam, torch.optim.Adam, configs=[{"lr": 0.01}])
    assert unmapped.only_in_candidate == {"m", "v"}
    assert unmapped.only_in_reference == {"exp_avg", "exp_avg_sq"}
    assert unmapped.compared_state_keys == {"step"}
    assert "state keys only the candidate has: m, v" in unmapped.report()
    mapped = assert_optimizers_match(
        my_adam, torch.optim.Adam, configs=[{"lr": 0.01}], state_key_map={"m": "exp_avg", "v": "exp_avg_sq"}
    )
    assert mapped.compared_state_keys == {"step", "exp_avg", "exp_avg_sq"}
    assert not mapped.only_in_candidate and not mapped.only_in_reference


# ---------------------------------------------------------------- bad input

BAD_INPUT = [
    (dict(candidate=42), r"the candidate 42 is not callable; expected an optimizer class"),
    (dict(reference=dict), r"the reference dict is not an optimizer \(not a subclass of torch.optim.Optimizer\)"),
    (dict(candidate=lambda params, **config: params), r"returned list, not a torch.optim.Optimizer"),
    (dict(configs=[{"lr": -1.0}]), r"rejects the configuration \{'lr': -1.0\}: Invalid learning rate: -1.0"),
    (dict(configs=[{"nonsense": 1}]), r"rejects the configuration \{'nonsense': 1\}: .*unexpected keyword argument 'nonsense'"),
    (dict(configs={"lr": 0.1}), r"configs must be a sequence of dicts of keyword arguments, got \{'lr': 0.1\}"),
    (dict(steps=0), r"steps must be a positive integer, got 0"),
    (dict(ulps=-1), r"ulps must be a number >= 0 \(0: bit for bit\), got -1"),
]


@pytest.mark.parametrize(("arguments", "message"), BAD_INPUT, ids=[m[:30] for _, m in BAD_INPUT])
def test_bad_input_is_one_line_tracer_error(arguments, message):
    arguments = {"candidate": tracer.optim.Adam, "reference": torch.optim.Adam, "steps": 2, **arguments}
    with pytest.raises(TracerError, match=message) as raised:
        compare_optimizers(arguments.pop("candidate"), arguments.pop("reference"), **arguments)
    assert "\n" not in str(raised.value)


# ---------------------------------------------------------------- --config grammar

CONFIGS = [
    ("lr=0.01", {"lr": 0.01}),
    ("lr=0.01,betas=0.9,0.999", {"lr": 0.01, "betas": (0.9, 0.999)}),
    ("betas=0.9,0.999,lr=0.01", {"betas": (0.9, 0.999), "lr": 0.01}),
    (" lr = 0.1 , momentum=0.9, nesterov=True", {"lr": 0.1, "momentum": 0.9, "nesterov": True}),
    ("betas=(0.9,)", {"betas": (0.9,)}),
    ("eps=1e-6,weight_decay=0,foreach=None", {"eps": 1e-6, "weight_decay": 0, "foreach": None}),
    ("line_search_fn=strong_wolfe", {"line_search_fn": "strong_wolfe"}),
    ("", {}),
]


@pytest.mark.parametrize(("text", "config"), CONFIGS, ids=[text or "empty" for text, _ in CONFIGS])
def test_config_grammar(text, config):
    parsed = parse_config(text)
    assert parsed == config and [type(v) for v in parsed.values()] == [type(v) for v in config.values()]


BAD_CONFIGS = [
    ("lr", r"--config 'lr': 'lr' is not name=value; expected name=value items"),
    ("0.9,lr=1", r"--config '0.9,lr=1': '0.9' is not name=value"),
    ("lr=0.1,lr=0.2", r"--config 'lr=0.1,lr=0.2': lr is given twice"),
    ("lr=", r"--config 'lr=': lr has no value"),
]


@pytest.mark.parametrize(("text", "message"), BAD_CONFIGS, ids=[text for text, _ in BAD_CONFIGS])
def test_bad_config_is_a_tracer_error(text, message):
    with pytest.raises(TracerError, match=message):
        parse_config(text)


# ---------------------------------------------------------------- --state-key


def test_state_keys_take_several_pairs_per_option_and_repeats():
    assert parse_state_keys(["m=exp_avg,v=exp_avg_sq"]) == {"m": "exp_avg", "v": "exp_avg_sq"}
    assert parse_state_keys(["m=exp_avg", " v = exp_avg_sq "]) == {"m": "exp_avg", "v": "exp_avg_sq"}
    assert parse_state_keys([]) == {}


BAD_STATE_KEYS = [
    (["m"], r"--state-key 'm': 'm' is not one pair; expected CANDIDATE_KEY=REFERENCE_KEY pairs"),
    (["m=exp_avg,"], r"--state-key 'm=exp_avg,': '' is not one pair"),
    (["m=exp_avg=v"], r"--state-key 'm=exp_avg=v': 'm=exp_avg=v' is not one pair"),
    (["=exp_avg"], r"--state-key '=exp_avg': '=exp_avg' is not one pair"),
    (["m=exp_avg", "m=exp_avg_sq"], r"--state-key: candidate key 'm' is mapped twice"),
    (["m=exp_avg,v=exp_avg"], r"--state-key: reference key 'exp_avg' is named for two candidate keys"),
]


@pytest.mark.parametrize(("texts", "message"), BAD_STATE_KEYS, ids=[" ".join(t) for t, _ in BAD_STATE_KEYS])
def test_bad_state_keys_are_refused_in_one_line(texts, message, capsys):
    with pytest.raises(TracerError, match=message):
        parse_state_keys(texts)
    argv = ["check-optimizer", "torch.optim:Adam", "--against", "torch.optim.Adam", "--steps", "1"]
    assert main([*argv, *(f"--state-key={text}" for text in texts)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and re.match(rf"tracer: error: {message}", err), err


def test_cli_state_keys_in_one_option_compare_both_moments(tmp_path, monkeypatch, capsys):
    (tmp_path / "my_adam.py").write_text(_page_block(CHECK_SECTION, "python").replace(WRONG_LINE, TORCH_LINE))
    monkeypatch.chdir(tmp_path)
    argv = ["check-optimizer", "my_adam:MyAdam", "--against", "torch.optim.Adam", "--config", "lr=0.01",
            "--steps", "2", "--no-scheduler", "--dtype", "float32"]
    assert main([*argv, "--state-key", "m=exp_avg,v=exp_avg_sq"]) == 0
    assert "state keys compared: exp_avg, exp_avg_sq, step" in capsys.readouterr().out


# ---------------------------------------------------------------- tracer check-optimizer


def test_cli_exit_0_when_equal(capsys):
    status = main(["check-optimizer", "tracer.optim:SGD", "--against", "torch.optim.SGD",
                   "--config", "lr=0.1,momentum=0.9", "--steps", "5", "--dtype", "float64"])
    assert status == 0
    assert capsys.readouterr().out.startswith(
        "tracer.optim.sgd.SGD matches torch.optim.sgd.SGD bit for bit: 2 cases x 5 updates"
    )


def test_cli_exit_1_with_the_report_and_ulps_option(capsys):
    # AdamW's default weight decay is 1e-2, Adam's 0: they part at the first update.
    argv = ["check-optimizer", "torch.optim:Adam", "--against", "torch.optim.AdamW", "--config", "lr=0.01",
            "--steps", "3", "--no-scheduler", "--dtype", "float64"]
    assert main(argv) == 1
    out = capsys.readouterr().out
    assert out.startswith(
        "torch.optim.adam.Adam differs from torch.optim.adamw.AdamW (bit for bit) first at update 1 of 3, "
        "config {'lr': 0.01}, float64, no scheduler:\n  parameter 0: differs by up to "
    )
    # With the same weight decay (coupled in Adam, decoupled in AdamW) the moments part most:
    # exp_avg_sq by up to 2.3 times itself, 1.15e16 float64 ulps (2**52 ulps are a factor of 2).
    same_decay = [*argv[:5], "lr=0.01,weight_decay=0.01", *argv[6:]]
    assert main(same_decay) == 1
    assert "(1.15e+16 float64 ulps)" in capsys.readouterr().out
    assert main([*same_decay, "--ulps", "1e16"]) == 1
    assert main([*same_decay, "--ulps", "1e17"]) == 0


def test_a_one_ulp_difference_is_one_ulp_at_any_magnitude():
    """The report counts units in the last place of the reference in its dtype, as ``tracer diff`` does."""
    for value, dtype in [(0.3, torch.float32), (3e-5, torch.float32), (1234.5, torch.float64), (0.75, torch.bfloat16)]:
        reference = torch.tensor([value], dtype=dtype)
        candidate = torch.nextafter(reference, torch.tensor(math.inf, dtype=dtype)) if dtype != torch.bfloat16 else (
            (reference.view(torch.int16) + 1).view(torch.bfloat16))
        difference = _difference("x", candidate, reference, 0)
        assert (difference.ulps, difference.precision) == (1.0, str(dtype).removeprefix("torch."))
        assert "(1 " + difference.precision + " ulp)" in difference.describe()
        assert _difference("x", candidate, reference, 1) is None


BAD_CLI = [
    (["no_such_module:Adam"], r"cannot import 'no_such_module:Adam': No module named 'no_such_module'"),
    (["torch.optim:Adamm"], r"cannot import 'torch.optim:Adamm': 'torch.optim' has no 'Adamm'"),
    (["Adam"], r"cannot import 'Adam': expected package.module:Name or package.module.Name"),
    (["collections:OrderedDict"], r"the candidate collections.OrderedDict is not an optimizer"),
    (["torch.optim.Adam", "--config", "lr"], r"--config 'lr': 'lr' is not name=value"),
    (["torch.optim.Adam", "--config", "lr=-1"], r"torch.optim.adam.Adam rejects the configuration \{'lr': -1\}"),
]


@pytest.mark.parametrize(("arguments", "message"), BAD_CLI, ids=[" ".join(a) for a, _ in BAD_CLI])
def test_cli_exit_2_with_one_line(arguments, message, capsys):
    assert main(["check-optimizer", *arguments, "--against", "torch.optim.Adam", "--steps", "2"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and re.match(rf"tracer: error: {message}", err), err


# ---------------------------------------------------------------- docs/check-optimizer.md, as written


def _run_readme_command(directory: pathlib.Path) -> subprocess.CompletedProcess:
    command = shlex.split(_page_block(CHECK_SECTION, "bash"))
    assert command[0] == "tracer"
    return subprocess.run(
        [sys.executable, "-m", "tracer.cli", *command[1:]],
        cwd=directory, capture_output=True, text=True, timeout=300,
    )


def test_readme_wrong_adam_is_caught_at_update_1_and_the_torch_line_passes(tmp_path):
    source = _page_block(CHECK_SECTION, "python")
    shown = _page_block(CHECK_SECTION, "text").splitlines()
    (tmp_path / "wrong").mkdir()
    (tmp_path / "wrong" / "my_adam.py").write_text(source)
    wrong = _run_readme_command(tmp_path / "wrong")
    assert wrong.returncode == 1, wrong.stderr
    printed = wrong.stdout.splitlines()
    assert len(printed) == len(shown)
    for line, expected in zip(printed, shown):
        if line.lstrip().startswith("parameter"):
            # The two values' last digits depend on the CPU's float32 kernels; where and by how much do not.
            assert line.split(": candidate")[0] == expected.split(": candidate")[0]
        else:
            assert line == expected
    (tmp_path / "fixed").mkdir()
    (tmp_path / "fixed" / "my_adam.py").write_text(source.replace(WRONG_LINE, TORCH_LINE))
    fixed = _run_readme_command(tmp_path / "fixed")
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert fixed.stdout.startswith("my_adam.MyAdam matches torch.optim.adam.Adam bit for bit: 4 cases x 25 updates")


def test_readme_python_example_prints_what_the_readme_shows(capsys):
    exec(_page_block(CHECK_SECTION, "python", index=1), {})  # noqa: S102 (the page's code)
    assert capsys.readouterr().out == _page_block(CHECK_SECTION, "text", index=1)
