"""The runner and `tracer trace`: validation before any file, the update loop, schedulers, interruption."""

import io
import json
import re

import pytest

from tracer.cli import main
from tracer.errors import TracerError
from tracer.problems.orbit import OrbitProblem
from tracer.progress import Progress
from tracer.run import RunConfig, run_experiment
from tracer.trace import load_trace


def _trace(tmp_path, *args):
    out = tmp_path / "run.trace.csv"
    assert main(["trace", "--quiet", "--out", str(out), *args]) == 0
    return load_trace(out)


def test_trace_command_writes_a_complete_trace_and_says_where(tmp_path, capsys):
    out = tmp_path / "sub" / "adam.trace.csv"
    assert main(["trace", "--problem", "orbit", "--optimizer", "adam", "--lr", "0.01", "--epochs", "2",
                 "--out", str(out)]) == 0
    said = capsys.readouterr()
    assert said.out.startswith(f"wrote {out}: 16 updates, complete, final Wa=")
    assert said.err == ""  # not a terminal: no progress bar
    trace = load_trace(out)
    assert trace.status == "complete" and len(trace) == 16
    assert list(trace["epoch"]) == [e for e in range(2) for _ in range(8)]
    assert list(trace["batch"][:9]) == [*range(8), 0]
    meta = trace.meta
    assert meta["label"] == "Adam lr=0.01"
    assert meta["problem"] == {"name": "orbit", "seed": 9999, "batch_size": 64}
    assert meta["optimizer"]["name"] == "adam" and meta["optimizer"]["impl"] == "tracer"
    assert (meta["epochs"], meta["batch_size"], meta["seed"]) == (2, 64, 9999)
    assert meta["scheduler"] is None and meta["coordinates"] == ["Wa", "Wb"]


INVALID = [
    # (arguments, message regex)
    (["--optimizer", "adam", "--lr", "0"], r"invalid learning rate 0.0; expected a number > 0"),
    (["--optimizer", "adam", "--lr", "-0.1"], r"invalid learning rate -0.1"),
    (["--optimizer", "adam", "--epochs", "0"], r"invalid epochs 0; expected an integer >= 1"),
    (["--optimizer", "adan"], r"unknown optimizer 'adan'; expected one of: sgd, momentum, rmsprop, adam, adamw"),
    (["--optimizer", "adam", "--problem", "mnist"], r"unknown problem 'mnist'; expected one of: orbit, linear"),
    (["--optimizer", "adam", "--impl", "jax"], r"unknown impl 'jax'; expected one of: tracer, torch"),
    (["--optimizer", "adam", "--scheduler", "step:gamma=0.5"], r"scheduler 'step' needs step_size"),
    (["--optimizer", "adam", "--scheduler-every", "batch", "--scheduler", "exponential:gamma=0.9"],
     r"unknown scheduler_every 'batch'; expected one of: update, epoch"),
    (["--optimizer", "adam", "--granularity", "some"], r"unknown granularity 'some'; expected one of: full, summary"),
    (["--optimizer", "adam", "--momentum", "0.9"], r"momentum"),
    (["--optimizer", "momentum", "--momentum", "-1"], r"[Mm]omentum"),
    (["--optimizer", "adam", "--betas", "0.9,0.99", "--beta1", "0.8"], r"either --betas or --beta1/--beta2"),
    (["--optimizer", "adam", "--batch-size", "0"], r"invalid batch size 0"),
    (["--optimizer", "adam", "--problem", "rosenbrock", "--batch-size", "8"], r"bad options for problem"),
    (["--optimizer", "adam", "--out", "."], r"cannot write the trace to '.': expected a file path"),
    (["--optimizer", "adam", "--every", "0"], r"invalid every 0; accepted: a whole number of updates >= 1"),
]


@pytest.mark.parametrize("arguments, message", INVALID, ids=[" ".join(a) for a, _ in INVALID])
def test_invalid_input_exits_2_with_one_line_and_writes_nothing(tmp_path, capsys, arguments, message):
    out = tmp_path / "never" / "run.trace.csv"
    assert main(["trace", "--out", str(out), *arguments]) == 2
    error = capsys.readouterr().err
    assert error.startswith("tracer: error: ") and error.count("\n") == 1
    assert re.search(message, error), error
    assert not out.exists() and not out.parent.exists()


def test_hyperparameter_options_reach_the_optimizer(tmp_path):
    trace = _trace(tmp_path, "--optimizer", "adam", "--epochs", "1", "--beta1", "0.8", "--eps", "1e-6",
                   "--amsgrad", "--weight-decay", "0.01")
    hyper = trace.meta["optimizer"]["hyperparameters"]
    assert hyper["betas"] == [0.8, 0.999] and hyper["eps"] == 1e-6 and hyper["amsgrad"] is True
    assert hyper["weight_decay"] == 0.01
    trace = _trace(tmp_path, "--optimizer", "sgd", "--epochs", "1", "--momentum", "0.5", "--nesterov",
                   "--label", "mine", "--impl", "torch")
    hyper = trace.meta["optimizer"]["hyperparameters"]
    assert hyper["momentum"] == 0.5 and hyper["nesterov"] is True
    assert trace.meta["label"] == "mine" and trace.meta["optimizer"]["impl"] == "torch"


