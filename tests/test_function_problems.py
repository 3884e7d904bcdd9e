"""A teacher's own f(x, y): the expression reader (valid, invalid, hostile), the named test
functions, `tracer trace --function`, and the Python API with text or a torch callable."""

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from tracer.cli import main
from tracer.errors import TracerError
from tracer.problems import ANALYTIC_NAMES, get_problem
from tracer.problems.analytic import ANALYTIC_SURFACES
from tracer.problems.expression import MAX_LENGTH, ExpressionError, parse_expression
from tracer.problems.surfaces import surface_for
from tracer.run import RunConfig, run_experiment, trace_function
from tracer.trace import load_trace

OPTIMIZERS = ("sgd", "momentum", "rmsprop", "adam")

# (text, x, y, expected): numpy evaluation against the formula written out in Python.
VALID = [
    ("x**2 + 10*y**2", 1.5, -2.0, 1.5**2 + 10 * 2.0**2),
    ("(1 - x)**2 + 100*(y - x**2)**2", 0.3, 0.7, (1 - 0.3) ** 2 + 100 * (0.7 - 0.09) ** 2),
    ("-x + +y", 2.0, 3.0, 1.0),
    ("sin(x) * exp(-y) / 2", 0.5, 1.0, math.sin(0.5) * math.exp(-1.0) / 2),
    ("sqrt(abs(x)) + log(1 + y**2) + tanh(x) - atan(y)", -4.0, 2.0,
     2.0 + math.log(5.0) + math.tanh(-4.0) - math.atan(2.0)),
    ("cos(2*pi*x) + e**y", 0.25, 1.0, math.cos(math.pi / 2) + math.e),
    ("1e-3 * x**4 - 0.5*y", 2.0, 4.0, 1e-3 * 16 - 2.0),
    ("x", 3.0, 9.0, 3.0),
]

# (text, regex of the one-line message): refused, never run.
REFUSED = [
    ("__import__('os').system('touch /tmp/pwned')", "only the listed functions may be called"),
    ("__import__('os')", "unknown function '__import__'"),
    ("x.__class__.__bases__", "attribute access is not allowed"),
    ("open('/etc/passwd')", "unknown function 'open'"),
    ("eval('1+1')", "unknown function 'eval'"),
    ("(lambda: 0)()", "only the listed functions"),
    ("lambda x: x", "a lambda is not allowed"),
    ("[c for c in ()]", "a comprehension is not allowed"),
    ("x if y else 0", "if/else is not allowed"),
    ("x[0]", "indexing is not allowed"),
    ("'x' + x", "'x' is not a number"),
    ("True * x", "True is not a number"),
    ("x^2 + y", r"'\^' \(write powers as x\*\*2\)"),
    ("x // 2", "the operator '//' is not accepted"),
    ("x < y", "a comparison is not allowed"),
    ("x and y", "and/or is not allowed"),
    ("z + x", "unknown name 'z'; the variables are x and y"),
    ("sin + x", r"unknown name 'sin' \(functions are called"),
    ("sin(x, y)", r"sin\(\) takes one argument"),
    ("exp(x=1)", r"exp\(\) takes one argument"),
    ("x = 1", "not a formula"),
    ("x; import os", "not a formula"),
    ("x +", "not a formula"),
    ("x\ny", "several lines"),
    ("", "it is empty"),
    ("  ", "it is empty"),
    ("2 + 3", "uses neither x nor y"),
    ("x" + " + x" * 300, r"at most 1000 are accepted|terms, at most"),
    ("(" * 120 + "x" + ")" * 120, None),  # deep but short: accepted
]


@pytest.mark.parametrize("text, x, y, expected", VALID, ids=[v[0] for v in VALID])
def test_valid_expressions_evaluate_with_numpy_and_torch(text, x, y, expected):
    function = parse_expression(text)
    assert float(function(np.float64(x), np.float64(y))) == pytest.approx(expected, rel=1e-12)
    # torch float64 with autograd: the same value, and a gradient where the formula has one.
    tx = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    ty = torch.tensor(y, dtype=torch.float64, requires_grad=True)
    value = function(tx, ty)
    assert isinstance(value, torch.Tensor) and value.item() == pytest.approx(expected, rel=1e-12)
    value.backward()
    assert tx.grad is not None or ty.grad is not None


def test_numpy_evaluation_broadcasts_over_a_grid():
    function = parse_expression("x**2 + 10*y**2")
    x, y = np.meshgrid(np.linspace(-1, 1, 5), np.linspace(-2, 2, 3))
    np.testing.assert_array_equal(function(x, y), x**2 + 10 * y**2)


