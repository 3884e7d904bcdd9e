"""Run one experiment: problem + optimizer (+ scheduler) under the Recorder.

`run_experiment(RunConfig(...))` is the library call, `tracer trace` the
command. Per update, as in the articles: forward, loss, zero_grad, backward,
note the loss, optimizer.step() (the Recorder's hooks write the row), then
scheduler.step() when the scheduler steps per update; a per-epoch scheduler
steps after the epoch's last update.

Files: everything is validated (problem, optimizer and its hyperparameters,
scheduler spec and its number of steps, lr, epochs, the output path) and built
before the first update, so bad input leaves nothing behind. The output:

- must end in ".csv" (traces are named *.trace.csv); its directory must exist
  (it is not created: a mistyped directory is an error, not a new tree);
- an existing file is refused unless `overwrite` (`--overwrite`) is given;
- rows go to a temporary file beside it ("<name>.<random>.partial", flushed row
  by row) that is moved onto `out` only when the run ends (complete, or
  diverged: divergence is a result, not an error). So an existing trace is
  never half replaced.

When the run stops on an exception (Ctrl-C, an error in the user's code) the
rows it finished are kept with an "interrupted" trailer: moved to `out` when
`out` did not exist, else left in the ".partial" file (the exception's note
says where) and `out` untouched. A killed process leaves the ".partial" file
(it reads back as "incomplete"). A TracerError raised mid-run (a scheduler
refusing a step) removes the partial file: bad input writes nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import pathlib
import secrets
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from tracer.errors import DivergenceError, TracerError, TraceWriteError
from tracer.trace import GRANULARITIES

SCHEDULER_EVERY = ("update", "epoch")
IMPLS = ("tracer", "torch")
ON_DIVERGENCE = ("stop", "continue")
TRACE_SUFFIX = ".csv"  # traces are named *.trace.csv; any .csv is accepted


@dataclass(frozen=True)
class RunConfig:
    """One run. `hyperparameters` are the optimizer's keyword arguments besides lr.

    `problem_options` go to `get_problem` (e.g. x0, y0 for the analytic
    surfaces); `seed` and `batch_size`, when given, override the problem's.
    `scheduler_every` None takes the problem's default (orbit: "update",
    linear: "epoch"). `overwrite` False refuses an existing `out`;
    `on_divergence` is the Recorder's ("stop" ends the run at the first
    non-finite value, "continue" records on).
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
    overwrite: bool = False  # replace an existing `out` (only once the run has ended)
    on_divergence: str = "stop"  # "continue": keep recording after the loss or state stops being finite


def default_label(optimizer: str, lr: float, scheduler: str | None = None) -> str:
    """Legend text, e.g. "Adam lr=0.12 multistep:milestones=5,10,15,20;gamma=0.5"."""
    from tracer.optim import LABEL_NAMES

    label = f"{LABEL_NAMES.get(optimizer, optimizer)} lr={lr:g}"
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
    _check_choice("on_divergence", config.on_divergence, ON_DIVERGENCE)
    check_output(pathlib.Path(config.out), config.overwrite)
    if config.batch_size is not None and (not isinstance(config.batch_size, int) or config.batch_size < 1):
        raise TracerError(f"invalid batch size {config.batch_size!r}; expected an integer >= 1")
    return None if config.scheduler is None else parse_scheduler_spec(config.scheduler)


def check_output(out: pathlib.Path, overwrite: bool) -> None:
    """TracerError unless a trace can be written to `out`: a .csv name, in an existing
    directory, not an existing file unless `overwrite`; the directory must let us create a file."""
    where = f"cannot write the trace to {str(out)!r}"
    if out.is_dir():
        raise TracerError(f"{where}: it is a directory; expected a file path such as {str(out / 'run.trace.csv')!r}")
    if out.suffix.lower() != TRACE_SUFFIX:
        raise TracerError(f"{where}: a trace is a CSV file named *.trace.csv, got the suffix {out.suffix or 'none'!r} "
                          "(figures are drawn from traces with `tracer render`)")
    parent = out.parent
    if not parent.is_dir():
        what = "is not a directory" if parent.exists() else "does not exist"
        raise TracerError(f"{where}: directory {str(parent)!r} {what} (it is not created; make it first)")
    if out.exists() and not overwrite:
        raise TracerError(f"{where}: the file exists; pass --overwrite (overwrite=True) to replace it "
                          "once the new run has ended")
    probe = _partial_path(out)
    try:
        probe.open("x").close()
        probe.unlink()
    except OSError as error:
        raise TracerError(f"{where}: cannot create a file in {str(parent)!r}: {error.strerror or error}") from None


