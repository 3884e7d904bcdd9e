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
ADAM_STATE = DATA / "adam_state.trace.csv"  # the recorder's summary trace of Adam, with its state by key
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
    ("loss", [ORBIT[3], STEPLR], {}),
    ("internals", ORBIT[3:], {}),
    ("lr-path", ORBIT, {}),
    ("dashboard", [SUMMARY], {}),
    ("state", [ADAM_STATE], {}),
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
    # SUMMARY, ADAM_STATE: weight, bias, coloured as tensors (the dashboard's and the state figure's colours name them).
    drawn = TENSOR_COLORS[:2] if kind in ("dashboard", "state") else COLORS[: len(traces)]
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
    ("paths", [SUMMARY], "p.png", {}, r"draw two fully traced coordinates .* has 0 \(granularity 'summary'\); "
     r"record with Recorder\(granularity='full'\), or name at least two coordinates in Recorder\(full=\[...\]\)$"),
    ("first-steps", [OWN], "f.png", {"coordinates": ("fc.weight[0]", "fc.weight[7]")},
     r"coordinate 'fc\.weight\[7\]' is not traced in trace .*; traced: fc\.weight\[0\], fc\.weight\[1\], "
     r"fc\.bias\[0\] \(3 coordinates\)"),
    ("paths", [ORBIT[0]], "p.gif", {"coordinates": ("Wa", "Wc")}, r"coordinate 'Wc' is not traced .*traced: Wa, Wb"),
    ("paths", [ORBIT[0]], "p.png", {"coordinates": ("Wa", "Wa")}, r"coordinates must be different coordinate names"),
    ("paths", [OWN], "p.png", {"coordinates": ("fc.weight[0]", "fc.weight[1]", "fc.bias[0]")},
     r"path figures draw two coordinates \(x, y\); got 3: fc\.weight\[0\], fc\.weight\[1\], fc\.bias\[0\]$"),
    ("gradients", [OWN], "g.png", {"coordinates": ("fc.weight[0]", "fc.weight[9]")},
     r"coordinate 'fc\.weight\[9\]' is not traced in trace .*\(3 coordinates\)$"),
    ("step-size", [ORBIT[0]], "s.png", {"yscale": "symlog"}, r"yscale must be one of linear, log, got 'symlog'$"),
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


# ------------------------------------------- traces as real users' runs make them
# Built here from numpy (deterministic), not committed: a trace without notes, a
# 6-layer transformer's 40 summarised tensors, 300 fully traced coordinates.

from tracer.render.common import CORNERS, new_figure, place_in_clear_corners, trace_path  # noqa: E402
from tracer.render.paths import clock_text as _clock_text  # noqa: E402
from tracer.render.plots import GRADIENTS_SHOWN, log_scale_suits  # noqa: E402
from tracer.trace import write_trace  # noqa: E402

TRANSFORMER_TENSORS = [f"enc.layers.{layer}.{part}" for layer in range(6) for part in (
    "self_attn.in_proj_weight", "self_attn.out_proj.weight", "linear1.weight", "linear2.weight",
    "norm1.weight", "norm2.weight")] + ["embedding.weight", "pos_embedding", "head.weight", "head.bias"]


def _without_notes(tmp_path) -> Path:
    """OWN as a user's Recorder writes it without rec.note(...): epoch, batch and loss empty."""
    trace = load_trace(OWN)
    rows = [{c: (None if c in ("epoch", "batch", "loss") else float(trace[c][i])) for c in trace.columns}
            for i in range(len(trace))]
    for row in rows:
        row["update"] = int(row["update"])
    return write_trace(tmp_path / "no_notes.trace.csv", trace.meta, trace.columns, rows, final=trace.final)


