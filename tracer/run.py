"""Run one experiment: problem + optimizer (+ scheduler) under the Recorder.

`run_experiment(RunConfig(...))` is the library call, `tracer trace` the
command. Per update, as in the articles: forward, loss, zero_grad, backward,
note the loss, optimizer.step() (the Recorder's hooks write the row), then
scheduler.step() when the scheduler steps per update; a per-epoch scheduler
steps after the epoch's last update.

Files: everything is validated (problem, optimizer and its hyperparameters,
scheduler spec, lr, epochs) and built before the trace file is created, so
bad input leaves nothing behind. Once running, rows go straight to `out` and
are flushed one by one: an interrupted run (Ctrl-C, an exception) keeps the
rows it finished with an "interrupted" trailer, and a killed process keeps
them too (the file then reads back as "incomplete"). A run that diverges
ends with a "diverged" trailer and is returned like any other: divergence is
a result, not an error.
"""

from __future__ import annotations

import argparse
import math
import pathlib
import sys
from dataclasses import dataclass, field
from typing import Any, Mapping

from tracer.errors import DivergenceError, TracerError

SCHEDULER_EVERY = ("update", "epoch")
GRANULARITIES = ("full", "summary")
IMPLS = ("tracer", "torch")
DISPLAY_NAMES = {"sgd": "SGD", "momentum": "Momentum", "rmsprop": "RMSprop", "adam": "Adam", "adamw": "AdamW"}


@dataclass(frozen=True)
class RunConfig:
    """One run. `hyperparameters` are the optimizer's keyword arguments besides lr.

    `problem_options` go to `get_problem` (e.g. x0, y0 for the analytic
    surfaces); `seed` and `batch_size`, when given, override the problem's.
    `scheduler_every` None takes the problem's default (orbit: "update",
    linear: "epoch").
    """

    problem: str
    optimizer: str
    lr: float
    epochs: int
    out: pathlib.Path
    impl: str = "tracer"
    hyperparameters: Mapping[str, Any] = field(default_factory=dict)
    scheduler: str | None = None
    scheduler_every: str | None = None
    batch_size: int | None = None
    seed: int | None = None
    granularity: str = "full"
    every: int = 1  # record updates 1, 1 + every, ... (Recorder's every)
    label: str | None = None
    quiet: bool = True
    problem_options: Mapping[str, Any] = field(default_factory=dict)


def default_label(optimizer: str, lr: float, scheduler: str | None = None) -> str:
    """Legend text, e.g. "Adam lr=0.12 multistep:milestones=5,10,15,20;gamma=0.5"."""
    label = f"{DISPLAY_NAMES.get(optimizer, optimizer)} lr={lr:g}"
    return f"{label} {scheduler}" if scheduler else label


def _check_choice(what: str, value: Any, accepted: tuple[str, ...]) -> None:
    if value not in accepted:
        raise TracerError(f"unknown {what} {value!r}; expected one of: {', '.join(accepted)}")


def _validate(config: RunConfig):
    """Everything that can be checked before torch objects exist; returns the parsed scheduler spec."""
    from tracer.problems import PROBLEM_NAMES
    from tracer.schedulers import parse_scheduler_spec

    _check_choice("problem", config.problem, PROBLEM_NAMES)
    _check_choice("impl", config.impl, IMPLS)
    _check_choice("granularity", config.granularity, GRANULARITIES)
    if isinstance(config.every, bool) or not isinstance(config.every, int) or config.every < 1:
        raise TracerError(f"invalid every {config.every!r}; accepted: a whole number of updates >= 1")
    if config.scheduler_every is not None:
        _check_choice("scheduler_every", config.scheduler_every, SCHEDULER_EVERY)
    if not (isinstance(config.lr, (int, float)) and math.isfinite(config.lr) and config.lr > 0):
        raise TracerError(f"invalid learning rate {config.lr!r}; expected a number > 0")
    if not isinstance(config.epochs, int) or config.epochs < 1:
        raise TracerError(f"invalid epochs {config.epochs!r}; expected an integer >= 1")
    out = pathlib.Path(config.out)
    if out.is_dir() or (out.parent.exists() and not out.parent.is_dir()):
        raise TracerError(f"cannot write the trace to {str(out)!r}: expected a file path, not a directory")
    if config.batch_size is not None and (not isinstance(config.batch_size, int) or config.batch_size < 1):
        raise TracerError(f"invalid batch size {config.batch_size!r}; expected an integer >= 1")
    return None if config.scheduler is None else parse_scheduler_spec(config.scheduler)