def _partial_path(out: pathlib.Path) -> pathlib.Path:
    """A fresh name beside `out` for the rows of a run in progress."""
    return out.with_name(f"{out.name}.{secrets.token_hex(4)}.partial")


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
    from tracer.schedulers import build_scheduler, check_steps

    problem = _build_problem(config)
    every = config.scheduler_every or problem.scheduler_every
    updates = config.epochs * problem.batches_per_epoch
    if spec is not None:
        steps = updates if every == "update" else config.epochs
        check_steps(spec, steps, f"once per {every}: {config.epochs} epochs of {problem.batches_per_epoch} updates")
    model = problem.build_model()
    try:
        optimizer = build_optimizer(
            config.optimizer, model.parameters(), impl=config.impl, lr=config.lr, **dict(config.hyperparameters)
        )
    except ValueError as error:  # torch's own checks: "Invalid momentum value: -1"
        raise TracerError(f"invalid hyperparameter for {config.optimizer}: {error}") from None
    scheduler = build_scheduler(optimizer, spec)
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
    existed = out.exists()
    partial = _partial_path(out)
    recorder = Recorder(optimizer, partial, named_parameters=model.named_parameters(),
                        granularity=config.granularity, meta=meta, on_divergence=config.on_divergence,
                        every=config.every, if_exists="overwrite",  # the .partial of a killed run is replaced
                        # The built-in problems run tracer.optim's optimizers, whose v and s are all the state the
                        # article reads; the reference traces in logs/ stay as they are.
                        record_state=False,
                        on_write_error="raise")  # a trace that cannot be written ends the run, in one line
    progress = Progress(updates, out.name, enabled=not config.quiet)
    try:
        with recorder, progress:
            for epoch in range(config.epochs):
                for _ in problem.train_epoch(model, optimizer, epoch, recorder):
                    if scheduler is not None and every == "update":
                        _step(scheduler, spec)
                    progress.advance()
                if scheduler is not None and every == "epoch":
                    _step(scheduler, spec)
    except DivergenceError:
        if not config.quiet:
            print(f"tracer: {out}: {divergence_message(recorder.diverged_at)}", file=sys.stderr)
    except TraceWriteError as error:  # a full disk, the file or its folder removed: the whole rows are kept
        kept = _finish(partial, out, existed)
        raise TracerError(f"recording stopped at update {recorder.updates}: {error}"
                          + (f"; the rows recorded are in {str(kept)!r}" if kept else "")) from None
    except TracerError:
        partial.unlink(missing_ok=True)  # bad input found late: nothing is written
        raise
    except BaseException as error:
        # Interrupted: keep the rows, but never in place of an existing trace; a callable's contour is
        # sampled over the path so far, unless that fails too (then the rows are kept without it).
        with contextlib.suppress(Exception):
            _complete_meta(problem, partial)
        if existed:
            error.add_note(f"tracer: the {recorder.updates} updates recorded are in {str(partial)!r}; "
                           f"{str(out)!r} is unchanged")
        else:
            os.replace(partial, out)
        raise
    if partial.exists():  # a problem that learns its metadata from the path completes it
        _complete_meta(problem, partial)
    if _finish(partial, out, existed=False) is None:
        raise TracerError(f"the run ended, but its trace {str(partial)!r} is gone (removed, or its folder); "
                          f"{str(out)!r} was not written")
    return out


def _finish(partial: pathlib.Path, out: pathlib.Path, existed: bool) -> pathlib.Path | None:
    """Where the rows of a run are now: moved to ``out`` unless it existed before, else kept in ``partial``;
    None when the partial file is gone."""
    if existed:
        return partial if partial.exists() else None
    try:
        os.replace(partial, out)
    except OSError:
        return None
    return out


def _complete_meta(problem: Any, partial: pathlib.Path) -> None:
    """A problem that learns what to record only from the path (a callable's contour, sampled
    where the path went) rewrites the trace's first line once the run has ended."""
    sampled_meta = getattr(problem, "sampled_meta", None)
    if sampled_meta is None:
        return
    from tracer.trace import load_trace, read_json, replace_meta

    trace = load_trace(partial)
    xs = list(trace["x.theta"]) + [(trace.final or {}).get("x", float("nan"))]
    ys = list(trace["y.theta"]) + [(trace.final or {}).get("y", float("nan"))]
    problem_meta = sampled_meta(xs, ys)
    if problem_meta is None:
        return
    with open(partial, "rb") as file:
        meta = read_json(file.readline())  # as written, not as load_trace completes it
    meta["problem"] = problem_meta
    replace_meta(partial, meta)


def trace_function(function: str | Callable, start: tuple[float, float], *, optimizer: str, lr: float,
                   steps: int, out: str | os.PathLike, bounds: Any = None, **options: Any) -> pathlib.Path:
    """Trace `optimizer` minimising f(x, y) from `start` for `steps` updates into `out`.

    `function` is text (`"x**2 + 10*y**2"`, read by `tracer.problems.expression`,
    never run as Python) or a callable taking two torch tensors and returning a
    0-dim tensor; a callable's contour is sampled over `bounds` ((x_low, x_high),
    (y_low, y_high)) before the run. `options` are RunConfig's (hyperparameters,
    scheduler, label, overwrite, ...)."""
    problem_options = {"function": function, "x0": start[0], "y0": start[1]}
    if bounds is not None:
        problem_options["bounds"] = bounds
    return run_experiment(RunConfig(problem="function", optimizer=optimizer, lr=lr, epochs=steps,
                                    out=pathlib.Path(out), problem_options=problem_options, **options))


