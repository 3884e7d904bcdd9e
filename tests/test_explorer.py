"""The explorer page without a browser: its data is the traces' exact values, its rules and errors.

The page in a real browser is tests/test_explorer_browser.py.
"""

from __future__ import annotations

import base64
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest

import tracer
from tracer.cli import main
from tracer.explorer import Explorer, ExploreError, explore, trace_summary_html
from tracer.explorer.data import cos_previous, encode_column, page_data, sample_rows
from tracer.trace import load_trace, write_trace

LOGS = pathlib.Path(__file__).resolve().parent.parent / "logs"
E1 = [LOGS / f"e1-{name}.trace.csv" for name in ("sgd", "momentum", "rmsprop", "adam")]
MLP = [LOGS / "mlp-adam.trace.csv", LOGS / "mlp-momentum.trace.csv"]
MAIL_BUDGET = 2_000_000  # bytes: the four optimizers' 1,280-update orbit page must be small enough to mail


def decoded(column: dict) -> np.ndarray:
    kind = {"i4": "<i4", "f4": "<f4", "f8": "<f8"}[column["type"]]
    return np.frombuffer(base64.b64decode(column["data"]), dtype=kind).astype(np.float64)


@pytest.mark.parametrize(("values", "kind"), [
    ([1, 2, 3, 2**31 - 1, -5], "i4"),
    ([0.5, float(np.float32(0.1)), np.nan, np.inf, -np.inf], "f4"),
    ([0.1, 0.5], "f8"),  # 0.1 is not a float32
    ([1.5, 2**31], "f4"),  # a whole number too large for int32
    ([1e300, 1.0], "f8"),  # beyond float32's range
], ids=["ints", "float32 with non-finite", "float64", "large whole number", "beyond float32"])
def test_columns_travel_in_the_narrowest_exact_type(values, kind):
    column = encode_column(np.array(values, dtype=np.float64))
    assert column["type"] == kind
    back = decoded(column)
    np.testing.assert_array_equal(back, np.array(values, dtype=np.float64))  # NaN where NaN, else bit for bit


def test_the_page_holds_every_value_of_the_reference_traces_bit_for_bit():
    traces = [load_trace(p) for p in E1]
    data = page_data(traces)
    assert [run["label"] for run in data["runs"]] == ["SGD", "Momentum", "RMSprop", "Adam"]
    for trace, run in zip(traces, data["runs"]):
        assert run["every"] == 1 and run["rows"] == len(trace) == 1280
        for name in trace.columns:
            values = trace[name]
            if np.isnan(values).all():  # v and s of plain SGD: empty throughout, left out
                assert name not in run["columns"]
                continue
            assert decoded(run["columns"][name]).view(np.int64).tolist() == values.view(np.int64).tolist(), name
    kinds = {name: column["type"] for name, column in data["runs"][3]["columns"].items()}
    assert kinds["update"] == "i4" and kinds["Wa.g"] == "f4" and kinds["Wa.u"] == "f8"


def test_cos_d_prev_is_the_cosine_of_consecutive_directions():
    trace = load_trace(E1[1])
    d = np.column_stack([trace["Wa.d"], trace["Wb.d"]])
    cosine = cos_previous(trace, ["Wa", "Wb"])
    assert np.isnan(cosine[0])  # update 1 has no previous update
    k = 500
    expected = d[k] @ d[k - 1] / (np.linalg.norm(d[k]) * np.linalg.norm(d[k - 1]))
    assert cosine[k] == pytest.approx(expected, rel=1e-15)  # einsum and @ may sum in another order
    sampled = trace.take(np.arange(0, len(trace), 2))  # updates 1, 3, 5, ...: no previous update in the trace
    assert np.isnan(cos_previous(sampled, ["Wa", "Wb"])).all()


def test_the_downsampling_rule():
    assert sample_rows(1280).every == 1 and len(sample_rows(1280).rows) == 1280
    rule = sample_rows(5001, 2000)
    assert rule.every == 3 and rule.rows[:3].tolist() == [0, 3, 6] and rule.rows[-1] == 5000
    rule = sample_rows(5000, 2000)
    assert rule.rows[-2:].tolist() == [4998, 4999]  # the last row kept whatever k
    assert rule.rule == "1 row in 3 of 5000 (rows 1, 4, 7, ... and the last)"
    with pytest.raises(ExploreError, match="at least 2"):
        sample_rows(10, 1)