def _transformer(tmp_path, name="transformer", seed=0) -> Path:
    rng = np.random.default_rng(seed)
    quantities = ("theta_norm", "g_norm", "d_norm", "displacement", "cos_d_prev", "cos_g_d")
    columns = ["update", "epoch", "batch", "lr", "loss"] + [f"{p}.{q}" for p in TRANSFORMER_TENSORS for q in quantities]
    rows = []
    for t in range(1, 61):
        row = {"update": t, "epoch": (t - 1) // 10, "batch": (t - 1) % 10, "lr": 3e-4, "loss": 5.0 / t}
        for i, p in enumerate(TRANSFORMER_TENSORS):
            g = float((i + 1) * np.exp(-t / 30) * rng.lognormal(0, 0.4))
            row.update({f"{p}.theta_norm": 10.0 + i, f"{p}.g_norm": g, f"{p}.d_norm": 2 * g,
                        f"{p}.displacement": 6e-4 * g, f"{p}.cos_d_prev": None if t == 1 else float(rng.uniform(0, 1)),
                        f"{p}.cos_g_d": float(rng.uniform(0, 1))})
        rows.append(row)
    meta = {"label": f"{name} (40 tensors)", "problem": None, "granularity": "summary", "coordinates": [],
            "summarized": TRANSFORMER_TENSORS,
            "parameters": [{"name": p, "shape": [64, 64]} for p in TRANSFORMER_TENSORS]}
    return write_trace(tmp_path / f"{name}.trace.csv", meta, columns, rows)


def _many_coordinates(tmp_path, count=300, updates=30) -> Path:
    coordinates = [f"fc.weight[{i}]" for i in range(count)]
    columns = ["update", "epoch", "batch", "lr", "loss"] + [f"{c}.{q}" for c in coordinates for q in ("theta", "g", "d")] \
        + ["step_size"]
    rows = []
    for t in range(1, updates + 1):
        row = {"update": t, "epoch": 0, "batch": t - 1, "lr": 0.1, "loss": 1.0 / t, "step_size": 0.1 / t}
        for i, c in enumerate(coordinates):
            g = float(np.cos(t / 5 + i) / t)
            row.update({f"{c}.theta": float(np.sin(i) - t * 0.01), f"{c}.g": g, f"{c}.d": g})
        rows.append(row)
    meta = {"label": "300 coordinates", "problem": None, "granularity": "full", "coordinates": coordinates}
    return write_trace(tmp_path / "many.trace.csv", meta, columns, rows, final={c: 0.0 for c in coordinates})


def edge_is_blank(image: np.ndarray, width: int = 3) -> bool:
    """Nothing drawn in the outer `width` pixels: no legend or label runs off the figure."""
    edges = np.concatenate([image[:, :width].reshape(-1, 3), image[:, -width:].reshape(-1, 3),
                            image[:width].reshape(-1, 3), image[-width:].reshape(-1, 3)])
    return bool((edges >= 250).all())


# (group, kind, traces (a function of tmp_path), options): every kind on every kind of trace it can draw.
USER_TRACES = [
    *(("no notes", kind, lambda tmp: [_without_notes(tmp)], dict(OWN_PLANE) if kind != "gradients" else {})
      for kind in ("step-size", "first-steps", "paths", "gradients", "lr", "internals", "lr-path")),
    ("many tensors", "dashboard", lambda tmp: [_transformer(tmp)], {}),
    ("many tensors, two traces", "dashboard", lambda tmp: [_transformer(tmp), _transformer(tmp, "other", 1)], {}),
    ("constant lr", "lr-path", lambda tmp: ORBIT[1:2], {}),
    ("constant lr, two traces", "lr", lambda tmp: ORBIT[:2], {}),
    ("many coordinates", "gradients", lambda tmp: [_many_coordinates(tmp)], {}),
    ("many coordinates", "step-size", lambda tmp: [_many_coordinates(tmp)], {}),
    ("many coordinates", "paths", lambda tmp: [_many_coordinates(tmp)], {"coordinates": ("fc.weight[7]", "fc.weight[250]")}),
    ("many coordinates", "internals", lambda tmp: [_many_coordinates(tmp)], {}),
    ("two traces", "step-size", lambda tmp: ORBIT[:2], {}),
    ("two traces", "first-steps", lambda tmp: [OWN, _without_notes(tmp)], OWN_PLANE),
]


@pytest.mark.parametrize("group, kind, make, options", USER_TRACES, ids=[f"{g}-{k}" for g, k, _, _ in USER_TRACES])
def test_every_figure_on_traces_users_make(tmp_path, group, kind, make, options):
    traces = make(tmp_path)
    first = render_figure(kind, traces, tmp_path / "a.png", **options)
    image = pixels(first)
    assert image.std() > 10, "blank image"
    assert edge_is_blank(image), "something is drawn to the figure's edge: clipped"
    assert render_figure(kind, traces, tmp_path / "b.png", **options).read_bytes() == first.read_bytes()


def test_animations_of_a_trace_without_notes(tmp_path):
    trace = _without_notes(tmp_path)
    for kind in ("paths", "internals"):
        out = render_figure(kind, [trace], tmp_path / f"{kind}.gif", frames=5, size=(320, 240), **OWN_PLANE)
        assert iio.imread(out, index=None, mode="RGB").shape[0] == 5
    no_notes = load_trace(trace)
    assert _clock_text(no_notes, 7) == "update 7" and _clock_text(no_notes, 0) == "update 0"
    assert _clock_text(load_trace(ORBIT[0]), 10) == "epoch 1  batch 1  update 10"


def test_lr_against_epoch_needs_epochs(tmp_path):
    with pytest.raises(RenderError, match=r"has no epoch numbers \(recorded without note\(epoch=..., batch=...\)\); "
                                          r"draw it against the update$"):
        render_figure("lr", [_without_notes(tmp_path)], tmp_path / "l.png", against="epoch")


def test_dashboard_legend_wraps_into_columns_and_the_figure_grows(tmp_path):
    # Drawn tensor by tensor (past DASHBOARD_TENSORS_DRAWN the dashboard draws groups unless told so).
    one = pixels(render_figure("dashboard", [_transformer(tmp_path)], tmp_path / "a.png", groups=("tensors",)))
    few = pixels(render_figure("dashboard", [TENSORS], tmp_path / "b.png"))
    assert one.shape[1] == few.shape[1] and one.shape[0] > few.shape[0]  # the same width, taller for the legend
    assert edge_is_blank(one)


def test_constant_lr_is_one_colour_and_no_colour_bar(tmp_path):
    plasma = [to_hex(colormaps["plasma"](k)) for k in (0.0, 0.15, 0.85, 1.0)]  # the scale's ends, not its middle
    constant = pixels(render_figure("lr-path", ORBIT[1:2], tmp_path / "c.png"))
    assert all(count_color(constant, color, tolerance=10) == 0 for color in plasma)
    assert count_color(constant, "#cc4778", tolerance=10) > 50
    varying = pixels(render_figure("lr-path", ORBIT[3:4], tmp_path / "v.png"))  # multistep: a colour bar
    assert sum(count_color(varying, color, tolerance=10) for color in plasma) > 200


def test_gradients_default_to_a_few_coordinates_and_honour_the_choice(tmp_path):
    many = _many_coordinates(tmp_path)
    default = pixels(render_figure("gradients", [many], tmp_path / "d.png"))
    for index in range(GRADIENTS_SHOWN):
        assert count_color(default, to_hex(f"C{index}"), tolerance=10) >= 20, f"C{index}"
    assert count_color(default, to_hex(f"C{GRADIENTS_SHOWN}"), tolerance=10) == 0  # the 9th is left out
    chosen = tmp_path / "c.png"
    assert tracer_main(["render", "gradients", str(many), "-o", str(chosen),
                        "--coordinates", "fc.weight[5],fc.weight[200]"]) == 0
    chosen_image = pixels(chosen)
    assert count_color(chosen_image, to_hex("C1"), tolerance=10) >= 20
    assert count_color(chosen_image, to_hex("C2"), tolerance=10) == 0  # two lines only
    assert chosen.read_bytes() != (tmp_path / "d.png").read_bytes()


def test_step_size_log_scale_when_values_span_decades(tmp_path):
    assert log_scale_suits([np.array([1.0, 0.5, 0.001])]) and not log_scale_suits([np.array([1.0, 0.5, 0.02])])
    assert not log_scale_suits([np.array([1.0, -1.0, 0.0001])])  # signed values: never log
    many = _many_coordinates(tmp_path)  # step sizes 0.1 / t: not two decades over 30 updates
    auto = render_figure("step-size", [ORBIT[0]], tmp_path / "auto.png")
    linear = render_figure("step-size", [ORBIT[0]], tmp_path / "linear.png", yscale="linear")
    log = render_figure("step-size", [ORBIT[0]], tmp_path / "log.png", yscale="log")
    spans = log_scale_suits([load_trace(ORBIT[0])["step_size"]])
    assert auto.read_bytes() == (log if spans else linear).read_bytes()
    assert render_figure("step-size", [many], tmp_path / "m.png").read_bytes() == \
        render_figure("step-size", [many], tmp_path / "ml.png", yscale="linear").read_bytes()


def test_divergence_has_one_number_everywhere():
    trace = load_trace(DIVERGED)
    path = trace_path(trace, "Wa", "Wb")
    assert trace.status == "diverged" and path.diverged_at == trace.diverged_at
    # The path stops at its last finite point, the one before the update that diverged.
    assert path.updates[-1] < trace.diverged_at


@pytest.mark.parametrize("marked, expected", [
    ([(0.05, 0.95)], ["upper right", "lower left"]),           # the start top left
    ([(0.95, 0.95), (0.05, 0.95)], ["lower left", "lower right"]),  # marks in both top corners
    ([(0.95, 0.95), (0.05, 0.05)], ["upper left", "lower right"]),
])
def test_boxes_go_to_corners_that_hide_no_marked_point(marked, expected):
    figure = new_figure(RenderOptions(size=(400, 300)), (640, 500))
    ax = figure.add_subplot()
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.plot([0.2], [0.2], label="a label of some length")
    legend = ax.legend()
    clock = ax.text(0.02, 0.97, "epoch 1  batch 2  update 10", transform=ax.transAxes)
    assert place_in_clear_corners(ax, [legend, clock], [np.array(marked)]) == expected
    assert set(expected) <= set(CORNERS)


@pytest.mark.parametrize("kind", ["step-size", "lr", "loss", "gradients", "dashboard", "state"])
def test_a_short_run_is_ticked_at_whole_updates(tmp_path, monkeypatch, kind):
    """Over 20 updates matplotlib's own ticks fall on 2.5, 7.5, ...: an update axis is ticked at whole numbers."""
    import torch

    from tracer.testing import record_small_run

    path = tmp_path / "short.trace.csv"
    granularity = "summary" if kind == "dashboard" else "full"
    record_small_run(lambda p: torch.optim.Adam(p, lr=0.05), path, steps=20, shapes=((3,), (2,)),
                     recorder_options={"granularity": granularity})
    figure = _drawn_figure(monkeypatch, kind, [path], tmp_path / f"{kind}.png")
    update_axes = [ax for ax in figure.axes if ax.get_xlabel() in ("update", "epoch")]
    assert update_axes, [ax.get_xlabel() for ax in figure.axes]
    for ax in update_axes:
        low, high = ax.get_xlim()
        ticks = [t for t in ax.get_xticks() if low <= t <= high]
        assert len(ticks) >= 2 and all(float(t).is_integer() for t in ticks), (kind, ticks)


def _drawn_figure(monkeypatch, kind, traces, out):
    """The matplotlib Figure render_figure draws (caught as it is saved), for tests of what is on it."""
    import tracer.render.common as common

    figures = []
    real_save = common.save_still
    for module in list(sys.modules.values()):
        if getattr(module, "__name__", "").startswith("tracer.render") and getattr(module, "save_still", None) is real_save:
            monkeypatch.setattr(module, "save_still", lambda figure, *args: (figures.append(figure), real_save(figure, *args)))
    render_figure(kind, traces, out)
    (figure,) = figures
    return figure


@pytest.mark.parametrize("kind", ["loss", "dashboard"])
def test_a_constant_lr_has_one_tick_and_says_constant(tmp_path, monkeypatch, kind):
    """A constant lr drawn with ticks 5% either side would read as a change; it gets one tick, at its value.
    A scheduled lr keeps matplotlib's ticks."""
    import torch

    from tracer.testing import record_small_run

    constant, scheduled = tmp_path / "constant.trace.csv", tmp_path / "scheduled.trace.csv"
    record_small_run(lambda p: torch.optim.Adam(p, lr=0.05), constant, steps=20, shapes=((3,), (2,)),
                     recorder_options={"granularity": "summary"})
    halving = lambda p: _HalvingAdam(p, lr=0.05)
    record_small_run(halving, scheduled, steps=20, shapes=((3,), (2,)), recorder_options={"granularity": "summary"})
    figure = _drawn_figure(monkeypatch, kind, [constant], tmp_path / "c.png")
    lr_ax = figure.axes[1]
    assert list(lr_ax.get_yticks()) == [0.05]
    assert "constant" in (lr_ax.get_ylabel() + lr_ax.get_title())
    monkeypatch.undo()
    figure = _drawn_figure(monkeypatch, kind, [scheduled], tmp_path / "s.png")
    lr_ax = figure.axes[1]
    assert len(lr_ax.get_yticks()) > 1 and "constant" not in (lr_ax.get_ylabel() + lr_ax.get_title())


def _HalvingAdam(params, lr):
    """Adam whose lr halves at every step (a schedule, for the lr panel)."""
    import torch

    class Halving(torch.optim.Adam):
        def step(self, closure=None):
            loss = super().step(closure)
            for group in self.param_groups:
                group["lr"] *= 0.5
            return loss

    return Halving(params, lr=lr)