def divergence_message(update: int | None) -> str:
    """The one wording of a divergence, as `tracer info` and the figures also say it."""
    return (f"diverged at update {update}: the loss, g, v, s or theta stopped being finite, and the trace "
            "ends there; lower --lr, or pass --on-divergence continue to keep recording")


def _step(scheduler: Any, spec: Any) -> None:
    try:
        scheduler.step()
    except ValueError as error:  # a limit check_steps does not know of
        raise TracerError(f"scheduler {spec.text!r} refused a step: {error}") from None


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
    parser.add_argument("--problem", default=None,
                        help="orbit (default), linear, mlp, or a 2-D test function: rosenbrock, beale, quadratic, "
                             "saddle, himmelblau, booth, rastrigin")
    parser.add_argument("--function", default=None, metavar="EXPR",
                        help="your own loss f(x, y), e.g. \"x**2 + 10*y**2\": numbers, x, y, pi, e, + - * / **, "
                             "and abs sqrt exp log sin cos tan tanh sinh cosh atan (needs --start)")
    parser.add_argument("--start", type=_start, default=None, metavar="X0,Y0",
                        help="start point of a 2-D function, e.g. --start=-4,1.5 (write the '=' when X0 is negative)")
    parser.add_argument("--steps", type=int, default=None, metavar="N",
                        help="updates of a 2-D function (one per epoch there: the same as --epochs)")
    parser.add_argument("--optimizer", required=True, help="sgd, momentum, rmsprop, adam or adamw")
    parser.add_argument("--lr", type=float, default=0.01, help="learning rate (default 0.01)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs (default 100)")
    parser.add_argument("--out", type=pathlib.Path, required=True,
                        help="trace file to write (*.trace.csv) in an existing directory (it is not created); "
                             "written when the run ends, so a failed run leaves an existing file untouched")
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists (refused otherwise)")
    parser.add_argument("--on-divergence", choices=ON_DIVERGENCE, default="stop",
                        help="stop (default): end the run at the first non-finite loss or state, status "
                             "'diverged'; continue: keep recording the non-finite rows")
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


def _start(text: str) -> tuple[float, float]:
    try:
        x0, y0 = (float(item) for item in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected two numbers X0,Y0 such as -4,1.5, got {text!r}") from None
    return x0, y0


def _problem_from_args(args: argparse.Namespace) -> tuple[str, dict[str, Any], int]:
    """(problem, problem_options, epochs) from --problem/--function, --start, --steps, --epochs."""
    from tracer.problems import ANALYTIC_NAMES

    if args.function is not None and args.problem is not None:
        raise TracerError("give either --problem or --function, not both")
    problem = "function" if args.function is not None else args.problem or "orbit"
    options: dict[str, Any] = {} if args.function is None else {"function": args.function}
    two_d = problem == "function" or problem in ANALYTIC_NAMES
    if args.start is not None:
        if not two_d:
            raise TracerError(f"--start applies to the 2-D functions (--function, or --problem "
                              f"{', '.join(ANALYTIC_NAMES)}), not to problem {problem!r}")
        options["x0"], options["y0"] = args.start
    if args.steps is not None:
        if not two_d:
            raise TracerError(f"--steps counts the updates of a 2-D function; problem {problem!r} runs --epochs")
        if args.epochs is not None and args.epochs != args.steps:
            raise TracerError(f"give either --steps or --epochs, not both (got {args.steps} and {args.epochs})")
        return problem, options, args.steps
    return problem, options, 100 if args.epochs is None else args.epochs


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """The RunConfig for parsed `tracer trace` arguments."""
    problem, problem_options, epochs = _problem_from_args(args)
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
        problem=problem, optimizer=args.optimizer, lr=args.lr, epochs=epochs, out=args.out,
        problem_options=problem_options,
        impl=args.impl, hyperparameters=hyperparameters,
        scheduler=None if args.scheduler in (None, "", "none") else args.scheduler,
        scheduler_every=args.scheduler_every, batch_size=args.batch_size, seed=args.seed,
        granularity=args.granularity, every=args.every, label=args.label, quiet=args.quiet,
        overwrite=args.overwrite, on_divergence=args.on_divergence,
    )


def run_command(args: argparse.Namespace) -> int:
    """`tracer trace`: run, then say where the trace went and where it ended."""
    out = run_experiment(config_from_args(args))
    if not args.quiet:
        from tracer.trace import load_trace

        trace = load_trace(out)
        final = ", ".join(f"{name}={value:.6g}" for name, value in (trace.final or {}).items())
        status = trace.status if trace.diverged_at is None else f"{trace.status} at update {trace.diverged_at}"
        print(f"wrote {out}: {len(trace)} updates, {status}" + (f", final {final}" if final else ""))
    return 0
