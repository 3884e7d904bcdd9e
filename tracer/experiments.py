"""The catalogue of reference experiments and figures, and `tracer reproduce`.

Everything the two articles show is kept here as data: `RUNS` (what to
train, traced into logs/<id>.trace.csv) and `FIGURES` (what to draw from
which runs, rendered into figures/ by `tracer.render.render_figure`).
`EXPERIMENTS` groups them by the article's experiments (REFERENCE.md):

  E1      SGD, Momentum, RMSprop, Adam at lr 0.01, 160 epochs; Figs 1-3
  E2      Momentum at five learning rates, 100 and 400 epochs; Figs 4-13
  E3      Adam with MultiStepLR (and the fixed-lr baselines); Figs 14, 15
  E4      Adam with MultiplicativeLR (baselines shared with E3); Figs 15b, 16
  linear  the linear-regression schedulers article: Exponential, Step, Linear
  extra   beyond the articles: internals, lr-path, a still of paths, Rosenbrock,
          a small network traced per tensor (dashboard)

Runs shared by several experiments are listed once and traced once. Every
run is deterministic (each problem draws from its own seeded generator), so
running them in parallel worker processes gives the same traces bit for bit.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from tracer.errors import TracerError

LOGS_DIR = pathlib.Path("logs")
FIGURES_DIR = pathlib.Path("figures")
WORKERS = 2


@dataclass(frozen=True)
class CatalogueRun:
    """One reference run; traced into <logs>/<id>.trace.csv."""

    id: str
    problem: str
    optimizer: str
    lr: float
    epochs: int
    label: str
    scheduler: str | None = None
    hyperparameters: Mapping[str, Any] = field(default_factory=dict)
    granularity: str = "full"

    def path(self, logs: pathlib.Path = LOGS_DIR) -> pathlib.Path:
        return pathlib.Path(logs) / f"{self.id}.trace.csv"

    def config(self, logs: pathlib.Path = LOGS_DIR, *, impl: str = "tracer", out: pathlib.Path | None = None):
        """The RunConfig of this run (imports the torch side)."""
        from tracer.run import RunConfig

        return RunConfig(
            problem=self.problem, optimizer=self.optimizer, lr=self.lr, epochs=self.epochs,
            out=out or self.path(logs), impl=impl, hyperparameters=dict(self.hyperparameters),
            scheduler=self.scheduler, label=self.label, granularity=self.granularity,
            overwrite=True,  # the catalogue regenerates its own traces by design
        )


@dataclass(frozen=True)
class CatalogueFigure:
    """One figure: `kind` and `options` are render_figure's; `outputs` are file names under figures/."""

    id: str
    kind: str
    runs: tuple[str, ...]
    outputs: tuple[str, ...]
    options: Mapping[str, Any] = field(default_factory=dict)
    caption: str = ""


# ------------------------------------------------------------------- the runs

E1_OPTIMIZERS = (("sgd", "SGD"), ("momentum", "Momentum"), ("rmsprop", "RMSprop"), ("adam", "Adam"))
E1_COLORS = ("gold", "red", "blue", "green")        # the article's Figure 1 colours
E2_RATES = (0.012, 0.01, 0.005, 0.001, 0.00015)
E2_LONGER = (0.012, 0.00015)
MULTISTEP_08 = "multistep:milestones=4,8,10,12,14,16,18,20,22,24;gamma=0.8"
MULTISTEP_05 = "multistep:milestones=5,10,15,20;gamma=0.5"
MULTIPLICATIVE_08 = "multiplicative:factor=0.8;at=6-24/2"
MULTIPLICATIVE_05 = "multiplicative:factor=0.5;at=5,10,15,20"
ROSENBROCK_RATES = (0.0015, 0.0003, 0.003, 0.06)   # SGD, Momentum, RMSprop, Adam
MLP_OPTIMIZERS = (("momentum", "Momentum"), ("adam", "Adam"))
LINEAR_SCHEDULERS = (
    ("exponential", "exponential:gamma=0.9", "ExponentialLR(gamma=0.9)"),
    ("step", "step:step_size=4;gamma=0.9", "StepLR(step_size=4, gamma=0.9)"),
    ("linear", "linear:start_factor=0.5;total_iters=4", "LinearLR(start_factor=0.5, total_iters=4)"),
)


def _e2_id(lr: float, epochs: int) -> str:
    return f"e2-momentum-lr{lr:g}-{epochs}ep"


