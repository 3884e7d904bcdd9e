"""The catalogue, and the articles' findings read from the committed reference traces (logs/).

tests/test_reproduction.py regenerates every trace and checks it equals the
committed one bit for bit, so what is asserted here of logs/ holds for a
fresh run too.
"""

import pathlib

import numpy as np
import pytest

from tracer import experiments
from tracer.errors import TracerError
from tracer.catalogue import BATCHES_PER_EPOCH, EXPERIMENTS, FIGURES, FIGURES_BY_ID, RUNS, RUNS_BY_ID, select
from tracer.problems.orbit import ORBIT_A, ORBIT_B
from tracer.trace import load_trace

LOGS = pathlib.Path(__file__).resolve().parent.parent / "logs"
CONVERGENCE = 0.01   # |final - truth| for a run the article calls converged


def _trace(run_id):
    return load_trace(RUNS_BY_ID[run_id].path(LOGS))


def _final(run_id):
    trace = _trace(run_id)
    assert trace.status == "complete"
    return trace.final["Wa"], trace.final["Wb"]


# ------------------------------------------------------------- the catalogue


def test_every_run_has_a_committed_trace_and_nothing_else_is_there():
    committed = {p.name for p in LOGS.glob("*.trace.csv")}
    assert committed == {run.path(LOGS).name for run in RUNS}


def test_catalogue_ids_are_unique_and_figures_draw_known_runs():
    assert len(RUNS_BY_ID) == len(RUNS) and len(FIGURES_BY_ID) == len(FIGURES)
    outputs = [name for figure in FIGURES for name in figure.outputs]
    assert len(outputs) == len(set(outputs))
    for figure in FIGURES:
        assert set(figure.runs) <= set(RUNS_BY_ID), figure.id
    listed = {run for runs, _ in EXPERIMENTS.values() for run in runs}
    assert listed == set(RUNS_BY_ID)
    assert {f for _, figures in EXPERIMENTS.values() for f in figures} == set(FIGURES_BY_ID)


def test_shared_runs_are_traced_once():
    e3_runs, e4_runs = EXPERIMENTS["E3"][0], EXPERIMENTS["E4"][0]
    assert set(e3_runs) & set(e4_runs) == {"adam-lr0.01", "adam-lr0.12"}
    keys = [(r.problem, r.optimizer, r.lr, r.epochs, r.scheduler) for r in RUNS]
    assert len(keys) == len(set(keys))


def test_figures_are_the_articles():
    fig = FIGURES_BY_ID
    assert fig["fig01"].kind == "step-size" and fig["fig01"].options["updates"] == (1, 600)
    assert fig["fig01"].options["colors"] == ("gold", "red", "blue", "green")  # SGD, Momentum, RMSprop, Adam
    assert fig["fig02"].options == {"first_steps": 4, "xlim": (0.0, 0.5), "ylim": (1.5, 2.0),
                                    "colors": ("gold", "red", "blue", "green")}
    assert fig["fig03"].outputs == ("fig03_paths.gif", "fig03_paths.mp4")
    assert [fig[f"fig{n:02d}"].kind for n in (4, 5, 6, 7, 8, 10, 11)] == ["fit"] * 7
    assert fig["fig09"].options == {"xlim": (0.0, 4.0), "ylim": (-0.5, 3.5)} and len(fig["fig09"].runs) == 5
    assert fig["fig12"].runs == ("e2-momentum-lr0.012-400ep", "e2-momentum-lr0.00015-400ep")
    assert fig["fig13"].options == {"updates": (35, 1635)} and fig["fig13"].runs == ("e2-momentum-lr0.012-400ep",)
    assert fig["fig14"].options == {"xlim": (0.0, 2.0), "ylim": (0.25, 2.25)} and len(fig["fig14"].runs) == 4
    assert fig["fig15"].kind == "lr" and fig["fig15"].options == {"updates": (1, 30)}
    assert fig["fig16"].kind == "paths" and len(fig["fig16"].runs) == 4


def test_figure_kinds_and_options_are_what_the_renderer_accepts():
    render = pytest.importorskip("tracer.render")
    from tracer.render.common import RenderOptions

    for figure in FIGURES:
        assert figure.kind in render.FIGURE_KINDS, figure.id
        RenderOptions.from_mapping(dict(figure.options))


def test_select_expands_experiments_and_figures_to_their_runs():
    runs, figures = select(["fig13"])
    assert [r.id for r in runs] == ["e2-momentum-lr0.012-400ep"] and [f.id for f in figures] == ["fig13"]
    runs, figures = select(["E4"])
    assert {r.id for r in runs} == {"adam-lr0.01", "adam-lr0.12", "e4-multiplicative-0.8", "e4-multiplicative-0.5"}
    assert {f.id for f in figures} == {"fig15b", "fig16"}
    runs, figures = select(["linear-step"])
    assert [r.id for r in runs] == ["linear-step"] and figures == ()
    assert select(None) == (RUNS, FIGURES)
    with pytest.raises(TracerError, match="unknown experiment, run or figure 'E9'; experiments: E1, E2"):
        select(["E9"])


