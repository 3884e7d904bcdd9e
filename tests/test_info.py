"""`tracer info`: the facts of a trace, as text and JSON, from the committed reference traces."""

from __future__ import annotations

import json
import re
import pathlib
import subprocess
import sys

import pytest

from tracer.cli import main
from tracer.info import summarize
from tracer.trace import load_trace

LOGS = pathlib.Path(__file__).resolve().parent.parent / "logs"
ADAM = str(LOGS / "e1-adam.trace.csv")
MULTISTEP = str(LOGS / "e3-multistep-0.8.trace.csv")


def test_summary_holds_the_runs_facts():
    trace = load_trace(MULTISTEP)
    facts = summarize(trace)
    assert (facts["optimizer"], facts["updates"], facts["status"]) == ("adam", 800, "complete")
    assert facts["scheduler"] == "multistep:milestones=4,8,10,12,14,16,18,20,22,24;gamma=0.8"
    lr = facts["lr"]["lr"]
    # Ten milestones at gamma 0.8: 0.12 * 0.8**10 from update 25 on.
    assert lr["first"] == 0.12 and lr["min_update"] == 25
    assert lr["last"] == pytest.approx(0.12 * 0.8**10, rel=1e-12)
    assert facts["final"] == trace.final
    assert facts["loss"]["min"] == float(trace["loss"].min())


def test_text_and_json_on_the_command_line(capsys):
    assert main(["info", ADAM, MULTISTEP]) == 0
    text = capsys.readouterr().out
    assert "run          160 epochs (batch size 64), 1280 updates, complete" in text
    assert "lr           0.01 (constant)" in text
    assert f"final        Wa={load_trace(ADAM).final['Wa']:.6g}" in text
    assert main(["info", "--json", ADAM]) == 0
    facts = json.loads(capsys.readouterr().out)
    assert facts["coordinates"] == ["Wa", "Wb"] and facts["granularity"] == "full"