RUNS: tuple[CatalogueRun, ...] = (
    *(CatalogueRun(f"e1-{name}", "orbit", name, 0.01, 160, label) for name, label in E1_OPTIMIZERS),
    *(CatalogueRun(_e2_id(lr, 100), "orbit", "momentum", lr, 100, f"lr={lr:g}") for lr in E2_RATES),
    *(CatalogueRun(_e2_id(lr, 400), "orbit", "momentum", lr, 400, f"lr={lr:g}, 400 epochs") for lr in E2_LONGER),
    CatalogueRun("adam-lr0.01", "orbit", "adam", 0.01, 100, "lr=0.01 fixed"),
    CatalogueRun("adam-lr0.12", "orbit", "adam", 0.12, 100, "lr=0.12 fixed"),
    CatalogueRun("e3-multistep-0.8", "orbit", "adam", 0.12, 100, "lr=0.12 MultiStepLR gamma=0.8", MULTISTEP_08),
    CatalogueRun("e3-multistep-0.5", "orbit", "adam", 0.12, 100, "lr=0.12 MultiStepLR gamma=0.5", MULTISTEP_05),
    CatalogueRun("e4-multiplicative-0.8", "orbit", "adam", 0.12, 100, "lr=0.12 MultiplicativeLR 0.8",
                 MULTIPLICATIVE_08),
    CatalogueRun("e4-multiplicative-0.5", "orbit", "adam", 0.12, 100, "lr=0.12 MultiplicativeLR 0.5",
                 MULTIPLICATIVE_05),
    *(CatalogueRun(f"linear-{name}", "linear", "sgd", 0.1, 10, label, spec) for name, spec, label in LINEAR_SCHEDULERS),
    # Beyond the articles: the four optimizers down Rosenbrock's curved valley
    # (one update per epoch), each at a learning rate that does not diverge.
    *(CatalogueRun(f"rosenbrock-{name}", "rosenbrock", name, lr, 1000, f"{label} lr={lr:g}")
      for (name, label), lr in zip(E1_OPTIMIZERS, ROSENBROCK_RATES)),
    # Beyond the articles: a real (small) network, traced per tensor.
    *(CatalogueRun(f"mlp-{name}", "mlp", name, 0.01, 60, f"{label} lr=0.01", granularity="summary")
      for name, label in MLP_OPTIMIZERS),
)

# ----------------------------------------------------------------- the figures

E1_RUNS = tuple(f"e1-{name}" for name, _ in E1_OPTIMIZERS)
ROSENBROCK_RUNS = tuple(f"rosenbrock-{name}" for name, _ in E1_OPTIMIZERS)
MLP_RUNS = tuple(f"mlp-{name}" for name, _ in MLP_OPTIMIZERS)
E2_SHORT = tuple(_e2_id(lr, 100) for lr in E2_RATES)
E2_LONG = tuple(_e2_id(lr, 400) for lr in E2_LONGER)
BASELINES = ("adam-lr0.01", "adam-lr0.12")
E3_SCHEDULED = ("e3-multistep-0.8", "e3-multistep-0.5")
E4_SCHEDULED = ("e4-multiplicative-0.8", "e4-multiplicative-0.5")
ORBIT_VIEW = {"xlim": (0.0, 2.5), "ylim": (0.0, 2.5)}