def test_batches_per_epoch_are_the_problems_and_count_every_update():
    from tracer.problems import get_problem

    for problem in {run.problem for run in RUNS}:
        assert BATCHES_PER_EPOCH[problem] == get_problem(problem).batches_per_epoch, problem
    for run in RUNS:
        assert len(_trace(run.id)) == run.updates, run.id  # mlp: 60 epochs of 16 batches, not of 1


def test_the_catalogue_is_torch_free_and_experiments_are_read_from_the_records():
    import subprocess
    import sys

    code = ("import sys, tracer.catalogue as c; c.describe(); c.select(['E2']); "
            "assert 'torch' not in sys.modules, 'tracer.catalogue imported torch'")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert EXPERIMENTS["E2"][1] == tuple(f.id for f in FIGURES if f.experiment == "E2")
    assert set(EXPERIMENTS["E2"][1]) == {f"fig{n:02d}" for n in range(4, 14)}
    assert EXPERIMENTS["E3"][0] == ("adam-lr0.01", "adam-lr0.12", "e3-multistep-0.8", "e3-multistep-0.5")


def test_render_all_needs_the_traces(tmp_path):
    with pytest.raises(TracerError, match="missing trace"):
        experiments.render_figures([FIGURES_BY_ID["fig13"]], tmp_path, tmp_path)


# ------------------------------------------------------------ the findings

CONVERGED = [
    *(f"e1-{name}" for name in ("sgd", "momentum", "rmsprop", "adam")),
    "e2-momentum-lr0.01-100ep", "e2-momentum-lr0.005-100ep", "e2-momentum-lr0.001-100ep",
    "e2-momentum-lr0.012-400ep", "e2-momentum-lr0.00015-400ep",
    "adam-lr0.12", "e3-multistep-0.8", "e3-multistep-0.5", "e4-multiplicative-0.8", "e4-multiplicative-0.5",
]


@pytest.mark.parametrize("run_id", CONVERGED)
def test_converging_runs_end_at_the_true_orbit(run_id):
    wa, wb = _final(run_id)
    assert abs(wa - ORBIT_A) < CONVERGENCE and abs(wb - ORBIT_B) < CONVERGENCE


def test_momentum_lr_0012_overshoots_in_100_epochs_as_the_article_prints():
    wa, wb = _final("e2-momentum-lr0.012-100ep")
    # The article: Wa 3.338, Wb 0.997. We reproduce 3.33842, 0.99725.
    assert round(wa, 3) == 3.338 and round(wb, 3) == 0.997


def test_too_small_a_learning_rate_has_not_arrived_in_100_epochs():
    wa, wb = _final("e2-momentum-lr0.00015-100ep")
    assert max(abs(wa - ORBIT_A), abs(wb - ORBIT_B)) > 0.1


def test_adam_at_lr_001_is_the_slowest_early_on():
    # Article, Figure 1: Adam's effective steps are the smallest early on.
    early = {name: np.mean(_trace(f"e1-{name}")["step_size"][:100]) for name in ("sgd", "momentum", "rmsprop", "adam")}
    assert min(early, key=early.get) == "adam"


# Section B of REFERENCE.md: the lr after epochs 1..10, as the article prints them.
LINEAR_TABLES = {
    "linear-exponential": "0.0900 0.0810 0.0729 0.0656 0.0590 0.0531 0.0478 0.0430 0.0387 0.0349",
    "linear-step": "0.1000 0.1000 0.1000 0.0900 0.0900 0.0900 0.0900 0.0810 0.0810 0.0810",
    "linear-linear": "0.0625 0.0750 0.0875 0.1000 0.1000 0.1000 0.1000 0.1000 0.1000 0.1000",
}


@pytest.mark.parametrize("run_id", sorted(LINEAR_TABLES))
def test_linear_regression_learning_rates_are_the_articles_tables(run_id):
    import torch

    from tracer.schedulers import build_scheduler

    trace = _trace(run_id)
    expected = LINEAR_TABLES[run_id].split()
    assert trace.meta["scheduler_every"] == "epoch" and len(trace) == 1000
    epochs, lrs = trace["epoch"], trace["lr"]
    for epoch in range(10):
        assert len(set(lrs[epochs == epoch])) == 1  # one lr per epoch
    # The lr after epoch k is the one in effect during epoch k+1 (k = 1..9) ...
    assert [f"{lrs[epochs == k][0]:.4f}" for k in range(1, 10)] == expected[:9]
    # ... and after the last epoch no update uses it: step the same spec's scheduler.
    param = torch.nn.Parameter(torch.zeros(()))
    optimizer = torch.optim.SGD([param], lr=0.1)
    scheduler = build_scheduler(optimizer, trace.meta["scheduler"])
    after = []
    for _ in range(10):
        optimizer.step()
        scheduler.step()
        after.append(f"{scheduler.get_last_lr()[0]:.4f}")
    assert after == expected
    # The fit itself converges: y = 2 x1 - 3.4 x2 + 4.2.
    final = trace.final
    assert final["weight[0]"] == pytest.approx(2.0, abs=0.01)
    assert final["weight[1]"] == pytest.approx(-3.4, abs=0.01)
    assert final["bias[0]"] == pytest.approx(4.2, abs=0.01)


