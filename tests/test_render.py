"""tracer.render: every figure kind from the small committed traces in tests/data.

The fixture traces are written by tests/data/make_render_fixtures.py (numpy
re-implementations of the optimizers on the orbit samples, a summary trace and
a per-epoch-schedule trace of the linear problem, an empty one, a user's
own model: problem null, three coordinates fc.weight[0], fc.weight[1], fc.bias[0],
and a summary trace of four tensors, one of them a single element).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import imageio.v3 as iio
from matplotlib import colormaps
from matplotlib.colors import to_hex

from tracer.cli import main as tracer_main
from tracer.errors import RenderError, TracerError
from tracer.render import FIGURE_KINDS, render_figure
from tracer.render.animate import frame_indices
from tracer.render.common import RenderOptions
from tracer.render.contour import PLAIN_FACE, plane_of
from tracer.render.plots import one_element, rolling_mean, smoothing_window
from tracer.trace import load_trace

DATA = Path(__file__).resolve().parent / "data"
ORBIT = [DATA / f"orbit_{name}.trace.csv" for name in ("sgd", "momentum", "rmsprop", "adam")]
DIVERGED = DATA / "orbit_diverged.trace.csv"
SUMMARY = DATA / "linear_summary.trace.csv"
STEPLR = DATA / "linear_steplr.trace.csv"
EMPTY = DATA / "orbit_empty.trace.csv"
OWN = DATA / "own_model.trace.csv"
TENSORS = DATA / "tensors_summary.trace.csv"  # 4 tensors (layer2.bias has one element), 200 updates
OWN_PLANE = {"coordinates": ("fc.weight[0]", "fc.bias[0]")}
SIZE = (480, 360)
# Colours no contour or decoration uses, so finding them means the trace was drawn.
COLORS = ("#ff00ff", "#ff0000", "#ff8000", "#0000ff")
# Colours of the contour's colour map: a contour fills the axes with them.
VIRIDIS = tuple(to_hex(colormaps["viridis"](k / 8)) for k in range(9))
# The dashboard's colours name tensors (C0, C1, ... in order), not traces.
TENSOR_COLORS = tuple(to_hex(f"C{i}") for i in range(6))
ORBIT_ZOOM = {"xlim": (0.0, 2.0), "ylim": (0.8, 2.0)}

# kind, traces, options: every kind, as the catalogue would call it.
STILLS = [
    ("step-size", ORBIT, {}),
    ("first-steps", ORBIT, {"first_steps": 4, "xlim": (0.0, 0.5), "ylim": (1.5, 2.0)}),
    ("paths", ORBIT, {}),
    ("fit", ORBIT[1:2], {}),
    ("gradients", ORBIT[1:2], {"updates": (5, 60)}),
    ("lr", [ORBIT[3], STEPLR], {}),
    ("internals", ORBIT[3:], {}),
    ("lr-path", ORBIT, {}),
    ("dashboard", [SUMMARY], {}),
]


def pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)


def count_color(image: np.ndarray, color: str, tolerance: int = 40) -> int:
    rgb = np.array([int(color[i:i + 2], 16) for i in (1, 3, 5)])
    return int((np.abs(image - rgb).max(axis=-1) <= tolerance).sum())


def test_every_kind_is_covered():
    assert sorted(kind for kind, _, _ in STILLS) == sorted(FIGURE_KINDS)


@pytest.mark.parametrize("kind, traces, options", STILLS, ids=[s[0] for s in STILLS])
def test_still_png(tmp_path, kind, traces, options):
    out = render_figure(kind, traces, tmp_path / f"{kind}.png", size=SIZE, colors=COLORS[: len(traces)],
                        **options)
    image = pixels(out)
    assert image.shape == (SIZE[1], SIZE[0], 3)
    assert image.std() > 10, "blank image"
    drawn = TENSOR_COLORS[:2] if kind == "dashboard" else COLORS[: len(traces)]  # SUMMARY: weight, bias
    for color in drawn:
        assert count_color(image, color) >= 3, f"colour {color} of a trace is not in the image"
    assert [p.name for p in tmp_path.iterdir()] == [f"{kind}.png"]  # no temporary left behind


@pytest.mark.parametrize("fmt", ["gif", "mp4"])
@pytest.mark.parametrize("kind, traces", [("paths", ORBIT), ("internals", ORBIT[3:])], ids=["paths", "internals"])
def test_animation_frames_and_determinism(tmp_path, kind, traces, fmt):
    budget = 12
    first = render_figure(kind, traces, tmp_path / f"a.{fmt}", frames=budget, size=(320, 240),
                          colors=COLORS[: len(traces)])
    frames = iio.imread(first, index=None, **({"mode": "RGB"} if fmt == "gif" else {}))
    assert frames.shape == (budget, 240, 320, 3)
    assert np.abs(frames[0].astype(int) - frames[-1].astype(int)).sum() > 0, "first and last frame are equal"
    if fmt == "gif":
        for color in COLORS[: len(traces)]:
            assert count_color(frames[-1].astype(np.int16), color, tolerance=8) >= 3
    second = render_figure(kind, traces, tmp_path / f"b.{fmt}", frames=budget, size=(320, 240),
                           colors=COLORS[: len(traces)])
    assert first.read_bytes() == second.read_bytes()


@pytest.mark.parametrize("fmt", ["png", "svg", "pdf"])
def test_stills_are_deterministic(tmp_path, fmt):
    outs = [render_figure("paths", ORBIT[:2], tmp_path / f"{i}.{fmt}", size=(320, 240)) for i in range(2)]
    assert outs[0].read_bytes() == outs[1].read_bytes()


def test_frame_budget_keeps_first_and_last():
    indices = frame_indices(1281, 300)
    assert len(indices) == 300 and indices[0] == 0 and indices[-1] == 1280
    assert np.all(np.diff(indices) > 0)
    assert list(frame_indices(5, 300)) == [0, 1, 2, 3, 4]


def test_diverged_trace_renders_to_its_last_finite_update(tmp_path):
    out = render_figure("paths", [DIVERGED, ORBIT[0]], tmp_path / "d.png", size=SIZE, colors=COLORS[:2],
                        xlim=(0, 4000), ylim=(-10, 1e6))
    assert count_color(pixels(out), COLORS[0]) >= 3
    render_figure("step-size", [DIVERGED], tmp_path / "s.png", size=SIZE)


def test_render_does_not_import_torch(tmp_path):
    code = (
        "import sys\n"
        "from tracer.render import render_figure\n"
        f"render_figure('paths', [{str(ORBIT[0])!r}], {str(tmp_path / 'p.png')!r}, size=(200, 160))\n"
        f"render_figure('fit', [{str(ORBIT[0])!r}], {str(tmp_path / 'f.png')!r}, size=(200, 160))\n"
        "assert 'torch' not in sys.modules, 'tracer.render imported torch'\n"
    )
    env = dict(os.environ, MPLBACKEND="Agg")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr


# kind, traces, out name, options, message pattern: each must fail and write nothing.
ERRORS = [
    ("paths", [SUMMARY], "p.png", {}, r"draw two fully traced coordinates .* has 0 \(granularity 'summary'\)"),
    ("first-steps", [OWN], "f.png", {"coordinates": ("fc.weight[0]", "fc.weight[7]")},
     r"coordinate 'fc\.weight\[7\]' is not traced in trace .*; traced: fc\.weight\[0\], fc\.weight\[1\], "
     r"fc\.bias\[0\] \(3 coordinates\)"),
    ("paths", [ORBIT[0]], "p.gif", {"coordinates": ("Wa", "Wc")}, r"coordinate 'Wc' is not traced .*traced: Wa, Wb"),
    ("paths", [ORBIT[0]], "p.png", {"coordinates": ("Wa", "Wa")}, r"coordinates must be two different"),
    ("paths", [OWN, ORBIT[0]], "p.png", {}, r"draw different coordinates by default"),
    ("paths", [ORBIT[0]], "p.png", {"updates": (500, 600)}, r"no update in 500..600"),
    ("dashboard", [ORBIT[0]], "d.png", {}, r"needs per-tensor summary columns"),
    ("internals", [SUMMARY], "i.gif", {}, r"draw two fully traced coordinates"),
    ("fit", [STEPLR], "f.png", {}, r"problem 'linear', accepted: 'orbit'"),
    ("fit", ORBIT[:2], "f.png", {}, r"at most 1 trace"),
    ("step-size", [EMPTY], "s.png", {}, r"has no update to draw"),
    ("contour", ORBIT[:1], "c.png", {}, r"unknown figure kind 'contour'; accepted: step-size"),
    ("step-size", ORBIT[:1], "missing/s.png", {}, r"directory .*missing.* does not exist"),
    ("step-size", ORBIT[:1], "s.gif", {}, r"cannot be written as 's.gif'"),
    ("step-size", ORBIT[:1], "s.png", {"zoom": 2}, r"unknown render option\(s\) zoom"),
    ("paths", ORBIT[:1], "p.png", {"xlim": (2, 1)}, r"xlim must be increasing"),
    ("dashboard", [SUMMARY], "d.png", {"smooth": 0}, r"smooth must be a whole number of updates >= 1 .*got 0$"),
    ("dashboard", [SUMMARY], "d.png", {"smooth": 2.5}, r"smooth must be a whole number .*got 2\.5$"),
]


@pytest.mark.parametrize("kind, traces, name, options, message", ERRORS,
                         ids=[f"{e[0]}-{e[4][:24]}" for e in ERRORS])
def test_errors_write_nothing(tmp_path, kind, traces, name, options, message):
    with pytest.raises(RenderError, match=message) as raised:
        render_figure(kind, traces, tmp_path / name, **options)
    assert "\n" not in str(raised.value)
    assert list(tmp_path.iterdir()) == []


def test_missing_columns_are_named(tmp_path):
    from tracer.trace import load_trace

    trace = load_trace(ORBIT[0])
    trace.columns.remove("step_size")  # as a trace written without the column
    with pytest.raises(RenderError, match=r"needs column\(s\) step_size that trace .* lacks"):
        render_figure("step-size", [_Without(trace, "step_size")], tmp_path / "s.png")
    assert list(tmp_path.iterdir()) == []


class _Without:
    """A trace that lacks one column (the trace API: meta, columns, [], in, len)."""

    def __init__(self, trace, column):
        self._trace, self._column = trace, column
        self.meta, self.columns, self.final, self.status = trace.meta, trace.columns, trace.final, trace.status
        self.diverged_at, self.path = trace.diverged_at, trace.path

    def __contains__(self, column):
        return column != self._column and column in self._trace

    def __getitem__(self, column):
        if column == self._column:
            raise TracerError(f"no column {column!r}")
        return self._trace[column]

    def __len__(self):
        return len(self._trace)


def test_plane_defaults_and_choice():
    orbit, own = load_trace(ORBIT[0]), load_trace(OWN)
    plane = plane_of(orbit)
    assert (plane.x_name, plane.y_name, plane.surface is not None) == ("Wa", "Wb", True)
    swapped = plane_of(orbit, ("Wb", "Wa"))  # not the surface's (x, y): no contour
    assert (swapped.x_name, swapped.surface) == ("Wb", None)
    plane = plane_of(own)
    assert (plane.x_name, plane.y_name, plane.surface) == ("fc.weight[0]", "fc.weight[1]", None)
    assert plane.axis_label("fc.bias[0]") == "fc.bias[0]  (coordinate 3 of 3)"
    assert plane_of(orbit).axis_label("Wa") == "Wa"


def test_unknown_coordinate_lists_the_first_few():
    class Many:
        meta = {"coordinates": [f"w[{i}]" for i in range(40)], "problem": None, "label": "many"}
        columns: list = []

    with pytest.raises(RenderError, match=r"'v' is not traced .*traced: w\[0\], .*w\[5\], \.\.\. \(40 coordinates\)$"):
        plane_of(Many(), ("w[0]", "v"))


@pytest.mark.parametrize("kind, name", [("paths", "p.png"), ("paths", "p.gif"), ("first-steps", "f.png"),
                                        ("internals", "i.png")])
def test_own_model_on_a_plain_plane(tmp_path, kind, name):
    """A trace with no problem: the chosen coordinates on a plain background, deterministic."""
    options = dict(OWN_PLANE, size=(320, 240), colors=COLORS[:1], frames=8)
    first = render_figure(kind, [OWN], tmp_path / name, **options)
    image = pixels(first) if name.endswith("png") else iio.imread(first, index=None, mode="RGB")[-1].astype(np.int16)
    assert count_color(image, COLORS[0], tolerance=8) >= 3, "the path is not drawn"
    assert count_color(image, PLAIN_FACE, tolerance=2) > image.shape[0] * image.shape[1] // 10, "no plain background"
    contour = sum(count_color(image, color, tolerance=6) for color in VIRIDIS)
    assert contour < image.shape[0] * image.shape[1] // 100, "a contour was drawn"
    second = render_figure(kind, [OWN], tmp_path / f"again-{name}", **options)
    assert first.read_bytes() == second.read_bytes()


def test_cli_render(tmp_path, capsys):
    out = tmp_path / "paths.gif"
    status = tracer_main(["render", "paths", *map(str, ORBIT[:2]), "-o", str(out), "--frames", "6",
                          "--size", "240x180", "--fps", "10", "--xlim", "0,2", "--ylim", "0.8,2",
                          "--title", "two paths", "--labels", "SGD,Momentum"])
    assert status == 0 and out.exists()
    assert iio.imread(out, index=None, mode="RGB").shape[0] == 6
    own = tmp_path / "own.png"
    assert tracer_main(["render", "first-steps", str(OWN), "-o", str(own), "--coordinates", "fc.bias[0],fc.weight[1]",
                        "--first-steps", "3"]) == 0 and own.exists()
    status = tracer_main(["render", "fit", str(SUMMARY), "-o", str(tmp_path / "fit.png")])
    assert status == 2
    assert capsys.readouterr().err.startswith("tracer: error: figure 'fit' draws an orbit fit")


@pytest.mark.parametrize("traces", [[SUMMARY], [TENSORS], [TENSORS, SUMMARY]], ids=["linear", "tensors", "two"])
def test_dashboard_colour_per_tensor_and_determinism(tmp_path, traces):
    """Each tensor has its colour (the same in every trace's column); re-rendering gives the same bytes."""
    names = list(dict.fromkeys(n for t in traces for n in load_trace(t).meta["summarized"]))
    first = render_figure("dashboard", traces, tmp_path / "a.png")
    image = pixels(first)
    for color, name in zip(TENSOR_COLORS, names):
        assert count_color(image, color, tolerance=12) >= 50, f"tensor {name} ({color}) is not drawn"
    second = render_figure("dashboard", traces, tmp_path / "b.png")
    assert first.read_bytes() == second.read_bytes()


def test_dashboard_leaves_one_element_tensors_out_of_the_cosines(tmp_path):
    trace = load_trace(TENSORS)
    assert [one_element(trace, n) for n in trace.meta["summarized"]] == [False, False, False, True]
    image = pixels(render_figure("dashboard", [TENSORS], tmp_path / "d.png", smooth=1))
    height, width = image.shape[:2]
    # One trace: a 2 x 3 grid over the tensors' legend; the cosines are the bottom row's right two panels.
    cosines = image[height // 2: int(height * 0.88), width // 3:]
    norms = image[: height // 2]
    layer2_bias, layer2_weight = TENSOR_COLORS[3], TENSOR_COLORS[2]
    assert count_color(norms, layer2_bias, tolerance=12) >= 50
    assert count_color(cosines, layer2_weight, tolerance=12) >= 50
    assert count_color(cosines, layer2_bias, tolerance=12) == 0


def test_dashboard_smoothing_window():
    trace = load_trace(TENSORS)
    assert smoothing_window([trace], RenderOptions()) == 4  # 200 updates / 50
    assert smoothing_window([trace], RenderOptions(smooth=1)) == 1
    assert smoothing_window([trace], RenderOptions(updates=(1, 20))) == 1


def test_rolling_mean_against_a_loop():
    """The cumsum version against the plain definition: mean of the finite values in a centred
    window cut at the ends, NaN when the window has none (the first update's empty cos_d_prev)."""
    rng = np.random.default_rng(0)
    values = rng.standard_normal(57)
    values[[0, 1, 2, 9, 30]] = np.nan
    values[12] = np.inf
    for window in (1, 2, 3, 4, 9, 100):
        expected = []
        for i in range(len(values)):
            lo = max(0, i - window // 2)
            part = values[lo: max(0, i - window // 2 + window)]
            part = part[np.isfinite(part)]
            expected.append(part.mean() if part.size else np.nan)
        got = rolling_mean(values, window)
        if window == 1:
            np.testing.assert_array_equal(got, values)
            continue
        # Differences of a cumulative sum round differently from a direct sum: a few ulps.
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
    assert np.isnan(rolling_mean(np.array([np.nan, np.nan, 1.0]), 2)[0])


def test_cli_dashboard_smooth(tmp_path, capsys):
    out = tmp_path / "d.png"
    assert tracer_main(["render", "dashboard", str(TENSORS), "-o", str(out), "--smooth", "5"]) == 0 and out.exists()
    assert tracer_main(["render", "dashboard", str(TENSORS), "-o", str(tmp_path / "e.png"), "--smooth", "0"]) == 2
    assert capsys.readouterr().err.startswith("tracer: error: smooth must be a whole number of updates >= 1")
