"""The catalogue of reference experiments and figures, as data (no torch).

Everything the two articles show is kept here: `RUNS` (what to train, traced
into logs/<id>.trace.csv) and `FIGURES` (what to draw from which runs,
rendered into figures/ by `tracer.render.render_figure`). Each record names
the experiments it belongs to, and `EXPERIMENTS` is derived from the records
(REFERENCE.md):

  E1      SGD, Momentum, RMSprop, Adam at lr 0.01, 160 epochs; Figs 1-3
  E2      Momentum at five learning rates, 100 and 400 epochs; Figs 4-13
  E3      Adam with MultiStepLR (and the fixed-lr baselines); Figs 14, 15
  E4      Adam with MultiplicativeLR (baselines shared with E3); Figs 15b, 16
  linear  the linear-regression schedulers article: Exponential, Step, Linear
  extra   beyond the articles: internals, lr-path, a still of paths, Rosenbrock,
          a small network traced per tensor (dashboard)

Runs shared by several experiments are listed once and traced once.
`tracer.experiments` runs the catalogue (trains, renders, the command).
"""

from __future__ import annotations

import pathlib
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from tracer.errors import TracerError

LOGS_DIR = pathlib.Path("logs")
FIGURES_DIR = pathlib.Path("figures")

BATCHES_PER_EPOCH = {"orbit": 8, "linear": 100, "mlp": 16, "rosenbrock": 1}
"""Updates per epoch of each catalogue problem (its ``batches_per_epoch``; a test checks them against the problems)."""


@dataclass(frozen=True, kw_only=True)
class CatalogueRun:
    """One reference run; traced into <logs>/<id>.trace.csv."""

    id: str
    experiments: tuple[str, ...]
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

    @property
    def updates(self) -> int:
        """How many updates the run makes: epochs times its problem's batches per epoch."""
        return self.epochs * BATCHES_PER_EPOCH[self.problem]

    def config(self, logs: pathlib.Path = LOGS_DIR, *, impl: str = "tracer", out: pathlib.Path | None = None):
        """The RunConfig of this run (imports the torch side)."""
        from tracer.run import RunConfig

        return RunConfig(
            problem=self.problem, optimizer=self.optimizer, lr=self.lr, epochs=self.epochs,
            out=out or self.path(logs), impl=impl, hyperparameters=dict(self.hyperparameters),
            scheduler=self.scheduler, label=self.label, granularity=self.granularity,
            overwrite=True,  # the catalogue regenerates its own traces by design
        )


@dataclass(frozen=True, kw_only=True)
class CatalogueFigure:
    """One figure of one experiment: `kind` and `options` are render_figure's; `outputs` are file names under figures/."""

    id: str
    experiment: str
    kind: str
    runs: tuple[str, ...]
    outputs: tuple[str, ...]
    options: Mapping[str, Any] = field(default_factory=dict)
    caption: str = ""


# ------------------------------------------------------------------- the runs

E1_OPTIMIZERS = (("sgd", "SGD"), ("momentum", "Momentum"), ("rmsprop", "RMSprop"), ("adam", "Adam"))
E1_COLORS = ("gold", "red", "blue", "green")        # the article's Figure 1 colours
INTERNALS_COLORS = ("#1f77b4", "#9467bd", "#2ca02c", "#8c564b")  # not the red and orange of the -g and -v arrows
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


def _adam_012(run_id: str, experiments: tuple[str, ...], label: str, scheduler: str | None = None) -> CatalogueRun:
    """Adam on the orbit, lr 0.12 for 100 epochs: E3's and E4's runs differ only in the schedule."""
    return CatalogueRun(id=run_id, experiments=experiments, problem="orbit", optimizer="adam", lr=0.12, epochs=100,
                        label=label, scheduler=scheduler)