@pytest.mark.parametrize("text, message", REFUSED, ids=[r[0][:30] for r in REFUSED])
def test_invalid_and_hostile_expressions_are_refused_in_one_line(text, message):
    if message is None:
        assert parse_expression(text).variables == {"x"}
        return
    with pytest.raises(ExpressionError, match=message) as caught:
        parse_expression(text)
    assert isinstance(caught.value, TracerError)
    assert "\n" not in str(caught.value)


def test_constant_arithmetic_is_folded_in_floats_not_run_as_python_integers():
    # 9**9**9**9 as Python integers would run for ever; folded in float64 it is inf at once.
    function = parse_expression("9**9**9**9 * x + 2**10")
    assert float(function(np.float64(1.0), np.float64(0.0))) == math.inf
    assert len(str(MAX_LENGTH)) and parse_expression("2**10 * x").tree.left.value == 1024.0


def test_hostile_function_on_the_command_line_writes_nothing_and_runs_nothing(tmp_path, capsys):
    witness = tmp_path / "pwned"
    out = tmp_path / "h.trace.csv"
    status = main(["trace", "--function", f"__import__('os').system('touch {witness}')", "--start=0,0",
                   "--optimizer", "sgd", "--steps", "3", "--out", str(out)])
    error = capsys.readouterr().err
    assert status == 2 and error.count("\n") == 1 and error.startswith("tracer: error: cannot read the function")
    assert not witness.exists() and list(tmp_path.iterdir()) == []


def test_the_teachers_command_traces_the_function_from_the_start_given(tmp_path, capsys):
    out = tmp_path / "q.trace.csv"
    assert main(["trace", "--function", "x**2 + 10*y**2", "--start=-4,1.5", "--optimizer", "momentum",
                 "--lr", "0.01", "--steps", "200", "--out", str(out)]) == 0
    trace = load_trace(out)
    assert len(trace) == 200 and trace.status == "complete"
    assert trace.meta["problem"] == {"name": "function", "expression": "x**2 + 10*y**2", "x0": -4.0, "y0": 1.5}
    assert (trace["x.theta"][0], trace["y.theta"][0]) == (-4.0, 1.5)
    # The loss column is f at theta, in float32 arithmetic: f(-4, 1.5) = 16 + 22.5 exactly.
    assert trace["loss"][0] == 38.5
    # The gradient (2x, 20y) at the start, exactly representable.
    assert (trace["x.g"][0], trace["y.g"][0]) == (-8.0, 30.0)
    assert abs(trace.final["x"]) < 1e-3 and abs(trace.final["y"]) < 1e-3


@pytest.mark.parametrize("arguments, message", [
    (["--function", "x**2", "--problem", "beale"], "either --problem or --function"),
    (["--function", "x**2 + y**2"], "needs its start point"),
    (["--problem", "orbit", "--start=1,2"], "--start applies to the 2-D functions"),
    (["--problem", "orbit", "--steps", "5"], "--steps counts the updates of a 2-D function"),
    (["--problem", "beale", "--steps", "5", "--epochs", "6"], "either --steps or --epochs"),
    (["--function", "log(x) + y", "--start=-1,0"], r"f is not finite at the start \(-1, 0\): nan"),
    (["--problem", "himmelblau", "--start=nan,0"], "expected two finite numbers"),
])
def test_bad_function_options_are_one_line_errors(tmp_path, capsys, arguments, message):
    out = tmp_path / "t.trace.csv"
    status = main(["trace", *arguments, "--optimizer", "sgd", "--out", str(out)])
    error = capsys.readouterr().err
    assert status == 2 and error.count("\n") == 1
    assert __import__("re").search(message, error), error
    assert not out.exists()


def test_named_formulas_as_text_match_their_python_functions():
    x, y = np.meshgrid(np.linspace(-2, 3, 41), np.linspace(-1.5, 2.5, 37))
    for surface in ANALYTIC_SURFACES.values():
        np.testing.assert_allclose(parse_expression(surface.expression)(x, y), surface.function(x, y),
                                   rtol=1e-13, atol=1e-12, err_msg=surface.name)


