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
    assert main(["trace", "--quiet", "--overwrite", "--out", str(out), *args]) == 0  # tests reuse the name
    return load_trace(out)


def test_trace_command_writes_a_complete_trace_and_says_where(tmp_path, capsys):
    out = tmp_path / "adam.trace.csv"
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
    (["--optimizer", "adam", "--scheduler", "cosine:T_max=-5"], r"bad value '-5' for cosine:T_max; expected an integer >= 1"),
    (["--optimizer", "adam", "--epochs", "2", "--scheduler", "onecycle:max_lr=0.1;total_steps=3"],
     r"plans 3 steps \(total_steps\) but the run steps it 16 times \(once per update: 2 epochs of 8 updates\); "
     r"give total_steps >= 16"),
    (["--optimizer", "adam", "--epochs", "3", "--scheduler-every", "epoch",
      "--scheduler", "onecycle:max_lr=0.1;epochs=1;steps_per_epoch=2"],
     r"plans 2 steps \(epochs \* steps_per_epoch\) but the run steps it 3 times \(once per epoch"),
    (["--optimizer", "adam", "--scheduler", "onecycle:max_lr=0.1"], r"'onecycle' needs total_steps, or epochs and"),
]

# --out values that cannot be written: (out relative to tmp_path, or absolute; message regex)
BAD_OUTPUTS = [
    (".", r"cannot write the trace to '.*': it is a directory; expected a file path"),
    ("run.png", r"a trace is a CSV file named \*\.trace\.csv, got the suffix '\.png' \(figures are drawn"),
    ("run.trace", r"got the suffix '\.trace'"),
    ("missing/run.trace.csv", r"directory '.*missing' does not exist \(it is not created; make it first\)"),
    ("/proc/x.trace.csv", r"cannot write the trace to '/proc/x\.trace\.csv': cannot create a file in '/proc': \w"),
    ("existing.trace.csv", r"the file exists; pass --overwrite"),
]


def _fails_with_one_line(capsys, argv, message):
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert error.startswith("tracer: error: ") and error.count("\n") == 1, error
    assert re.search(message, error), error


def _existing(tmp_path):
    existing = tmp_path / "existing.trace.csv"
    existing.write_text("a trace the user keeps\n")
    return existing


@pytest.mark.parametrize("arguments, message", INVALID, ids=[" ".join(a) for a, _ in INVALID])
def test_invalid_input_exits_2_with_one_line_and_writes_nothing(tmp_path, capsys, arguments, message):
    out = tmp_path / "run.trace.csv"
    _fails_with_one_line(capsys, ["trace", "--out", str(out), *arguments], message)
    assert list(tmp_path.iterdir()) == []
    # The same bad input over an existing trace, with --overwrite: the trace stays as it was.
    existing = _existing(tmp_path)
    _fails_with_one_line(capsys, ["trace", "--overwrite", "--out", str(existing), *arguments], message)
    assert existing.read_text() == "a trace the user keeps\n" and list(tmp_path.iterdir()) == [existing]


@pytest.mark.parametrize("out, message", BAD_OUTPUTS, ids=[o for o, _ in BAD_OUTPUTS])
def test_an_output_that_cannot_be_written_is_one_line(tmp_path, capsys, out, message):
    existing = _existing(tmp_path)
    _fails_with_one_line(capsys, ["trace", "--optimizer", "sgd", "--epochs", "1", "--out", str(tmp_path / out)],
                         message)
    assert list(tmp_path.iterdir()) == [existing] and existing.read_text() == "a trace the user keeps\n"


def test_overwrite_replaces_an_existing_trace_only_when_the_run_ends(tmp_path):
    existing = _existing(tmp_path)
    assert main(["trace", "--quiet", "--optimizer", "sgd", "--epochs", "1", "--overwrite", "--out", str(existing)]) == 0
    assert load_trace(existing).status == "complete" and list(tmp_path.iterdir()) == [existing]


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


def test_divergence_is_a_result_not_an_error(tmp_path, capsys):
    out = run_experiment(RunConfig("saddle", "sgd", 0.5, 400, tmp_path / "saddle.trace.csv"))
    trace = load_trace(out)
    assert trace.status == "diverged" and trace.diverged_at == len(trace) < 400
    # The command says it in the one wording, with the trailer's update, and names the CLI's option.
    again = tmp_path / "again.trace.csv"
    assert main(["trace", "--problem", "saddle", "--optimizer", "sgd", "--lr", "0.5", "--epochs", "400",
                 "--out", str(again)]) == 0
    said = capsys.readouterr()
    assert said.out.startswith(f"wrote {again}: {len(trace)} updates, diverged at update {trace.diverged_at}, final ")
    err = said.err
    assert f"tracer: {again}: diverged at update {trace.diverged_at}: " in err
    assert "pass --on-divergence continue" in err and "on_divergence=" not in err
    # --on-divergence continue records every update; the trailer still says where it diverged.
    kept = _trace(tmp_path, "--problem", "saddle", "--optimizer", "sgd", "--lr", "0.5", "--epochs", "400",
                  "--on-divergence", "continue")
    assert len(kept) == 400 and kept.status == "diverged" and kept.diverged_at == trace.diverged_at


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
    assert list(tmp_path.iterdir()) == [out]


def test_interrupting_an_overwrite_keeps_both_the_old_trace_and_the_new_rows(tmp_path, monkeypatch, capsys):
    existing = _existing(tmp_path)
    calls = {"n": 0}
    original = OrbitProblem.loss

    def failing_loss(self, model, batch):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return original(self, model, batch)

    monkeypatch.setattr(OrbitProblem, "loss", failing_loss)
    assert main(["trace", "--quiet", "--optimizer", "sgd", "--epochs", "1", "--overwrite", "--out", str(existing)]) == 130
    assert existing.read_text() == "a trace the user keeps\n"
    (partial,) = [p for p in tmp_path.iterdir() if p != existing]
    assert partial.name.startswith("existing.trace.csv.") and partial.suffix == ".partial"
    assert load_trace(partial).status == "interrupted" and len(load_trace(partial)) == 3
    said = capsys.readouterr().err.splitlines()
    assert said == ["tracer: interrupted",
                    f"tracer: the 3 updates recorded are in {str(partial)!r}; {str(existing)!r} is unchanged"]


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
