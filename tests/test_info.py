"""`tracer info`: the facts of a trace, as text and JSON, from the committed reference traces."""

from __future__ import annotations

import json
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