RUNS: tuple[CatalogueRun, ...] = (
    *(CatalogueRun(id=f"e1-{name}", experiments=("E1",), problem="orbit", optimizer=name, lr=0.01, epochs=160,
                   label=label) for name, label in E1_OPTIMIZERS),
    *(CatalogueRun(id=_e2_id(lr, 100), experiments=("E2",), problem="orbit", optimizer="momentum", lr=lr,
                   epochs=100, label=f"lr={lr:g}") for lr in E2_RATES),
    *(CatalogueRun(id=_e2_id(lr, 400), experiments=("E2",), problem="orbit", optimizer="momentum", lr=lr,
                   epochs=400, label=f"lr={lr:g}, 400 epochs") for lr in E2_LONGER),
    CatalogueRun(id="adam-lr0.01", experiments=("E3", "E4"), problem="orbit", optimizer="adam", lr=0.01, epochs=100,
                 label="lr=0.01 fixed"),
    _adam_012("adam-lr0.12", ("E3", "E4"), "lr=0.12 fixed"),
    _adam_012("e3-multistep-0.8", ("E3",), "lr=0.12 MultiStepLR gamma=0.8", MULTISTEP_08),
    _adam_012("e3-multistep-0.5", ("E3",), "lr=0.12 MultiStepLR gamma=0.5", MULTISTEP_05),
    _adam_012("e4-multiplicative-0.8", ("E4",), "lr=0.12 MultiplicativeLR 0.8", MULTIPLICATIVE_08),
    _adam_012("e4-multiplicative-0.5", ("E4",), "lr=0.12 MultiplicativeLR 0.5", MULTIPLICATIVE_05),
    *(CatalogueRun(id=f"linear-{name}", experiments=("linear",), problem="linear", optimizer="sgd", lr=0.1,
                   epochs=10, label=label, scheduler=spec) for name, spec, label in LINEAR_SCHEDULERS),
    # Beyond the articles: the four optimizers down Rosenbrock's curved valley
    # (one update per epoch), each at a learning rate that does not diverge.
    *(CatalogueRun(id=f"rosenbrock-{name}", experiments=("extra",), problem="rosenbrock", optimizer=name, lr=lr,
                   epochs=1000, label=f"{label} lr={lr:g}")
      for (name, label), lr in zip(E1_OPTIMIZERS, ROSENBROCK_RATES)),
    # Beyond the articles: a real (small) network, traced per tensor.
    *(CatalogueRun(id=f"mlp-{name}", experiments=("extra",), problem="mlp", optimizer=name, lr=0.01, epochs=60,
                   label=f"{label} lr=0.01", granularity="summary") for name, label in MLP_OPTIMIZERS),
)

# ----------------------------------------------------------------- the figures


def _runs_of(experiment: str) -> tuple[str, ...]:
    return tuple(run.id for run in RUNS if experiment in run.experiments)


E1_RUNS = tuple(f"e1-{name}" for name, _ in E1_OPTIMIZERS)
ROSENBROCK_RUNS = tuple(f"rosenbrock-{name}" for name, _ in E1_OPTIMIZERS)
MLP_RUNS = tuple(f"mlp-{name}" for name, _ in MLP_OPTIMIZERS)
E2_SHORT = tuple(_e2_id(lr, 100) for lr in E2_RATES)
E2_LONG = tuple(_e2_id(lr, 400) for lr in E2_LONGER)
BASELINES = ("adam-lr0.01", "adam-lr0.12")
E3_SCHEDULED = ("e3-multistep-0.8", "e3-multistep-0.5")
E4_SCHEDULED = ("e4-multiplicative-0.8", "e4-multiplicative-0.5")
ORBIT_VIEW = {"xlim": (0.0, 2.5), "ylim": (0.0, 2.5)}
E2_VIEW = {"xlim": (0.0, 4.0), "ylim": (-0.5, 3.5)}
ADAM_VIEW = {"xlim": (0.0, 2.0), "ylim": (0.25, 2.25)}


def _fit(number: int, lr: float, epochs: int) -> CatalogueFigure:
    """E2's fitted-orbit figure of Momentum at `lr` after `epochs` epochs."""
    return CatalogueFigure(
        id=f"fig{number:02d}", experiment="E2", kind="fit", runs=(_e2_id(lr, epochs),),
        outputs=(f"fig{number:02d}_fit_lr{lr:g}_{epochs}ep.png",),
        options={"title": f"Momentum, lr={lr:g}, {epochs} epochs"},
        caption=f"Regression result, Momentum, {epochs} epochs, lr={lr:g}",
    )