def test_scheduler_steps_after_every_update_on_orbit(tmp_path):
    trace = _trace(tmp_path, "--optimizer", "adam", "--lr", "0.12", "--epochs", "2",
                   "--scheduler", "multistep:gamma=0.5;milestones=3,10")
    assert trace.meta["scheduler"] == "multistep:milestones=3,10;gamma=0.5"
    assert trace.meta["scheduler_every"] == "update"
    assert list(trace["lr"]) == [0.12] * 3 + [0.06] * 7 + [0.03] * 6


def test_scheduler_every_epoch_on_request_and_by_default_on_linear(tmp_path):
    trace = _trace(tmp_path, "--optimizer", "adam", "--lr", "0.1", "--epochs", "3",
                   "--scheduler", "exponential:gamma=0.5", "--scheduler-every", "epoch")
    assert list(trace["lr"]) == [0.1] * 8 + [0.05] * 8 + [0.025] * 8
    linear = _trace(tmp_path, "--problem", "linear", "--optimizer", "sgd", "--lr", "0.1", "--epochs", "2",
                    "--scheduler", "step:step_size=1;gamma=0.5")
    assert linear.meta["scheduler_every"] == "epoch" and linear.meta["batch_size"] == 10
    assert list(linear["lr"]) == [0.1] * 100 + [0.05] * 100
    assert linear.meta["coordinates"] == ["weight[0]", "weight[1]", "bias[0]"]


def test_analytic_problem_one_update_per_epoch(tmp_path):
    trace = _trace(tmp_path, "--problem", "rosenbrock", "--optimizer", "adam", "--lr", "0.05", "--epochs", "20")
    assert len(trace) == 20 and set(trace["batch"]) == {0} and list(trace["epoch"]) == list(range(20))
    assert trace.meta["problem"] == {"name": "rosenbrock", "x0": -1.5, "y0": 2.0}
    assert trace.meta["batch_size"] is None and trace.meta["seed"] is None
    assert trace["x.theta"][0] == -1.5


def test_divergence_is_a_result_not_an_error(tmp_path):
    out = run_experiment(RunConfig("saddle", "sgd", 0.5, 400, tmp_path / "saddle.trace.csv"))
    trace = load_trace(out)
    assert trace.status == "diverged" and trace.diverged_at == len(trace) < 400


def test_interrupted_run_keeps_its_rows(tmp_path, monkeypatch):
    calls = {"n": 0}
    original = OrbitProblem.loss

    def failing_loss(self, model, batch):
        calls["n"] += 1
        if calls["n"] == 6:
            raise KeyboardInterrupt
        return original(self, model, batch)

    monkeypatch.setattr(OrbitProblem, "loss", failing_loss)
    out = tmp_path / "cut.trace.csv"
    with pytest.raises(KeyboardInterrupt):
        run_experiment(RunConfig("orbit", "sgd", 0.01, 3, out))
    trace = load_trace(out)
    assert trace.status == "interrupted" and len(trace) == 5


def test_run_config_is_a_frozen_record():
    config = RunConfig("orbit", "sgd", 0.01, 1, "x.trace.csv")
    with pytest.raises(AttributeError):
        config.lr = 0.1
    with pytest.raises(TracerError, match="invalid epochs 1.5"):
        run_experiment(RunConfig("orbit", "sgd", 0.01, 1.5, "x.trace.csv"))


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_bar_only_on_a_terminal_and_only_for_long_runs():
    terminal = _Terminal()
    with Progress(10, "run", delay=0.0, stream=terminal) as progress:
        for _ in range(10):
            progress.advance()
    shown = terminal.getvalue()
    assert shown.startswith("\rrun [") and "10/10" in shown and shown.endswith("\n")
    for stream, delay, enabled in ((io.StringIO(), 0.0, True), (_Terminal(), 60.0, True), (_Terminal(), 0.0, False)):
        with Progress(10, "run", delay=delay, stream=stream, enabled=enabled) as progress:
            progress.advance(10)
        assert stream.getvalue() == ""


def test_metadata_is_json_in_the_first_line(tmp_path):
    out = tmp_path / "m.trace.csv"
    run_experiment(RunConfig("orbit", "momentum", 0.01, 1, out, scheduler="multiplicative:factor=0.5;at=2-6/2"))
    meta = json.loads(out.read_text().splitlines()[0])
    assert meta["scheduler"] == "multiplicative:factor=0.5;at=2-6/2"
    assert meta["label"] == "Momentum lr=0.01 multiplicative:factor=0.5;at=2-6/2"


def test_every_records_a_sample_of_the_updates(tmp_path):
    out = tmp_path / "sampled.trace.csv"
    assert main(["trace", "--optimizer", "adam", "--epochs", "1", "--every", "3", "--quiet", "--out", str(out)]) == 0
    trace = load_trace(out)
    assert trace.meta["every"] == 3 and trace["update"].tolist() == [1.0, 4.0, 7.0]  # orbit: 8 updates per epoch