@pytest.mark.parametrize("name", ANALYTIC_NAMES)
def test_every_named_function_has_its_minima_where_stated(name):
    surface = ANALYTIC_SURFACES[name]
    for point in surface.minima:
        value = surface.function(np.float64(point[0]), np.float64(point[1]))
        # Himmelblau's three irrational minima are given to 6 decimals: f there is ~1e-10.
        assert abs(float(value)) < 1e-9, (name, point, value)


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("name", ANALYTIC_NAMES)
def test_every_named_function_traces_with_every_optimizer(tmp_path, name, optimizer):
    lr = 1e-4 if name in ("rosenbrock", "beale") else 1e-3
    out = run_experiment(RunConfig(problem=name, optimizer=optimizer, lr=lr, epochs=12, out=tmp_path / "t.trace.csv"))
    trace = load_trace(out)
    surface = ANALYTIC_SURFACES[name]
    assert trace.status == "complete" and len(trace) == 12
    assert (trace["x.theta"][0], trace["y.theta"][0]) == tuple(np.float32(v) for v in surface.start)
    # The loss recorded is the formula at theta (float32 training vs float64 numpy: float32 precision).
    expected = surface.function(trace["x.theta"], trace["y.theta"])
    np.testing.assert_allclose(trace["loss"], expected, rtol=2e-6, atol=1e-5)
    assert np.isfinite(trace["x.d"]).all() and np.isfinite(trace["y.d"]).all()
    assert surface_for(trace.meta["problem"]).minima == surface.minima


@pytest.mark.parametrize("name", ANALYTIC_NAMES)
def test_a_named_function_and_its_text_give_the_same_trace_bit_for_bit(tmp_path, name):
    surface = ANALYTIC_SURFACES[name]
    named = load_trace(run_experiment(RunConfig(problem=name, optimizer="adam", lr=1e-3, epochs=20,
                                                out=tmp_path / "a.trace.csv")))
    text = load_trace(trace_function(surface.expression, surface.start, optimizer="adam", lr=1e-3, steps=20,
                                     out=tmp_path / "b.trace.csv"))
    for column in ("loss", "x.theta", "y.theta", "x.g", "y.g", "x.d", "y.d"):
        np.testing.assert_array_equal(named[column], text[column], err_msg=column)


def test_a_torch_callable_traces_as_its_text_and_carries_a_sampled_contour(tmp_path):
    def bowl(x, y):
        return x**2 + 10 * y**2

    from_callable = load_trace(trace_function(bowl, (-4, 1.5), optimizer="adam", lr=0.05, steps=50,
                                              out=tmp_path / "c.trace.csv"))
    from_text = load_trace(trace_function("x**2 + 10*y**2", (-4, 1.5), optimizer="adam", lr=0.05, steps=50,
                                          out=tmp_path / "t.trace.csv"))
    for column in ("loss", "x.theta", "y.theta", "x.d", "y.d"):
        np.testing.assert_array_equal(from_callable[column], from_text[column], err_msg=column)
    problem = from_callable.meta["problem"]
    assert problem["callable"].endswith("bowl")
    # Sampled after the run over the box the path went through, a quarter of its span wider each side.
    (x_low, x_high), (y_low, y_high) = problem["sampled"]["x"], problem["sampled"]["y"]
    path_x = np.append(from_text["x.theta"], from_text.final["x"])
    path_y = np.append(from_text["y.theta"], from_text.final["y"])
    span_x, span_y = np.ptp(path_x), np.ptp(path_y)
    assert x_low == pytest.approx(path_x.min() - span_x / 4) and x_high == pytest.approx(path_x.max() + span_x / 4)
    assert y_low == pytest.approx(path_y.min() - span_y / 4) and y_high == pytest.approx(path_y.max() + span_y / 4)
    # The renderer's numpy surface interpolates the samples: bilinear on a grid of step h is off
    # by at most (hx/2)^2 * 1 + (hy/2)^2 * 10 for this quadratic, plus 7-digit rounding.
    surface = surface_for(problem)
    hx, hy = (x_high - x_low) / 120, (y_high - y_low) / 120
    xs, ys = np.linspace(x_low, x_high, 23), np.linspace(y_low, y_high, 19)
    exact = parse_expression("x**2 + 10*y**2")(*np.meshgrid(xs, ys))
    np.testing.assert_allclose(surface.loss_grid(xs, ys), exact, rtol=1e-6,
                               atol=(hx / 2) ** 2 + 10 * (hy / 2) ** 2 + 1e-12)
    assert np.isnan(surface.loss_grid(np.array([x_high + 1]), np.array([0.0]))).all()  # outside the samples
    # bounds given: sampled there, before the run.
    boxed = load_trace(trace_function(bowl, (-4, 1.5), optimizer="adam", lr=0.05, steps=5,
                                      out=tmp_path / "b.trace.csv", bounds=((-5, 5), (-2, 2))))
    assert (boxed.meta["problem"]["sampled"]["x"], boxed.meta["problem"]["sampled"]["y"]) == ([-5.0, 5.0], [-2.0, 2.0])