FIGURES: tuple[CatalogueFigure, ...] = (
    CatalogueFigure("fig01", "step-size", E1_RUNS, ("fig01_step_size.png",),
                    {"updates": (1, 600), "colors": E1_COLORS, "yscale": "linear"},  # the article's axes
                    "Effective step size vs update for the same learning rate"),
    CatalogueFigure("fig02", "first-steps", E1_RUNS, ("fig02_first_steps.png",),
                    {"first_steps": 4, "xlim": (0.0, 0.5), "ylim": (1.5, 2.0), "colors": E1_COLORS},
                    "The first four updates"),
    CatalogueFigure("fig03", "paths", E1_RUNS, ("fig03_paths.gif", "fig03_paths.mp4"),
                    {**ORBIT_VIEW, "colors": E1_COLORS},
                    "The four optimizers' paths to the minimum"),
    *(
        CatalogueFigure(f"fig{number:02d}", "fit", (run,), (f"fig{number:02d}_fit_lr{lr:g}_{epochs}ep.png",),
                        {"title": f"Momentum, lr={lr:g}, {epochs} epochs"},
                        f"Regression result, Momentum, {epochs} epochs, lr={lr:g}")
        for number, run, lr, epochs in (
            *((4 + i, _e2_id(lr, 100), lr, 100) for i, lr in enumerate(E2_RATES)),
            (10, _e2_id(0.012, 400), 0.012, 400),
            (11, _e2_id(0.00015, 400), 0.00015, 400),
        )
    ),
    CatalogueFigure("fig09", "paths", E2_SHORT, ("fig09_paths_learning_rates.gif",),
                    {"xlim": (0.0, 4.0), "ylim": (-0.5, 3.5)},
                    "Momentum paths for five learning rates, 100 epochs"),
    CatalogueFigure("fig12", "paths", E2_LONG, ("fig12_paths_400_epochs.gif",),
                    {"xlim": (0.0, 4.0), "ylim": (-0.5, 3.5)},
                    "Momentum paths with 400 epochs"),
    CatalogueFigure("fig13", "gradients", (_e2_id(0.012, 400),), ("fig13_gradients.png",),
                    {"updates": (35, 1635)},
                    "dWa and dWb over updates 35-1635, lr=0.012, 400 epochs"),
    CatalogueFigure("fig14", "paths", BASELINES + E3_SCHEDULED, ("fig14_paths_multistep.gif",),
                    {"xlim": (0.0, 2.0), "ylim": (0.25, 2.25)},
                    "Adam with and without MultiStepLR"),
    CatalogueFigure("fig15", "lr", E3_SCHEDULED, ("fig15_lr_multistep.png",), {"updates": (1, 30)},
                    "Learning rate over the first 30 updates, MultiStepLR (the article's Figure 15)"),
    CatalogueFigure("fig15b", "lr", E4_SCHEDULED, ("fig15b_lr_multiplicative.png",), {"updates": (1, 30)},
                    "Learning rate over the first 30 updates, MultiplicativeLR"),
    CatalogueFigure("fig16", "paths", BASELINES + E4_SCHEDULED, ("fig16_paths_multiplicative.gif",),
                    {"xlim": (0.0, 2.0), "ylim": (0.25, 2.25)},
                    "Adam with and without MultiplicativeLR"),
    CatalogueFigure("linear-lr", "lr", tuple(f"linear-{name}" for name, _, _ in LINEAR_SCHEDULERS),
                    ("linear_lr_schedules.png",), {"against": "epoch"},
                    "Learning rate per epoch: ExponentialLR, StepLR, LinearLR"),
    # Beyond the articles.
    CatalogueFigure("internals-adam", "internals", ("e1-adam",), ("internals_adam.gif",), ORBIT_VIEW,
                    "Adam's g, v, sqrt(s) and step at every update"),
    CatalogueFigure("lr-path-multistep", "lr-path", BASELINES + E3_SCHEDULED, ("lr_path_multistep.png",),
                    {"xlim": (0.0, 2.0), "ylim": (0.25, 2.25)},
                    "Adam paths coloured by the learning rate in effect"),
    CatalogueFigure("paths-e1-still", "paths", E1_RUNS, ("paths_e1.png",), {**ORBIT_VIEW, "colors": E1_COLORS},
                    "The four optimizers' whole paths (still)"),
    CatalogueFigure("rosenbrock-paths", "paths", ROSENBROCK_RUNS, ("rosenbrock_paths.png",),
                    {"colors": E1_COLORS}, "The four optimizers on Rosenbrock's valley, 1000 updates"),
    CatalogueFigure("mlp-dashboard", "dashboard", MLP_RUNS, ("mlp_dashboard.png",), {},
                    "Per-tensor norms and cosines of Momentum and Adam training a 2-32-32-1 network"),
)

EXPERIMENTS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    # name -> (run ids, figure ids)
    "E1": (E1_RUNS, ("fig01", "fig02", "fig03")),
    "E2": (E2_SHORT + E2_LONG, ("fig04", "fig05", "fig06", "fig07", "fig08", "fig09", "fig10", "fig11",
                                "fig12", "fig13")),
    "E3": (BASELINES + E3_SCHEDULED, ("fig14", "fig15")),
    "E4": (BASELINES + E4_SCHEDULED, ("fig15b", "fig16")),
    "linear": (tuple(f"linear-{name}" for name, _, _ in LINEAR_SCHEDULERS), ("linear-lr",)),
    "extra": (ROSENBROCK_RUNS + MLP_RUNS,
              ("internals-adam", "lr-path-multistep", "paths-e1-still", "rosenbrock-paths", "mlp-dashboard")),
}