def test_a_downsampled_run_keeps_exact_values_at_the_rows_it_keeps():
    trace = load_trace(E1[3])
    run = page_data([trace], max_rows=100)["runs"][0]
    every = run["every"]
    assert every == 13 and run["rows"] == len(range(0, 1280, 13)) + 1
    rows = np.append(np.arange(0, 1280, every), 1279)
    np.testing.assert_array_equal(decoded(run["columns"]["Wa.theta"]), trace["Wa.theta"][rows])
    # cos(d, previous d) was computed before rows were dropped: each kept row against its own previous update
    np.testing.assert_array_equal(decoded(run["columns"]["cos_d_prev"])[1:],
                                  cos_previous(trace, ["Wa", "Wb"])[rows][1:])


def test_the_orbit_plane_has_the_contour_and_one_scale_per_kind_of_arrow():
    plane = page_data([load_trace(p) for p in E1], xlim=(0.0, 2.5), ylim=(0.0, 2.5))["plane"]
    assert (plane["x"], plane["y"]) == ("Wa", "Wb") and plane["xlim"] == [0.0, 2.5]
    contour = plane["contour"]
    png = base64.b64decode(contour["png"])
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(contour["levels"]) == len(contour["colors"]) + 1 and contour["geometric"]
    assert plane["minimum"] is not None
    assert plane["gradient_scale"] > 0 and plane["step_scale"] > 0


def test_a_user_run_without_a_surface_draws_its_first_two_coordinates_on_a_plain_plane(tmp_path):
    columns = ["update", "epoch", "batch", "lr", "loss"] + [f"w[{i}].{q}" for i in range(3)
                                                           for q in ("theta", "g", "v", "s", "d", "u")]
    rows = [{"update": k, "epoch": 0, "batch": k - 1, "lr": 0.1, "loss": 1.0 / k,
             **{f"w[{i}].{q}": float(i + k) for i in range(3) for q in ("theta", "g", "d")}} for k in range(1, 6)]
    path = write_trace(tmp_path / "own.trace.csv", {"coordinates": ["w[0]", "w[1]", "w[2]"]}, columns, rows)
    plane = page_data([load_trace(path)])["plane"]
    assert (plane["x"], plane["y"], plane["contour"]) == ("w[0]", "w[1]", None)
    assert plane["axis_labels"][0] == "w[0]  (coordinate 1 of 3)"
    run = page_data([load_trace(path)], max_coordinates=2)["runs"][0]
    assert run["coordinates"] == ["w[0]", "w[1]"] and run["coordinates_total"] == 3
    assert "w[2].theta" not in run["columns"]


def test_a_diverged_run_leaves_the_range_and_the_scales_to_the_others(tmp_path):
    columns = ["update", "epoch", "batch", "lr", "loss"] + [f"{c}.{q}" for c in ("x", "y") for q in ("theta", "g", "d")]
    rows = [{"update": k, "epoch": k - 1, "batch": 0, "lr": 0.1, "loss": 10.0 ** (4 * k),
             **{f"{c}.{q}": (-1.0) ** k * 10.0 ** (4 * k) for c in ("x", "y") for q in ("theta", "g", "d")}}
            for k in range(1, 5)]
    adam = load_trace(LOGS / "rosenbrock-adam.trace.csv")
    meta = {"problem": adam.meta["problem"], "coordinates": ["x", "y"]}
    diverged = write_trace(tmp_path / "diverged.trace.csv", meta, columns, rows, status="diverged", diverged_at=4,
                           final={"x": 1e30, "y": 1e30})
    alone = page_data([load_trace(diverged)])["plane"]
    together = page_data([load_trace(diverged), adam])["plane"]
    assert alone["xlim"][1] > 1e29  # by itself, its own range
    assert together == page_data([adam])["plane"]  # range, contour and scales: the other run's


def test_summary_traces_have_tensors_and_no_plane():
    data = page_data([load_trace(p) for p in MLP])
    assert data["plane"] is None
    run = data["runs"][0]
    assert run["tensors"] == ["hidden1.weight", "hidden1.bias", "hidden2.weight", "hidden2.bias",
                              "output.weight", "output.bias"]
    assert "hidden1.weight.cos_d_prev" in run["columns"] and "cos_d_prev" not in run["columns"]


def test_the_landscape_view_holds_the_surface_files_projected_snapshots():
    from tracer.render.landscape import load_surface

    folder = LOGS / "landscape"
    surface = load_surface(folder / "mlp.surface.npz")
    traces = [load_trace(folder / "mlp-adam.trace.csv"), load_trace(LOGS / "e1-adam.trace.csv")]
    land = page_data(traces, surface=folder / "mlp.surface.npz")["landscape"]
    assert [run["run"] for run in land["runs"]] == [0]  # the orbit trace is not one of the surface's runs
    adam = next(run for run in surface.runs if run.trace == "mlp-adam.trace.csv")
    assert land["runs"][0]["done"] == adam.done.tolist() and land["runs"][0]["xy"] == adam.xy.tolist()
    assert land["xlim"] == [float(surface.x[0]), float(surface.x[-1])]
    assert land["axis_labels"][0].startswith("direction 1: ") and land["gradient_scale"] > 0
    with pytest.raises(ExploreError, match="no trace given is one of the runs of surface"):
        page_data([load_trace(LOGS / "e1-adam.trace.csv")], surface=folder / "mlp.surface.npz")
    with pytest.raises(tracer.errors.TracerError, match="surface"):
        page_data(traces, surface=LOGS / "e1-adam.trace.csv")