def test_a_callable_run_cut_off_keeps_its_rows_and_a_contour_of_the_path_so_far(tmp_path):
    """Ctrl-C half way (here: the callable raises KeyboardInterrupt once, at its 21st call): the trace keeps
    its whole rows, reads back as interrupted, and the contour is sampled over the path so far."""
    calls = []

    def bowl(x, y):
        calls.append(1)
        if len(calls) == 21:
            raise KeyboardInterrupt
        return x**2 + 10 * y**2

    out = tmp_path / "cut.trace.csv"
    with pytest.raises(KeyboardInterrupt):
        trace_function(bowl, (-4, 1.5), optimizer="adam", lr=0.05, steps=50, out=out)
    trace = load_trace(out)
    # Call 1 checks the callable before the run, then one call per update: 19 updates were done.
    assert (len(trace), trace.status) == (19, "interrupted")
    sampled = trace.meta["problem"]["sampled"]
    assert sampled["x"][0] < trace["x.theta"].min() and sampled["x"][1] > trace["x.theta"].max()
    assert not list(tmp_path.glob(".*"))  # no temporary file left beside it


def test_replacing_a_traces_metadata_is_atomic(tmp_path, monkeypatch):
    """The metadata line is rewritten in a file beside the trace and moved over it: a failure on the way
    (here the move itself) leaves the trace byte for byte as it was, and no temporary file."""
    from tracer import trace as trace_module

    out = trace_function("x**2 + 10*y**2", (-4, 1.5), optimizer="sgd", lr=0.05, steps=5, out=tmp_path / "q.trace.csv")
    before = out.read_bytes()
    meta = load_trace(out).meta
    monkeypatch.setattr(trace_module.os, "replace", lambda *args: (_ for _ in ()).throw(OSError(28, "No space left")))
    with pytest.raises(OSError):
        trace_module.replace_meta(out, {**meta, "label": "renamed"})
    assert out.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["q.trace.csv"]
    monkeypatch.undo()
    trace_module.replace_meta(out, {**meta, "label": "renamed"})
    renamed = load_trace(out)
    assert renamed.meta["label"] == "renamed"
    assert out.read_bytes().split(b"\n", 1)[1] == before.split(b"\n", 1)[1]  # every row and the trailer as they were
    with pytest.raises(TracerError, match="not a CSV trace"):
        (tmp_path / "x.bin").write_bytes(b"TRACEbin" + bytes(8))
        trace_module.replace_meta(tmp_path / "x.bin", meta)


def test_a_callable_that_does_not_return_one_number_is_refused(tmp_path):
    with pytest.raises(TracerError, match="must return one number"):
        trace_function(lambda x, y: torch.stack([x, y]), (1, 1), optimizer="sgd", lr=0.1, steps=2,
                       out=tmp_path / "v.trace.csv")
    assert not (tmp_path / "v.trace.csv").exists()


def test_a_function_of_x_alone_still_trains_y_with_zero_gradient(tmp_path):
    trace = load_trace(trace_function("x**2", (1.0, 2.0), optimizer="sgd", lr=0.1, steps=3,
                                      out=tmp_path / "x.trace.csv"))
    assert list(trace["y.g"]) == [0.0, 0.0, 0.0] and list(trace["y.theta"]) == [2.0, 2.0, 2.0]


def test_the_renderer_reads_the_function_without_torch(tmp_path):
    out = trace_function("x**2 + 10*y**2", (-4, 1.5), optimizer="sgd", lr=0.05, steps=5, out=tmp_path / "q.trace.csv")
    code = ("import sys\nfrom tracer.render import render_figure\n"
            f"render_figure('paths', [{str(out)!r}], {str(tmp_path / 'p.png')!r})\n"
            "assert 'torch' not in sys.modules, 'torch imported'\n")
    subprocess.run([sys.executable, "-c", code], check=True)
    assert (tmp_path / "p.png").stat().st_size > 0
    assert json.loads(out.read_text().splitlines()[0])["problem"]["expression"] == "x**2 + 10*y**2"


# ------------------------------------------------------------------ the figures