def test_a_file_that_is_not_a_trace_is_one_line_and_status_2(tmp_path, capsys):
    bad = tmp_path / "notes.trace.csv"
    bad.write_text("hello\n")
    assert main(["info", str(bad)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "not a trace file" in error


def test_info_never_imports_torch():
    code = f"import sys; from tracer.cli import main; main(['info', {ADAM!r}]); assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


# ------------------------------------------------- traces of real users' runs

from tracer.trace import write_trace  # noqa: E402


def _own_trace(path, *, coordinates=("w[0]", "w[1]"), lrs=(0.1, 0.1, 0.1), groups=1, losses=(1.0, 0.5, 0.25),
               status="complete", diverged_at=None, final=None, **meta):
    """A trace as a user's own Recorder writes it: problem null, no scheduler in the metadata."""
    lr_names = ["lr"] if groups == 1 else [f"lr[{g}]" for g in range(groups)]
    columns = ["update", "epoch", "batch", *lr_names, "loss", *(f"{c}.{q}" for c in coordinates for q in ("theta", "g")),
               "step_size"]
    rows = [{"update": i + 1, **{name: lr * (g + 1) for g, name in enumerate(lr_names)}, "loss": loss,
             "step_size": 0.01, **{f"{c}.theta": 0.5 for c in coordinates}}
            for i, (lr, loss) in enumerate(zip(lrs, losses))]
    base = {"label": "mine", "problem": None, "granularity": "full", "coordinates": list(coordinates),
            "param_groups": groups, "optimizer": {"name": "sgd", "class": "torch.optim.sgd.SGD",
                                                  "hyperparameters": {"lr": lrs[0], "momentum": 0.9}}}
    base.update(meta)
    if final is None and status != "diverged":
        final = {c: 0.5 for c in coordinates}
    return write_trace(path, base, columns, rows, status=status, diverged_at=diverged_at, final=final)


def _info(capsys, *argv):
    assert main(["info", *argv]) == 0
    return capsys.readouterr().out


def test_a_363_coordinate_model_is_summarised(tmp_path, capsys):
    names = [f"layer{i // 40}.weight[{i % 40}]" for i in range(363)]
    path = _own_trace(tmp_path / "big.trace.csv", coordinates=names)
    text = _info(capsys, str(path))
    assert len(text) < 2000, f"{len(text)} characters"
    assert "layer0.weight[7], ... (363 in all)" in text
    assert "final        layer0.weight[0]=0.5" in text and "... (363 in all; --json lists every one)" in text
    facts = json.loads(_info(capsys, "--json", str(path)))
    assert len(facts["coordinates"]) == 363 and len(facts["final"]) == 363  # scripts get everything


# (what the trace is, keyword arguments of _own_trace, lines the text must hold)
CASES = [
    ("several parameter groups", {"groups": 3},
     ["  group 0      lr=0.1 momentum=0.9", "  groups 1-2   settings not recorded; their lr is in the lr rows below",
      "  lr[2]        0.3 (constant)"]),
    ("a scheduler the recorder could not see", {"lrs": (0.1, 0.05, 0.025)},
     ["  scheduler    not recorded (the lr changes: see the lr rows)"]),
    ("no scheduler and a constant lr, own run", {}, ["  scheduler    not recorded (the lr is constant)"]),
    ("the runner's run without a scheduler", {"problem": {"name": "orbit"}}, ["  scheduler    none"]),
    ("a diverged run", {"losses": (1.0, 3.0, float("nan")), "status": "diverged", "diverged_at": 3},
     ["  run          3 updates, diverged at update 3",
      "  loss         first 1, last finite 3 at update 2, min 1 at update 1, max 3"]),
]


@pytest.mark.parametrize("what, options, lines", CASES, ids=[c[0] for c in CASES])
def test_info_says_what_the_trace_holds(tmp_path, capsys, what, options, lines):
    path = _own_trace(tmp_path / "t.trace.csv", **options)
    text = _info(capsys, str(path))
    for line in lines:
        assert line in text.splitlines(), f"{line!r} not in\n{text}"


def test_json_has_null_for_non_finite_numbers(tmp_path, capsys):
    path = _own_trace(tmp_path / "d.trace.csv", losses=(1.0, float("inf"), float("nan")), status="diverged",
                      diverged_at=2, final={"w[0]": float("nan"), "w[1]": 0.5})
    out = _info(capsys, "--json", str(path))
    assert "NaN" not in out and "Infinity" not in out
    facts = json.loads(out)
    assert facts["final"] == {"w[0]": None, "w[1]": 0.5} and facts["loss"]["last"] == 1.0


# (metadata field, bad value, message regex): the first line is JSON of the wrong shape.
BAD_META = [
    ("coordinates", 5, r"field 'coordinates' must be a list of coordinate names \(strings\), got 5$"),
    ("parameters", "nonsense", r"field 'parameters' must be a list of \{\"name\": string, .*got \"nonsense\"$"),
    ("optimizer", ["adam"], r"field 'optimizer' must be an object .*got \[\"adam\"\]$"),
    ("problem", {"seed": 1}, r"field 'problem' must be an object with a \"name\" string"),
    ("epochs", "many", r"field 'epochs' must be an integer >= 0, got \"many\"$"),
    ("granularity", "some", r"field 'granularity' must be \"full\", \"summary\" or \"mixed\""),
    ("summarized", [1, 2], r"field 'summarized' must be a list of parameter names"),
    ("versions", [], r"field 'versions' must be an object of version strings"),
]
COMMANDS = [["info"], *(["render", kind, "-o", "OUT.png"] for kind in
                        ("paths", "first-steps", "internals", "lr-path", "gradients", "step-size", "dashboard"))]


@pytest.mark.parametrize("field, value, message", BAD_META, ids=[b[0] for b in BAD_META])
def test_metadata_of_the_wrong_shape_is_one_line_naming_the_field(tmp_path, capsys, field, value, message):
    good = _own_trace(tmp_path / "good.trace.csv")
    lines = good.read_text().split("\n")
    meta = json.loads(lines[0])
    meta[field] = value
    bad = tmp_path / "bad.trace.csv"
    bad.write_text("\n".join([json.dumps(meta), *lines[1:]]))
    for command in COMMANDS:
        argv = [str(tmp_path / a) if a == "OUT.png" else a for a in command]
        assert main([*argv[:2 if command[0] == "render" else 1], str(bad), *argv[2 if command[0] == "render" else 1:]]) == 2
        error = capsys.readouterr().err
        assert error.count("\n") == 1, error
        assert error.startswith(f"tracer: error: {bad}, line 1: invalid metadata: ")
        assert re.search(message, error.strip()), error
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.trace.csv", "good.trace.csv"]
