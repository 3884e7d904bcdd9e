"""Snapshots, the plane of a run, the loss over it, and the landscape figures.

The checks with a known answer use the 2-parameter orbit problem: there the
plane spans the whole parameter space, so the projected path is the (Wa, Wb)
path turned or mirrored, and the loss over the plane is the problem's
analytic surface.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import torch

from tracer.cli import main
from tracer.errors import RenderError, TracerError
from tracer.landscape import evaluate_surface, find_plane, landscape, load_snapshots
from tracer.landscape.surface import snapshots_of_trace
from tracer.optim import build_optimizer
from tracer.problems.orbit import OrbitProblem, orbit_loss_grid
from tracer.recorder import Recorder
from tracer.recording.snapshots import SnapshotPolicy
from tracer.render import render_figure
from tracer.render.landscape import load_surface
from tracer.trace import load_trace

LR = 0.01
EPOCHS = 4  # 8 batches each: 32 updates
EVERY = 3
# Projections are float64 dot products of float32 values: only float64 rounding separates two ways of computing them.
DOT_RTOL = 1e-12
# The model evaluates the orbit loss in float32 over 512 samples; the analytic surface is float64 (rounding of
# float32 sums of 512 terms, measured up to 1e-6 relative; the mask q < 0 is the same at the float32 point, both sides use it).
SURFACE_RTOL = 1e-5


def train_orbit(path: pathlib.Path, optimizer_name: str = "momentum", every: int = EVERY, limit: int = 200,
                epochs: int = EPOCHS) -> pathlib.Path:
    problem = OrbitProblem()
    model = problem.build_model()
    optimizer = build_optimizer(optimizer_name, model.parameters(), lr=LR)
    with Recorder(optimizer, path, named_parameters=model.named_parameters(), meta={"label": optimizer_name},
                  snapshots=SnapshotPolicy(every=every, limit=limit)) as recorder:
        problem.train(model, optimizer, epochs, recorder)
    return path


def orbit_model() -> torch.nn.Module:
    """A factory for the CLI tests (``tests.test_landscape:orbit_model``)."""
    return OrbitProblem().build_model()


def orbit_data():
    """The whole orbit data set as a loss closure (``tests.test_landscape:orbit_data``)."""
    problem = OrbitProblem()
    return lambda model: problem.loss(model, (problem.x, problem.y))


def wrong_model() -> torch.nn.Module:
    return torch.nn.Linear(2, 1)


def failing_model() -> torch.nn.Module:
    raise RuntimeError("no weights here")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("landscape")
    return [train_orbit(folder / "momentum.trace.csv", "momentum"), train_orbit(folder / "adam.trace.csv", "adam")]


def test_snapshots_match_the_trace(runs):
    trace, snaps = snapshots_of_trace(runs[0])
    assert trace.meta["snapshots"] == {"file": "momentum.snapshots.npz", "every": EVERY, "limit": 200}
    assert snaps.updates.tolist() == list(range(1, len(trace) + 1, EVERY))
    rows = snaps.updates - 1
    for column, name in enumerate(("Wa", "Wb")):
        # theta, g, v: the same float32 values the trace holds, bit for bit.
        for quantity in ("theta", "g", "v"):
            assert np.array_equal(getattr(snaps, quantity)[:, column], trace[f"{name}.{quantity}"][rows])
        assert snaps.final[column] == np.float32(trace.final[name])
    # step = theta_next - theta; theta_next is the next row's theta.
    nexts = np.column_stack([trace["Wa.theta"][rows + 1], trace["Wb.theta"][rows + 1]])
    thetas = np.column_stack([trace["Wa.theta"][rows], trace["Wb.theta"][rows]])
    assert np.array_equal(snaps.step, (nexts - thetas).astype(np.float32))


def test_limit_thins_to_every_other_and_doubles_k(tmp_path):
    path = train_orbit(tmp_path / "r.trace.csv", every=2, limit=5, epochs=2)  # 16 updates
    snaps = load_snapshots(tmp_path / "r.snapshots.npz")
    # 1,3,5,7 fill the 4 slots; at 9: keep 1,5, k=4, take 9; 13; at 17 (none): 1,5,9,13 kept.
    assert snaps.updates.tolist() == [1, 5, 9, 13]
    assert snaps.meta["every"] == 4 and snaps.updates_done == 16
    assert len(snaps.theta) + 1 <= 5


def test_plane_spans_the_orbit_parameter_space(runs):
    """Projected paths are the (Wa, Wb) paths about the final point, turned or mirrored."""
    snaps = [load_snapshots(pathlib.Path(r).with_name(pathlib.Path(r).name.replace(".trace.csv", ".snapshots.npz")))
             for r in runs]
    plane = find_plane(snaps)
    assert sum(plane.explained_variance) == pytest.approx(1.0, abs=1e-12)
    for run in snaps:
        offsets = np.vstack([run.theta, run.final]).astype(np.float64) - plane.origin
        projected = plane.locate(np.vstack([run.theta, run.final]))
        rotation, *_ = np.linalg.lstsq(offsets, projected, rcond=None)
        np.testing.assert_allclose(rotation.T @ rotation, np.eye(2), atol=1e-12)
        np.testing.assert_allclose(offsets @ rotation, projected, rtol=DOT_RTOL, atol=1e-15)


def test_surface_is_the_analytic_orbit_surface(runs, tmp_path):
    out = landscape(runs, orbit_model(), orbit_data(), tmp_path / "s.npz", grid=(9, 7), progress=False)
    surface = np.load(out)
    directions = surface["directions"]
    origin = load_snapshots(pathlib.Path(runs[0]).with_name("momentum.snapshots.npz")).final.astype(np.float64)
    for row, b in enumerate(surface["y"]):
        for column, a in enumerate(surface["x"]):
            wa, wb = (origin + a * directions[0] + b * directions[1]).astype(np.float32)  # the model's float32 point
            expected = orbit_loss_grid(np.array([wa], dtype=np.float64), np.array([wb], dtype=np.float64))[0, 0]
            assert surface["loss"][row, column] == pytest.approx(expected, rel=SURFACE_RTOL), (a, b)


def test_projections_of_g_v_d_are_dot_products_with_the_directions(runs, tmp_path):
    out = landscape(runs, orbit_model(), orbit_data(), tmp_path / "s.npz", grid=(3, 3), progress=False)
    surface = np.load(out)
    traces = [load_trace(r) for r in runs]
    # The directions recomputed here from the trace files alone: PCA of the points about the first run's end.
    every = np.arange(0, len(traces[0]), EVERY)
    points = [np.vstack([np.column_stack([t["Wa.theta"][every], t["Wb.theta"][every]]),
                         [[t.final["Wa"], t.final["Wb"]]]]) for t in traces]
    origin = points[0][-1]
    offsets = np.vstack(points) - origin
    _, _, vt = np.linalg.svd(offsets - offsets.mean(axis=0))
    signs = np.sign(np.sum(vt * surface["directions"], axis=1))  # PCA fixes each direction up to its sign
    directions = vt * signs[:, None]
    np.testing.assert_allclose(directions, surface["directions"], rtol=1e-9, atol=1e-12)
    for index, trace in enumerate(traces):
        for quantity in ("g", "v"):
            vectors = np.column_stack([trace[f"Wa.{quantity}"][every], trace[f"Wb.{quantity}"][every]])
            np.testing.assert_allclose(surface[f"run{index}_{quantity}"], vectors @ directions.T, rtol=1e-9, atol=1e-15)
        # d: the trace's is recomputed by the optimizer's arithmetic in float32, the snapshots' measured as
        # (theta - theta_next) / lr in float64: they differ by the rounding of theta_next, ulp(theta) / lr.
        d = np.column_stack([trace["Wa.d"][every], trace["Wb.d"][every]])
        ulp = np.spacing(np.float32(np.abs(points[index][:-1]).max())) / LR
        np.testing.assert_allclose(surface[f"run{index}_d"], d @ directions.T, rtol=0, atol=4 * ulp)
        theta = np.column_stack([trace["Wa.theta"], trace["Wb.theta"]])
        following = np.vstack([theta[1:], [[trace.final["Wa"], trace.final["Wb"]]]])
        step = (following - theta)[every].astype(np.float32).astype(np.float64)
        np.testing.assert_allclose(surface[f"run{index}_step"], step @ directions.T, rtol=1e-9, atol=1e-15)


def test_filter_normalisation_scales_each_filter_to_the_origin(runs):
    snaps = [snapshots_of_trace(r)[1] for r in runs]
    plane = find_plane(snaps, "filter")
    # Two 0-D tensors: each is one filter, scaled to |Wa|, |Wb| of the origin.
    np.testing.assert_allclose(np.abs(plane.directions), np.tile(np.abs(plane.origin), (2, 1)), rtol=1e-12)
    # Least squares recovers the coordinates of a point of the plane.
    point = plane.point(0.3, -0.2)
    np.testing.assert_allclose(plane.locate(point[None, :]), [[0.3, -0.2]], atol=1e-9)


def test_evaluation_restores_the_model(runs):
    model = orbit_model()
    before = [p.detach().clone() for p in model.parameters()]
    plane = find_plane([snapshots_of_trace(runs[0])[1]])
    evaluate_surface(model, orbit_data(), plane, np.array([-0.1, 0.1]), np.array([-0.1, 0.1]), progress=False)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def _cli(args, capsys):
    code = main(args)
    return code, capsys.readouterr().err


def test_cli_writes_a_surface_the_renderer_draws(runs, tmp_path, capsys):
    out = tmp_path / "s.npz"
    code, err = _cli(["landscape", *map(str, runs), "--model", "tests.test_landscape:orbit_model", "--data",
                      "tests.test_landscape:orbit_data", "--grid", "5x4", "--quiet", "-o", str(out)], capsys)
    assert code == 0, err
    meta = json.loads(str(np.load(out)["meta"]))
    assert [run["trace"] for run in meta["runs"]] == ["momentum.trace.csv", "adam.trace.csv"]
    assert np.load(out)["loss"].shape == (4, 5)
    for kind, traces, name in (("paths", runs, "p.png"), ("paths", runs, "p.gif"), ("internals", runs[1:], "i.png")):
        render_figure(kind, traces, tmp_path / name, surface=str(out), frames=5)
        assert (tmp_path / name).stat().st_size > 1000
    with pytest.raises(RenderError, match=r"is not one of the runs of surface .*adam.trace.csv, momentum.trace.csv"):
        render_figure("paths", [train_orbit(tmp_path / "other.trace.csv", epochs=1)], tmp_path / "x.png",
                      surface=str(out))
    with pytest.raises(RenderError, match="--surface applies to the paths and internals figures, not 'lr'"):
        render_figure("lr", runs, tmp_path / "x.png", surface=str(out))
    assert not (tmp_path / "x.png").exists()


def test_render_on_a_surface_does_not_import_torch(runs, tmp_path):
    surface = landscape(runs, orbit_model(), orbit_data(), tmp_path / "s.npz", grid=3, progress=False)
    code = (
        "import sys\n"
        "from tracer.render import render_figure\n"
        f"render_figure('paths', {[str(r) for r in runs]!r}, {str(tmp_path / 'p.png')!r}, surface={str(surface)!r})\n"
        "assert 'torch' not in sys.modules, 'tracer.render imported torch'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=dict(os.environ, MPLBACKEND="Agg"))
    assert result.returncode == 0, result.stderr


@pytest.fixture(scope="module")
def plain_trace(tmp_path_factory):
    folder = tmp_path_factory.mktemp("plain")
    problem = OrbitProblem()
    model = problem.build_model()
    optimizer = build_optimizer("sgd", model.parameters(), lr=LR)
    with Recorder(optimizer, folder / "plain.trace.csv", named_parameters=model.named_parameters()):
        for _, batch in problem.batches(0):
            loss = problem.loss(model, batch)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return folder / "plain.trace.csv"


# (what is wrong, argument changes, message pattern): each exits 2 with one line and writes nothing.
BAD_INPUTS = [
    ("trace without snapshots", {"trace": "plain"}, r"has no parameter snapshots; record it with Recorder\(\.\.\., snapshots="),
    ("factory that does not import", {"--model": "no_such_module_xyz:build"},
     r"cannot import model factory 'no_such_module_xyz:build': ModuleNotFoundError"),
    ("factory name missing", {"--model": "tests.test_landscape:nothing_here"},
     r"module 'tests.test_landscape' has no 'nothing_here'"),
    ("parameters that do not match", {"--model": "tests.test_landscape:wrong_model"},
     r"the model's parameters do not match the snapshots': the snapshots have 2 tensors \(Wa \[\], Wb \[\]\), the model 2 \(weight \[1, 2\], bias \[1\]\)"),
    ("factory that raises", {"--model": "tests.test_landscape:failing_model"},
     r"the model factory 'tests.test_landscape:failing_model' failed: RuntimeError: no weights here"),
    ("loss closure that fails", {"--data": "tests.test_landscape:wrong_model"},
     r"the loss closure failed at grid point \(.*\): TypeError: "),
    ("grid too large for memory", {"--grid": "10000000"}, r"grid 10000000x10000000 is too large for memory: it needs .* GiB"),
    ("grid too small", {"--grid": "1x5"}, r"invalid grid 1x5; a surface needs at least 2 points a side"),
    ("not an npz", {"-o": "s.csv"}, r"the surface file must end in .npz, got '.*s.csv'"),
]


@pytest.mark.parametrize("changes, pattern", [b[1:] for b in BAD_INPUTS], ids=[b[0] for b in BAD_INPUTS])
def test_bad_inputs_exit_2_with_one_line_and_write_nothing(runs, plain_trace, tmp_path, capsys, changes, pattern):
    options = {"--model": "tests.test_landscape:orbit_model", "--data": "tests.test_landscape:orbit_data",
               "--grid": "3", "-o": "s.npz"}
    options.update({k: v for k, v in changes.items() if k != "trace"})
    options["-o"] = str(tmp_path / options["-o"])
    trace = str(plain_trace) if changes.get("trace") == "plain" else str(runs[0])
    args = ["landscape", trace, "--quiet"] + [item for pair in options.items() for item in pair]
    code, err = _cli(args, capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("tracer: error: ")
    assert __import__("re").search(pattern, lines[0]), lines[0]
    assert list(tmp_path.iterdir()) == []


def test_runs_from_different_starts_are_refused(runs, tmp_path):
    other = tmp_path / "late.trace.csv"
    problem = OrbitProblem()
    model = problem.build_model()
    with torch.no_grad():
        model.Wa.add_(0.5)
    optimizer = build_optimizer("sgd", model.parameters(), lr=LR)
    with Recorder(optimizer, other, named_parameters=model.named_parameters(), snapshots=SnapshotPolicy(every=2)):
        for _, batch in problem.batches(0):
            loss = problem.loss(model, batch)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    with pytest.raises(TracerError, match="start from different parameters"):
        landscape([runs[0], other], orbit_model(), orbit_data(), tmp_path / "s.npz", progress=False)
    assert not (tmp_path / "s.npz").exists()


@pytest.mark.parametrize("every, limit", [(0, 10), (2, 1), (1.5, 10)])
def test_bad_snapshot_policy(every, limit):
    with pytest.raises(TracerError, match=r"invalid snapshot (every|limit) .*; expected an integer >= [12]"):
        SnapshotPolicy(every=every, limit=limit)


def test_cnn_example_script(tmp_path):
    script = pathlib.Path(__file__).parent.parent / "scripts" / "trace_landscape.py"
    result = subprocess.run([sys.executable, str(script), "--out", str(tmp_path), "--epochs", "2", "--grid", "4"],
                            capture_output=True, text=True, env=dict(os.environ, MPLBACKEND="Agg"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [str(tmp_path / "cnn_landscape.png"), str(tmp_path / "cnn_landscape.gif")]
    meta = json.loads(str(np.load(tmp_path / "cnn.surface.npz")["meta"]))
    assert meta["parameters"] == 566 and [run["label"] for run in meta["runs"]] == ["adam", "momentum"]


def test_an_interrupted_run_keeps_its_snapshots(tmp_path):
    problem = OrbitProblem()
    model = problem.build_model()
    optimizer = build_optimizer("adam", model.parameters(), lr=LR)
    with pytest.raises(KeyboardInterrupt):
        with Recorder(optimizer, tmp_path / "r.trace.csv", named_parameters=model.named_parameters(),
                      snapshots=SnapshotPolicy(every=2)):
            for _, batch in problem.batches(0):
                loss = problem.loss(model, batch)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                if optimizer.state[model.Wa]["step"] == 5:
                    raise KeyboardInterrupt
    snaps = load_snapshots(tmp_path / "r.snapshots.npz")
    assert snaps.meta["status"] == "interrupted" and snaps.updates.tolist() == [1, 3, 5] and snaps.updates_done == 5
    assert np.array_equal(snaps.final, torch.stack([model.Wa, model.Wb]).detach().numpy())
    assert load_trace(tmp_path / "r.trace.csv").status == "interrupted"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary file left


def test_snapshots_refuse_an_appended_trace(tmp_path):
    model = OrbitProblem().build_model()
    optimizer = build_optimizer("sgd", model.parameters(), lr=LR)
    with pytest.raises(TracerError, match="snapshots cannot continue an appended trace"):
        Recorder(optimizer, tmp_path / "r.trace.csv", if_exists="append", snapshots=SnapshotPolicy())
    assert list(tmp_path.iterdir()) == []


def test_a_snapshot_limit_beyond_the_machines_memory_is_refused(tmp_path):
    model = OrbitProblem().build_model()
    optimizer = build_optimizer("sgd", model.parameters(), lr=LR)
    with pytest.raises(TracerError, match=r"snapshot limit 1000000000000 needs .* GiB for 2 parameters \(20 bytes per "
                                          r"parameter per snapshot\), more than this machine's .* GiB; lower the limit"):
        Recorder(optimizer, tmp_path / "r.trace.csv", snapshots=SnapshotPolicy(limit=10**12))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "load, error, what",
    [(load_snapshots, TracerError, "snapshot"), (load_surface, RenderError, "surface")],
    ids=["snapshots", "surface"],
)
def test_a_missing_or_foreign_npz_is_refused_in_one_line(tmp_path, load, error, what):
    np.savez(tmp_path / "other.npz", meta=np.array(json.dumps({"format": "someone-else"})))
    np.savez(tmp_path / "bare.npz", x=np.zeros(3))
    (tmp_path / "text.npz").write_text("not a zip")
    cases = [
        ("missing.npz", rf"missing\.npz: {what} file not found \("),
        ("text.npz", rf"text\.npz: not a {what} file: "),
        ("bare.npz", rf"bare\.npz: not a tracer {what} file \('meta'\)"),
        ("other.npz", rf"other\.npz: not a tracer {what} file \(format 'someone-else', expected "),
    ]
    for name, message in cases:
        with pytest.raises(error, match=message) as raised:
            load(tmp_path / name)
        assert "\n" not in str(raised.value)


def test_a_surface_files_loss_name_is_drawn_literally(runs, tmp_path):
    """The loss's name in a surface file is its writer's text: invalid mathtext in it is drawn as it is."""
    surface = landscape(runs, orbit_model(), orbit_data(), tmp_path / "s.npz", grid=3, progress=False)
    arrays = dict(np.load(surface))
    meta = json.loads(str(arrays["meta"]))
    meta["loss"] = "$\\foo{$ mse"
    arrays["meta"] = np.array(json.dumps(meta))
    hostile = tmp_path / "hostile.npz"
    np.savez(hostile, **arrays)
    render_figure("paths", runs, tmp_path / "p.png", surface=str(hostile))
    assert (tmp_path / "p.png").stat().st_size > 1000