def _build_problem(config: RunConfig):
    from tracer.problems import get_problem

    options = dict(config.problem_options)
    for key in ("seed", "batch_size"):
        value = getattr(config, key)
        if value is not None:
            options[key] = value
    return get_problem(config.problem, **options)


def run_experiment(config: RunConfig) -> pathlib.Path:
    """Train `config.problem` with `config.optimizer`, tracing every update into `config.out`."""
    spec = _validate(config)
    from tracer.optim import OPTIMIZER_NAMES, build_optimizer

    _check_choice("optimizer", config.optimizer, OPTIMIZER_NAMES)
    from tracer.progress import Progress
    from tracer.recorder import Recorder
    from tracer.schedulers import build_scheduler

    problem = _build_problem(config)
    model = problem.build_model()
    try:
        optimizer = build_optimizer(
            config.optimizer, model.parameters(), impl=config.impl, lr=config.lr, **dict(config.hyperparameters)
        )
    except ValueError as error:  # torch's own checks: "Invalid momentum value: -1"
        raise TracerError(f"invalid hyperparameter for {config.optimizer}: {error}") from None
    scheduler = build_scheduler(optimizer, spec)
    every = config.scheduler_every or problem.scheduler_every
    meta = {
        "label": config.label or default_label(config.optimizer, config.lr, spec and spec.text),
        "problem": problem.meta,
        "optimizer": {"name": config.optimizer},
        "scheduler": spec and spec.text,
        "scheduler_every": every if scheduler is not None else None,
        "epochs": config.epochs,
        "batch_size": problem.batch_size,
        "seed": problem.options.get("seed"),
    }
    out = pathlib.Path(config.out)
    recorder = Recorder(optimizer, out, named_parameters=model.named_parameters(),
                        granularity=config.granularity, meta=meta, every=config.every)
    out.parent.mkdir(parents=True, exist_ok=True)
    progress = Progress(config.epochs * problem.batches_per_epoch, out.name, enabled=not config.quiet)
    try:
        with recorder, progress:
            for epoch in range(config.epochs):
                for batch_index, batch in problem.batches(epoch):
                    loss = problem.loss(model, batch)
                    optimizer.zero_grad()
                    loss.backward()
                    recorder.note(loss=loss.item(), epoch=epoch, batch=batch_index)
                    optimizer.step()
                    if scheduler is not None and every == "update":
                        scheduler.step()
                    progress.advance()
                if scheduler is not None and every == "epoch":
                    scheduler.step()
    except DivergenceError as error:
        if not config.quiet:
            print(f"tracer: {out}: {error}", file=sys.stderr)
    return out


# ----------------------------------------------------------------- the command

HYPERPARAMETER_OPTIONS = (
    # (flag, keyword, type or "flag", help)
    ("--momentum", "momentum", float, "SGD momentum factor (momentum: 0.9)"),
    ("--dampening", "dampening", float, "SGD dampening"),
    ("--nesterov", "nesterov", "flag", "SGD Nesterov momentum"),
    ("--weight-decay", "weight_decay", float, "L2 penalty (decoupled for AdamW)"),
    ("--alpha", "alpha", float, "RMSprop smoothing constant"),
    ("--eps", "eps", float, "term added to the denominator"),
    ("--centered", "centered", "flag", "RMSprop: normalise by the estimated variance"),
    ("--beta1", "beta1", float, "Adam first-moment coefficient"),
    ("--beta2", "beta2", float, "Adam second-moment coefficient"),
    ("--amsgrad", "amsgrad", "flag", "Adam: AMSGrad variant"),
    ("--maximize", "maximize", "flag", "maximise the objective"),
)