def _schedule(lr, factor, counts, updates):
    """The lr at updates 1..updates when it is multiplied by `factor` after the t-th update for t in counts."""
    values = []
    for update in range(1, updates + 1):
        values.append(lr * factor ** sum(1 for t in counts if t < update))
    return values


SCHEDULES = [
    ("e3-multistep-0.8", 0.8, [4, 8, 10, 12, 14, 16, 18, 20, 22, 24]),
    ("e3-multistep-0.5", 0.5, [5, 10, 15, 20]),
    ("e4-multiplicative-0.8", 0.8, [t for t in range(1, 800) if 6 <= t <= 24 and t % 2 == 0]),
    ("e4-multiplicative-0.5", 0.5, [5, 10, 15, 20]),
    ("adam-lr0.12", 1.0, []),
    ("adam-lr0.01", 1.0, []),
]


@pytest.mark.parametrize("run_id, factor, counts", SCHEDULES, ids=[s[0] for s in SCHEDULES])
def test_lr_of_every_update_is_the_schedule(run_id, factor, counts):
    trace = _trace(run_id)
    run = RUNS_BY_ID[run_id]
    expected = _schedule(run.lr, factor, counts, len(trace))
    # The scheduler multiplies step by step, so compare to float64 rounding.
    np.testing.assert_allclose(trace["lr"], expected, rtol=1e-12, atol=0)
    assert trace.meta["scheduler_every"] == ("update" if run.scheduler else None)


def test_rosenbrock_extra_adam_reaches_the_minimum_first():
    # Beyond the articles: on the curved valley Adam's per-coordinate scaling
    # wins; the others are still on the valley floor after 1000 updates.
    distance = {}
    for name in ("sgd", "momentum", "rmsprop", "adam"):
        final = _trace(f"rosenbrock-{name}").final
        distance[name] = np.hypot(final["x"] - 1.0, final["y"] - 1.0)
    assert distance["adam"] < 0.05 and min(distance, key=distance.get) == "adam"


SCRIPTS = sorted((LOGS.parent / "scripts").glob("*.py"))
# Examples of a user's own code, not wrappers of the catalogue (tested on their own).
EXAMPLES = {"trace_own_model.py", "trace_distributed.py", "trace_landscape.py", "lecture_quadratic.py", "trace_lion.py"}


def test_every_script_is_a_thin_documented_wrapper():
    import ast

    names = {path.name for path in SCRIPTS}
    assert {"trace_sgd.py", "trace_momentum.py", "trace_rmsprop.py", "trace_adam.py", "e2_learning_rates.py",
            "e3_multistep.py", "e4_multiplicative.py", "linear_schedulers.py", "render_all.py"} <= names
    for path in SCRIPTS:
        module = ast.parse(path.read_text())
        docstring = ast.get_docstring(module)
        assert docstring and f"python scripts/{path.name}" in docstring, path.name
        if path.name not in EXAMPLES:
            assert len(path.read_text().splitlines()) < 30, f"{path.name} should stay a thin wrapper"


def test_render_all_script_runs(tmp_path):
    import subprocess
    import sys

    done = subprocess.run([sys.executable, str(LOGS.parent / "scripts" / "render_all.py"), "--only", "fig13",
                           "--logs", str(tmp_path)], capture_output=True, text=True)
    assert done.returncode == 2 and "missing trace" in done.stderr


def test_momentum_overshoots_and_turns_back_rmsprop_keeps_jittering():
    # Article, section 2.1: Momentum bypasses the target and comes back;
    # RMSprop keeps dancing around it from about update 300 on.
    momentum = _trace("e1-momentum")["Wa.theta"]
    assert momentum.max() > ORBIT_A + 0.5 and abs(momentum[-1] - ORBIT_A) < CONVERGENCE
    late = {name: np.mean(_trace(f"e1-{name}")["step_size"][300:]) for name in ("sgd", "momentum", "rmsprop", "adam")}
    assert all(late["rmsprop"] > 5 * late[name] for name in ("sgd", "momentum", "adam"))


def test_schedulers_let_adam_start_big_and_still_arrive():
    # Section 3: fixed lr 0.01 is still on its way after 100 epochs; lr 0.12
    # with either kind of decay arrives.
    slow = np.hypot(*np.subtract(_final("adam-lr0.01"), (ORBIT_A, ORBIT_B)))
    assert slow > 0.05
    for run_id in (*EXPERIMENTS["E3"][0][2:], *EXPERIMENTS["E4"][0][2:]):
        assert np.hypot(*np.subtract(_final(run_id), (ORBIT_A, ORBIT_B))) < CONVERGENCE