RUNS_BY_ID = {run.id: run for run in RUNS}
FIGURES_BY_ID = {figure.id: figure for figure in FIGURES}


def select(names: Iterable[str] | None = None) -> tuple[tuple[CatalogueRun, ...], tuple[CatalogueFigure, ...]]:
    """The runs and figures named (experiments, run ids or figure ids; None: everything).

    A figure brings the runs it draws; an experiment brings its runs and figures.
    """
    if names is None:
        return RUNS, FIGURES
    run_ids: set[str] = set()
    figure_ids: set[str] = set()
    for name in names:
        if name in EXPERIMENTS:
            run_ids.update(EXPERIMENTS[name][0])
            figure_ids.update(EXPERIMENTS[name][1])
        elif name in RUNS_BY_ID:
            run_ids.add(name)
        elif name in FIGURES_BY_ID:
            figure_ids.add(name)
        else:
            raise TracerError(
                f"unknown experiment, run or figure {name!r}; experiments: {', '.join(EXPERIMENTS)}; "
                "see `tracer reproduce --list` for the run and figure ids"
            )
    for figure_id in figure_ids:
        run_ids.update(FIGURES_BY_ID[figure_id].runs)
    return (
        tuple(run for run in RUNS if run.id in run_ids),
        tuple(figure for figure in FIGURES if figure.id in figure_ids),
    )


# ------------------------------------------------------------------ running


def _trace_one(job: tuple[CatalogueRun, pathlib.Path]) -> tuple[str, pathlib.Path, float]:
    from tracer.run import run_experiment

    if _IN_WORKER:
        # Each worker trains one small model at a time: one thread each keeps
        # two workers from fighting over two cores.
        import torch

        torch.set_num_threads(1)
    run, logs = job
    start = time.perf_counter()
    path = run_experiment(run.config(logs))
    return run.id, path, time.perf_counter() - start


def _render_one(job: tuple[CatalogueFigure, pathlib.Path, pathlib.Path]) -> tuple[str, list[pathlib.Path], float]:
    from tracer.render import render_figure

    figure, logs, figures = job
    start = time.perf_counter()
    traces = [RUNS_BY_ID[run_id].path(logs) for run_id in figure.runs]
    written = [render_figure(figure.kind, traces, pathlib.Path(figures) / name, **dict(figure.options))
               for name in figure.outputs]
    return figure.id, written, time.perf_counter() - start


def _updates(run: CatalogueRun) -> int:
    return run.epochs * {"orbit": 8, "linear": 100}.get(run.problem, 1)  # problems' batches per epoch


def _render_cost(figure: CatalogueFigure) -> int:
    # Animations take seconds each, stills a fraction: start the long ones first.
    return sum(10 if name.endswith((".gif", ".mp4")) else 1 for name in figure.outputs) * len(figure.runs)


class _Workers:
    """A process pool of `count` workers (or, for one, this process) with map and submit."""

    def __init__(self, count: int, *, preload_torch: bool = False) -> None:
        self.pool = None
        if count > 1:
            import multiprocessing

            # Fork when this process has not used torch yet (the command has
            # not): torch is imported here once, before the fork, so the
            # workers share the import instead of paying seconds each. A
            # process that has already run torch code (tests) spawns instead,
            # as forking after torch's thread pools started can hang.
            method = "spawn"
            if sys.platform.startswith("linux") and "torch" not in sys.modules:
                if preload_torch:
                    import torch  # noqa: F401
                method = "fork"
            self.pool = multiprocessing.get_context(method).Pool(count, initializer=_worker_init)

    def map_unordered(self, function, jobs: Sequence):
        if self.pool is None:
            return map(function, jobs)
        return self.pool.imap_unordered(function, jobs)

    def submit(self, function, job):
        """An object whose get() returns function(job); serially, it runs on get()."""
        if self.pool is None:
            return _Deferred(function, job)
        return self.pool.apply_async(function, (job,))

    def __enter__(self) -> "_Workers":
        return self

    def __exit__(self, *exc_info) -> None:
        if self.pool is not None:
            self.pool.terminate() if exc_info[0] is not None else self.pool.close()
            self.pool.join()