def _betas(text: str) -> tuple[float, float]:
    try:
        first, second = (float(item) for item in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected two numbers B1,B2, got {text!r}") from None
    return first, second


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Options of `tracer trace`."""
    parser.add_argument("--problem", default="orbit",
                        help="orbit (default), linear, rosenbrock, beale, quadratic or saddle")
    parser.add_argument("--optimizer", required=True, help="sgd, momentum, rmsprop, adam or adamw")
    parser.add_argument("--lr", type=float, default=0.01, help="learning rate (default 0.01)")
    parser.add_argument("--epochs", type=int, default=100, help="epochs (default 100)")
    parser.add_argument("--out", type=pathlib.Path, required=True, help="trace file to write (*.trace.csv)")
    for flag, keyword, kind, help_text in HYPERPARAMETER_OPTIONS:
        if kind == "flag":
            parser.add_argument(flag, dest=keyword, action="store_const", const=True, default=None, help=help_text)
        else:
            parser.add_argument(flag, dest=keyword, type=kind, default=None, help=help_text)
    parser.add_argument("--betas", type=_betas, default=None, metavar="B1,B2", help="Adam betas, e.g. 0.9,0.999")
    parser.add_argument("--impl", default="tracer", help="tracer (ours, default) or torch (torch.optim)")
    parser.add_argument("--seed", type=int, default=None, help="data and shuffling seed (orbit: 9999)")
    parser.add_argument("--batch-size", type=int, default=None, help="mini-batch size (orbit: 64)")
    parser.add_argument("--granularity", default="full", help="full (every coordinate) or summary (per tensor)")
    parser.add_argument("--every", type=int, default=1, metavar="K", help="record updates 1, 1+K, 1+2K, ... only (default 1: all)")
    parser.add_argument("--scheduler", default=None, metavar="SPEC",
                        help="lr scheduler, e.g. 'multistep:milestones=5,10;gamma=0.5' (see tracer.schedulers); none: no scheduler")
    parser.add_argument("--scheduler-every", default=None, help="update or epoch: when the scheduler steps (default: per update; linear: per epoch)")
    parser.add_argument("--label", default=None, help="legend text (default e.g. 'Adam lr=0.01')")
    parser.add_argument("--quiet", action="store_true", help="no progress bar, no summary line")


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """The RunConfig for parsed `tracer trace` arguments."""
    hyperparameters = {
        keyword: getattr(args, keyword)
        for _, keyword, _, _ in HYPERPARAMETER_OPTIONS
        if keyword not in ("beta1", "beta2") and getattr(args, keyword) is not None
    }
    if args.betas is not None and (args.beta1 is not None or args.beta2 is not None):
        raise TracerError("give either --betas or --beta1/--beta2, not both")
    if args.betas is not None:
        hyperparameters["betas"] = args.betas
    elif args.beta1 is not None or args.beta2 is not None:
        hyperparameters["betas"] = (
            0.9 if args.beta1 is None else args.beta1,
            0.999 if args.beta2 is None else args.beta2,
        )
    return RunConfig(
        problem=args.problem, optimizer=args.optimizer, lr=args.lr, epochs=args.epochs, out=args.out,
        impl=args.impl, hyperparameters=hyperparameters,
        scheduler=None if args.scheduler in (None, "", "none") else args.scheduler,
        scheduler_every=args.scheduler_every, batch_size=args.batch_size, seed=args.seed,
        granularity=args.granularity, every=args.every, label=args.label, quiet=args.quiet,
    )


def run_command(args: argparse.Namespace) -> int:
    """`tracer trace`: run, then say where the trace went and where it ended."""
    out = run_experiment(config_from_args(args))
    if not args.quiet:
        from tracer.trace import load_trace

        trace = load_trace(out)
        final = ", ".join(f"{name}={value:.6g}" for name, value in (trace.final or {}).items())
        print(f"wrote {out}: {len(trace)} updates, {trace.status}" + (f", final {final}" if final else ""))
    return 0