FIGURES: tuple[CatalogueFigure, ...] = (
    CatalogueFigure(id="fig01", experiment="E1", kind="step-size", runs=E1_RUNS, outputs=("fig01_step_size.png",),
                    options={"updates": (1, 600), "colors": E1_COLORS, "yscale": "linear"},  # the article's x range and axis
                    caption="Effective step size vs update for the same learning rate"),
    CatalogueFigure(id="fig02", experiment="E1", kind="first-steps", runs=E1_RUNS, outputs=("fig02_first_steps.png",),
                    options={"first_steps": 4, "xlim": (0.0, 0.5), "ylim": (1.5, 2.0), "colors": E1_COLORS},
                    caption="The first four updates"),
    CatalogueFigure(id="fig03", experiment="E1", kind="paths", runs=E1_RUNS,
                    outputs=("fig03_paths.gif", "fig03_paths.mp4"), options={**ORBIT_VIEW, "colors": E1_COLORS},
                    caption="The four optimizers' paths to the minimum"),
    *(_fit(4 + i, lr, 100) for i, lr in enumerate(E2_RATES)),
    _fit(10, 0.012, 400),
    _fit(11, 0.00015, 400),
    CatalogueFigure(id="fig09", experiment="E2", kind="paths", runs=E2_SHORT,
                    outputs=("fig09_paths_learning_rates.gif",), options=E2_VIEW,
                    caption="Momentum paths for five learning rates, 100 epochs"),
    CatalogueFigure(id="fig12", experiment="E2", kind="paths", runs=E2_LONG, outputs=("fig12_paths_400_epochs.gif",),
                    options=E2_VIEW, caption="Momentum paths with 400 epochs"),
    CatalogueFigure(id="fig13", experiment="E2", kind="gradients", runs=(_e2_id(0.012, 400),),
                    outputs=("fig13_gradients.png",), options={"updates": (35, 1635)},
                    caption="dWa and dWb over updates 35-1635, lr=0.012, 400 epochs"),
    CatalogueFigure(id="fig14", experiment="E3", kind="paths", runs=BASELINES + E3_SCHEDULED,
                    outputs=("fig14_paths_multistep.gif",), options=ADAM_VIEW,
                    caption="Adam with and without MultiStepLR"),
    CatalogueFigure(id="fig15", experiment="E3", kind="lr", runs=E3_SCHEDULED, outputs=("fig15_lr_multistep.png",),
                    options={"updates": (1, 30)},
                    caption="Learning rate over the first 30 updates, MultiStepLR (the article's Figure 15)"),
    CatalogueFigure(id="fig15b", experiment="E4", kind="lr", runs=E4_SCHEDULED,
                    outputs=("fig15b_lr_multiplicative.png",), options={"updates": (1, 30)},
                    caption="Learning rate over the first 30 updates, MultiplicativeLR"),
    CatalogueFigure(id="fig16", experiment="E4", kind="paths", runs=BASELINES + E4_SCHEDULED,
                    outputs=("fig16_paths_multiplicative.gif",), options=ADAM_VIEW,
                    caption="Adam with and without MultiplicativeLR"),
    CatalogueFigure(id="linear-lr", experiment="linear", kind="lr", runs=_runs_of("linear"),
                    outputs=("linear_lr_schedules.png",), options={"against": "epoch"},
                    caption="Learning rate per epoch: ExponentialLR, StepLR, LinearLR"),
    # Beyond the articles.
    CatalogueFigure(id="internals-adam", experiment="extra", kind="internals", runs=("e1-adam",),
                    outputs=("internals_adam.gif",), options=ORBIT_VIEW,
                    caption="Adam's g, v, sqrt(s) and step at every update"),
    CatalogueFigure(id="lr-path-multistep", experiment="extra", kind="lr-path", runs=BASELINES + E3_SCHEDULED,
                    outputs=("lr_path_multistep.png",), options=ADAM_VIEW,
                    caption="Adam paths coloured by the learning rate in effect"),
    CatalogueFigure(id="paths-e1-still", experiment="extra", kind="paths", runs=E1_RUNS, outputs=("paths_e1.png",),
                    options={**ORBIT_VIEW, "colors": E1_COLORS}, caption="The four optimizers' whole paths (still)"),
    CatalogueFigure(id="rosenbrock-paths", experiment="extra", kind="paths", runs=ROSENBROCK_RUNS,
                    outputs=("rosenbrock_paths.png",), options={"colors": E1_COLORS},
                    caption="The four optimizers on Rosenbrock's valley, 1000 updates"),
    CatalogueFigure(id="loss-e1", experiment="extra", kind="loss", runs=E1_RUNS, outputs=("loss_e1.png",),
                    options={"colors": E1_COLORS},
                    caption="Loss and learning rate of the four optimizers on the orbit (log scale: the loss spans decades)"),
    CatalogueFigure(id="internals-e1", experiment="extra", kind="internals", runs=E1_RUNS,
                    outputs=("internals_e1.png",), options={**ORBIT_VIEW, "colors": INTERNALS_COLORS, "updates": (1, 40)},
                    caption="The four optimizers' g, v, sqrt(s) and step side by side after 40 updates, one scale"),
    CatalogueFigure(id="rosenbrock-loss", experiment="extra", kind="loss", runs=ROSENBROCK_RUNS,
                    outputs=("rosenbrock_loss.png",), options={"colors": E1_COLORS},
                    caption="Loss of the four optimizers on Rosenbrock's valley, 1000 updates"),
    CatalogueFigure(id="mlp-dashboard", experiment="extra", kind="dashboard", runs=MLP_RUNS,
                    outputs=("mlp_dashboard.png",),
                    caption="Per-tensor norms and cosines of Momentum and Adam training a 2-32-32-1 network"),
)

EXPERIMENT_NAMES = ("E1", "E2", "E3", "E4", "linear", "extra")

EXPERIMENTS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    # name -> (run ids, figure ids), both read from the records
    name: (_runs_of(name), tuple(figure.id for figure in FIGURES if figure.experiment == name))
    for name in EXPERIMENT_NAMES
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