@dataclass
class _Deferred:
    function: Any
    job: Any

    def get(self):
        return self.function(self.job)


_IN_WORKER = False


def _worker_init() -> None:
    global _IN_WORKER
    _IN_WORKER = True


def _check_traces(figures: Sequence[CatalogueFigure], logs: pathlib.Path, tracing: set[str]) -> None:
    missing = sorted({str(RUNS_BY_ID[r].path(logs)) for f in figures for r in f.runs
                      if r not in tracing and not RUNS_BY_ID[r].path(logs).exists()})
    if missing:
        raise TracerError(f"missing trace(s) {', '.join(missing)}; run `tracer reproduce` to make them")


def _run_catalogue(runs: Sequence[CatalogueRun], figures: Sequence[CatalogueFigure], logs: pathlib.Path,
                   out_dir: pathlib.Path, workers: int, say) -> list[pathlib.Path]:
    """Trace `runs` (the longest first) and render `figures`, each figure as soon as its traces exist."""
    logs, out_dir = pathlib.Path(logs), pathlib.Path(out_dir)
    tracing = {run.id for run in runs}
    _check_traces(figures, logs, tracing)
    if runs:
        logs.mkdir(parents=True, exist_ok=True)
    if figures:
        out_dir.mkdir(parents=True, exist_ok=True)
    waiting = sorted(figures, key=lambda figure: -_render_cost(figure))
    traced: set[str] = set()
    submitted = []
    written: list[pathlib.Path] = []
    with _Workers(workers, preload_torch=bool(runs)) as pool:

        def submit_ready() -> None:
            for figure in [f for f in waiting if all(r in traced or r not in tracing for r in f.runs)]:
                waiting.remove(figure)
                submitted.append(pool.submit(_render_one, (figure, logs, out_dir)))

        submit_ready()
        jobs = sorted(((run, logs) for run in runs), key=lambda job: -_updates(job[0]))
        for run_id, path, seconds in pool.map_unordered(_trace_one, jobs):
            say(f"traced {path} ({seconds:.1f} s)")
            traced.add(run_id)
            submit_ready()
        for result in submitted:
            figure_id, paths, seconds = result.get()
            say(f"rendered {', '.join(map(str, paths))} ({seconds:.1f} s)")
            written += paths
    return written


def trace_runs(runs: Sequence[CatalogueRun], logs: pathlib.Path = LOGS_DIR, *, workers: int = WORKERS,
               say=print) -> list[pathlib.Path]:
    """Trace `runs` into `logs`; returns the trace paths in catalogue order."""
    _run_catalogue(runs, (), logs, FIGURES_DIR, workers, say)
    return [run.path(logs) for run in runs]


def render_figures(figures: Sequence[CatalogueFigure], logs: pathlib.Path = LOGS_DIR,
                   out_dir: pathlib.Path = FIGURES_DIR, *, workers: int = WORKERS, say=print) -> list[pathlib.Path]:
    """Render `figures` from the traces in `logs` into `out_dir` (no training)."""
    return _run_catalogue((), figures, logs, out_dir, workers, say)


def render_available() -> bool:
    """Whether tracer.render is installed (this project builds it alongside)."""
    try:
        import tracer.render  # noqa: F401
    except ModuleNotFoundError as error:
        if error.name and (error.name == "tracer.render" or error.name.startswith("tracer.render.")):
            return False
        raise
    return True


def reproduce(names: Iterable[str] | None = None, *, render: bool = True, logs: pathlib.Path = LOGS_DIR,
              figures: pathlib.Path = FIGURES_DIR, workers: int = WORKERS, say=print) -> None:
    """Trace the selected runs and render the selected figures (each as soon as its traces are written)."""
    runs, selected_figures = select(names)
    start = time.perf_counter()
    if render and selected_figures and not render_available():
        say("tracer.render is not available: figures skipped (traces are in place)")
        render = False
    if not render:
        selected_figures = ()
    _run_catalogue(runs, selected_figures, logs, figures, workers, say)
    say(f"done in {time.perf_counter() - start:.1f} s")