def _bowl_traces(tmp_path, steps=30):
    """SGD, Momentum, RMSprop and Adam on x**2 + 10*y**2 from (-4, 1.5)."""
    return [trace_function("x**2 + 10*y**2", (-4, 1.5), optimizer=name, lr=0.02, steps=steps,
                           out=tmp_path / f"{name}.trace.csv") for name in OPTIMIZERS]


def test_paths_draw_the_functions_contour_in_its_own_coordinates(tmp_path):
    from matplotlib.image import AxesImage

    from tracer.render.common import RenderOptions
    from tracer.render.paths import contour_scene

    traces = [load_trace(p) for p in _bowl_traces(tmp_path)]
    scene = contour_scene(traces, RenderOptions(), default_size=(640, 500))
    ax = scene.ax
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("x", "y")
    # The start lands where it was given, in the figure's data.
    starts = [line for line in ax.lines if line.get_label() == "start"]
    assert len(starts) == 1 and (starts[0].get_xdata()[0], starts[0].get_ydata()[0]) == (-4.0, 1.5)
    # The range holds every path; the background is f itself at the image's cell centres.
    xlim, ylim = ax.get_xlim(), ax.get_ylim()
    for path in scene.paths:
        assert (path.xy[:, 0] >= xlim[0]).all() and (path.xy[:, 0] <= xlim[1]).all()
        assert (path.xy[:, 1] >= ylim[0]).all() and (path.xy[:, 1] <= ylim[1]).all()
    (image,) = [a for a in ax.get_children() if isinstance(a, AxesImage)]
    left, right, bottom, top = image.get_extent()
    data = np.asarray(image.get_array())
    rows, columns = data.shape
    cell_x, cell_y = (right - left) / columns, (top - bottom) / rows
    # Cell (r, c) is the mean of 3 x 3 samples of f inside it; f is convex and smooth, so the
    # mean is within the cell's spread of f (|grad| * half a cell + curvature) of f at its centre.
    for r, c in [(0, 0), (rows // 2, columns // 3), (rows - 1, columns - 1)]:
        x, y = left + (c + 0.5) * cell_x, bottom + (r + 0.5) * cell_y
        spread = abs(2 * x) * cell_x + abs(20 * y) * cell_y + 10 * (cell_x**2 + cell_y**2)
        value = data[r, c]
        levels = image.norm.boundaries
        if levels[0] < value < levels[-1]:  # not clipped into the end bands
            assert value == pytest.approx(x**2 + 10 * y**2, abs=spread)
    # Geometric levels: the function spans decades down to its minimum of 0.
    assert image.norm.boundaries[-1] / image.norm.boundaries[1] > 1e4


@pytest.mark.parametrize("optimizer, listed", [
    ("sgd", ["SGD lr=0.02", "−g  gradient", "step −lr·d"]),
    ("momentum", ["Momentum lr=0.02", "−g  gradient", "−v  momentum", "step −lr·d"]),
    ("rmsprop", ["RMSprop lr=0.02", "−g  gradient", "±√s  per axis", "step −lr·d"]),
    ("adam", ["Adam lr=0.02", "−g  gradient", "−v  momentum", "±√s  per axis", "step −lr·d"]),
])
def test_the_internals_legend_lists_only_what_the_optimizer_has(tmp_path, optimizer, listed):
    from tracer.render.common import RenderOptions
    from tracer.render.internals import build_internals

    path = trace_function("x**2 + 10*y**2", (-4, 1.5), optimizer=optimizer, lr=0.02, steps=20,
                          out=tmp_path / "t.trace.csv")
    built = build_internals([load_trace(path)], RenderOptions())
    texts = [t.get_text() for t in built.views[0].legend.get_texts()]
    assert [t.split("  (own")[0] for t in texts] == listed
    title = built.views[0].legend.get_title().get_text()
    shared = {"sgd": "−g drawn", "momentum": "−g and −v share one scale",
              "rmsprop": "−g and ±√s share one scale", "adam": "−g, −v and ±√s share one scale"}[optimizer]
    assert title.startswith(shared)


@pytest.mark.parametrize("count, animated", [(1, False), (1, True), (3, True)])
def test_no_internals_text_is_under_ten_pixels_at_the_default_size(tmp_path, count, animated):
    from matplotlib import rc_context
    from matplotlib.text import Text

    from tracer.render.common import RenderOptions
    from tracer.render.internals import MIN_TEXT_PIXELS, build_internals, internals_design, text_size

    traces = [load_trace(p) for p in _bowl_traces(tmp_path, steps=10)[:count]]
    options = RenderOptions()
    with rc_context(text_size(options, internals_design(count), animated)):
        built = build_internals(traces, options, animated=animated)
        built.update(built.frames - 1)
        built.figure.canvas.draw()
        dpi = built.figure.dpi
        sizes = {t.get_text(): t.get_fontsize() * dpi / 72 for t in built.figure.findobj(Text)
                 if t.get_text().strip() and t.get_visible()}
    assert sizes and min(sizes.values()) >= MIN_TEXT_PIXELS - 1e-9 >= 10, min(sizes.items(), key=lambda i: i[1])
    # The colour bar's label stands above the bar (a title), not beside the panels.
    bar_titles = [ax.get_title(loc="left") for ax in built.figure.axes]
    assert "f(x, y)" in bar_titles


def test_the_loss_figure_is_log_scaled_where_the_loss_spans_decades(tmp_path):
    from matplotlib.figure import Figure

    from tracer.render import render_figure
    from tracer.render.common import RenderOptions
    from tracer.render.loss import draw_loss_and_lr

    traces = [load_trace(p) for p in _bowl_traces(tmp_path, steps=60)]
    figure = Figure()
    axes = figure.subplots(2, 1)
    draw_loss_and_lr(axes, traces, RenderOptions(), ["a", "b", "c", "d"], ["C0", "C1", "C2", "C3"])
    # The loss falls from 38.5 by more than two decades; the constant lr 0.02 does not span any.
    assert traces[0]["loss"][0] / traces[0]["loss"][-1] > 100
    assert (axes[0].get_yscale(), axes[1].get_yscale()) == ("log", "linear")
    np.testing.assert_array_equal(axes[0].lines[0].get_ydata(), traces[0]["loss"])
    np.testing.assert_array_equal(axes[1].lines[0].get_ydata(), traces[0]["lr"])
    # A saddle's loss goes negative: a linear axis.
    saddle = load_trace(run_experiment(RunConfig(problem="saddle", optimizer="sgd", lr=0.1, epochs=30,
                                                 out=tmp_path / "saddle.trace.csv")))
    figure = Figure()
    axes = figure.subplots(2, 1)
    draw_loss_and_lr(axes, [saddle], RenderOptions(), ["saddle"], ["C0"])
    assert saddle["loss"].min() < 0 and axes[0].get_yscale() == "linear"
    assert render_figure("loss", traces, tmp_path / "loss.png").stat().st_size > 0


def test_the_dashboard_draws_each_traces_loss_and_lr_on_top():
    import pathlib

    from matplotlib.figure import Figure

    from tracer.render.common import RenderOptions
    from tracer.render.plots import draw_dashboard_loss_row

    logs = pathlib.Path(__file__).resolve().parent.parent / "logs"
    traces = [load_trace(logs / "mlp-adam.trace.csv"), load_trace(logs / "mlp-momentum.trace.csv")]
    figure = Figure()
    body = draw_dashboard_loss_row(figure, traces, RenderOptions(), ["Adam", "Momentum"], 700)
    loss_ax, lr_ax = figure.subfigs[0].axes
    assert body is figure.subfigs[1]
    for index, trace in enumerate(traces):
        np.testing.assert_array_equal(loss_ax.lines[index].get_ydata(), trace["loss"])
        np.testing.assert_array_equal(lr_ax.lines[index].get_ydata(), trace["lr"])
    assert [line.get_linestyle() for line in loss_ax.lines] == ["-", "--"]
    assert [t.get_text() for t in loss_ax.get_legend().get_texts()] == ["Adam", "Momentum"]


def test_the_lecture_script_makes_its_figures_from_nothing(tmp_path):
    import pathlib

    script = pathlib.Path(__file__).resolve().parent.parent / "scripts" / "lecture_quadratic.py"
    result = subprocess.run([sys.executable, str(script), "--out", str(tmp_path / "lecture"), "--no-gif"],
                            capture_output=True, text=True, check=True, env={**__import__("os").environ,
                                                                             "MPLBACKEND": "Agg"})
    names = sorted(pathlib.Path(line).name for line in result.stdout.split())
    assert names == sorted(["quadratic_paths.png", "quadratic_internals.png", "quadratic_loss.png",
                            "rosenbrock_paths.png", "rosenbrock_internals.png", "rosenbrock_loss.png"])
    assert sorted(p.name for p in (tmp_path / "lecture").iterdir()) == names  # and nothing else