def test_the_page_is_self_contained_and_small_enough_to_mail():
    page = explore(E1, colors=["gold", "red", "blue", "green"]).html
    assert len(page.encode("utf-8")) < MAIL_BUDGET
    assert "Content-Security-Policy" in page and "default-src 'none'" in page
    assert not re.search(r"https?://", page)  # no address to fetch anything from
    assert not re.search(r"<(script|link|img|iframe)[^>]+(src|href)=", page)  # every script and style inline


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"labels": ["one"]}, "1 labels given for 2 traces"),
    ({"colors": ["red", "nonsense"]}, "bad colour"),
    ({"coordinates": ["Wa", "nope"]}, "coordinate 'nope' is not traced"),
    ({"max_rows": 1}, "max_rows must be at least 2"),
], ids=["labels", "colour", "coordinate", "max_rows"])
def test_bad_options_are_one_clear_error(kwargs, message):
    with pytest.raises(tracer.errors.TracerError, match=message):
        explore(E1[:2], **kwargs)


def test_traces_of_different_planes_are_refused():
    with pytest.raises(ExploreError, match="different coordinates"):
        explore([E1[0], LOGS / "rosenbrock-adam.trace.csv"])


def test_the_command_writes_the_page(tmp_path, capsys):
    out = tmp_path / "e1.html"
    assert main(["explore", *map(str, E1), "-o", str(out), "--xlim", "0,2.5", "--ylim", "0,2.5"]) == 0
    assert out.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert f"wrote {out}" in capsys.readouterr().out
    assert [p.name for p in tmp_path.iterdir()] == ["e1.html"]  # no temporary left behind


@pytest.mark.parametrize(("argv", "message"), [
    (["-o", "page.png"], "--out must end in .html"),
    (["--labels", "a", "b", "-o", "page.html"], "2 labels given for 1 traces"),
], ids=["not html", "labels"])
def test_command_errors_exit_2_with_one_line(tmp_path, capsys, argv, message):
    argv = [str(tmp_path / a) if a.startswith("page.") else a for a in argv]
    assert main(["explore", str(E1[0]), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tracer: error: ") and message in err and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_a_missing_trace_is_one_clear_error(tmp_path, capsys):
    assert main(["explore", str(tmp_path / "missing.trace.csv"), "-o", str(tmp_path / "p.html")]) == 2
    assert "cannot read trace file" in capsys.readouterr().err


def test_the_explorer_never_imports_torch(tmp_path):
    code = ("import sys; from tracer.cli import main; "
            f"main(['explore', {str(E1[0])!r}, {str(MLP[0])!r}, '-o', {str(tmp_path / 'p.html')!r}]); "
            "assert 'torch' not in sys.modules, 'the explorer imported torch'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    assert (tmp_path / "p.html").exists()


def test_notebook_views():
    trace = load_trace(E1[3])
    summary = trace._repr_html_()
    assert summary == trace_summary_html(trace)
    assert "Adam" in summary and "1280 updates, complete" in summary and "<table>" in summary
    explorer = tracer.explore(trace)
    assert isinstance(explorer, Explorer) and len(explorer.traces) == 1
    frame = explorer._repr_html_()
    assert frame.startswith("<iframe srcdoc=\"&lt;!DOCTYPE html&gt;") and 'sandbox="allow-scripts"' in frame


def test_reproduce_writes_the_orbit_page_of_figure_3(tmp_path):
    from tracer.catalogue import E1_COLORS, FIGURES_BY_ID
    from tracer.experiments import write_explorer_pages

    written = write_explorer_pages(["fig01", "fig03"], LOGS, tmp_path, say=lambda *_: None)
    assert written == [tmp_path / "explore_orbit.html"]  # fig01 has no page
    options = {"colors": list(E1_COLORS), "xlim": (0.0, 2.5), "ylim": (0.0, 2.5), "title": FIGURES_BY_ID["fig03"].caption}
    assert written[0].read_text(encoding="utf-8") == explore(E1, **options).html  # Figure 3's runs, colours and view
    assert [run["color"] for run in page_data([load_trace(p) for p in E1], **options)["runs"]] == [
        "#ffd700", "#ff0000", "#0000ff", "#008000"]