def describe() -> str:
    """The catalogue as text: experiments, runs and figures."""
    lines = []
    for name, (run_ids, figure_ids) in EXPERIMENTS.items():
        lines.append(f"{name}:")
        for run_id in run_ids:
            run = RUNS_BY_ID[run_id]
            schedule = f" {run.scheduler}" if run.scheduler else ""
            lines.append(f"  run    {run.id:28} {run.problem} {run.optimizer} lr={run.lr:g} {run.epochs} epochs{schedule}")
        for figure_id in figure_ids:
            figure = FIGURES_BY_ID[figure_id]
            lines.append(f"  figure {figure.id:28} {figure.kind:11} {', '.join(figure.outputs)}")
    return "\n".join(lines)


# ------------------------------------------------------------- the scripts


def compare_implementations(run_id: str, logs: pathlib.Path = LOGS_DIR,
                            torch_logs: pathlib.Path | None = None):
    """Trace catalogue run `run_id` with ours (into `logs`) and with torch.optim's; return the diff.

    torch's trace goes to `torch_logs` (default: a temporary directory, so
    logs/ keeps only the reference traces) as <id>.torch.trace.csv.
    """
    import tempfile

    from tracer.diff import diff_traces
    from tracer.run import run_experiment

    run = RUNS_BY_ID[run_id]
    ours = run_experiment(run.config(logs))
    with tempfile.TemporaryDirectory() as scratch:
        folder = pathlib.Path(torch_logs or scratch)
        theirs = run_experiment(run.config(impl="torch", out=folder / f"{run.id}.torch.trace.csv"))
        return diff_traces(ours, theirs)


def compare_main(run_id: str, argv: Sequence[str] | None = None, description: str = "") -> int:
    """Entry point of scripts/trace_<optimizer>.py: exit 0 when ours and torch's traces are equal."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--logs", type=pathlib.Path, default=LOGS_DIR, help="where our trace goes (default logs/)")
    parser.add_argument("--torch-logs", type=pathlib.Path, default=None,
                        help="keep torch.optim's trace here (default: a temporary directory)")
    args = parser.parse_args(argv)
    result = compare_implementations(run_id, args.logs, args.torch_logs)
    print(result.report())
    verdict = "agree bit for bit" if result.equal else "DIFFER"
    print(f"{run_id}: tracer.optim and torch.optim traces {verdict}")
    return 0 if result.equal else 1


def script_main(names: Sequence[str], argv: Sequence[str] | None = None, description: str = "") -> int:
    """Entry point of the per-experiment scripts: trace `names` (and render their figures)."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    configure_parser(parser)
    args = parser.parse_args(argv)
    args.only = list(names) + list(args.only or [])
    return run_command(args)


def render_all_main(argv: Sequence[str] | None = None, description: str = "") -> int:
    """Entry point of scripts/render_all.py: every catalogue figure from the traces in logs/."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--logs", type=pathlib.Path, default=LOGS_DIR)
    parser.add_argument("--figures", type=pathlib.Path, default=FIGURES_DIR)
    parser.add_argument("--only", nargs="+", metavar="NAME", help="experiments or figure ids")
    parser.add_argument("--workers", type=int, default=WORKERS)
    args = parser.parse_args(argv)
    _, figures = select(args.only)
    try:
        render_figures(figures, args.logs, args.figures, workers=max(1, args.workers))
    except TracerError as error:
        print(f"render_all: error: {error}", file=sys.stderr)
        return 2
    return 0


# ----------------------------------------------------------------- the command


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Options of `tracer reproduce`."""
    parser.add_argument("--only", nargs="+", metavar="NAME",
                        help="experiments (E1 E2 E3 E4 linear extra), run ids or figure ids")
    parser.add_argument("--no-render", action="store_true", help="trace only, draw nothing")
    parser.add_argument("--logs", type=pathlib.Path, default=LOGS_DIR, help="where traces go (default logs/)")
    parser.add_argument("--figures", type=pathlib.Path, default=FIGURES_DIR,
                        help="where figures go (default figures/)")
    parser.add_argument("--workers", type=int, default=WORKERS, help=f"worker processes (default {WORKERS})")
    parser.add_argument("--list", action="store_true", help="print the catalogue and exit")
    parser.add_argument("--quiet", action="store_true", help="print nothing but errors")


def run_command(args: argparse.Namespace) -> int:
    """`tracer reproduce`."""
    if args.list:
        print(describe())
        return 0
    say = (lambda *_: None) if args.quiet else print
    reproduce(args.only, render=not args.no_render, logs=args.logs, figures=args.figures,
              workers=max(1, args.workers), say=say)
    return 0
