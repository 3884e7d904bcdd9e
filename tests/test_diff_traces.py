"""tracer.diff: tolerances, ours against torch's, the command line and the pytest helper."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tracer import diff_traces, load_trace
from tracer.cli import main
from tracer.errors import TracerError
from tracer.testing import assert_trace_matches
from tracer.trace import write_trace
from traced_configs import CONFIGS, run

COLUMNS = ["update", "loss", "Wa.theta", "Wa.v"]


def _write(path, loss_values, **kwargs):
    rows = [{"update": i + 1, "loss": v, "Wa.theta": 0.5} for i, v in enumerate(loss_values)]
    return write_trace(path, kwargs.pop("meta", {"label": "a"}), kwargs.pop("columns", COLUMNS), rows, **kwargs)


def test_one_ulp_is_a_difference_at_zero_tolerance_only(tmp_path):
    losses = [0.3, 0.2, 0.1]
    nudged = losses[:1] + [float(np.nextafter(0.2, 1.0))] + losses[2:]
    a = _write(tmp_path / "a.trace.csv", losses)
    b = _write(tmp_path / "b.trace.csv", nudged)
    result = diff_traces(a, b)
    assert not result.equal
    [column] = result.columns
    assert column.column == "loss" and column.first_update == 2 and column.rows == 1
    assert column.max_abs == abs(nudged[1] - 0.2)
    assert "loss" in result.report() and result.report().endswith("different (rtol=0.0, atol=0.0)")
    assert diff_traces(a, b, rtol=1e-15).equal
    assert diff_traces(a, b, atol=1e-16).equal
    assert diff_traces(a, b, columns=["update", "Wa.*"]).equal


def test_structure_and_trailer_differences(tmp_path):
    a = _write(tmp_path / "a.trace.csv", [0.3, 0.2], final={"Wa": 1.0})
    b = _write(tmp_path / "b.trace.csv", [0.3], columns=COLUMNS + ["extra"], status="interrupted", final={"Wa": 1.0},
               meta={"label": "b"})
    result = diff_traces(a, b)
    assert not result.equal
    assert result.only_in_b == ("extra",) and (result.rows_a, result.rows_b) == (2, 1)
    assert ("status", "complete", "interrupted") in result.trailer
    assert ("label", "a", "b") in result.meta
    report = result.report()
    for text in ("columns only in B: extra", "row counts differ", "trailer status differs", "label: A='a' B='b'"):
        assert text in report
    # Metadata alone: reported, counted only when strict.
    c = _write(tmp_path / "c.trace.csv", [0.3, 0.2], final={"Wa": 1.0}, meta={"label": "c"})
    assert diff_traces(a, c).equal and not diff_traces(a, c, strict_meta=True).equal


def test_nan_equals_nan_and_empty_equals_empty(tmp_path):
    a = _write(tmp_path / "a.trace.csv", [float("nan"), float("inf")])
    b = _write(tmp_path / "b.trace.csv", [float("nan"), float("inf")])
    assert diff_traces(a, b).equal
    c = _write(tmp_path / "c.trace.csv", [1.0, float("inf")])
    result = diff_traces(a, c, atol=1e9)
    # NaN against a number differs under any tolerance; it is counted apart,
    # not folded into the largest difference as an infinity.
    column = result.columns[0]
    assert not result.equal and (column.rows, column.one_sided) == (1, 1)
    assert math.isnan(column.max_abs)
    d = _write(tmp_path / "d.trace.csv", [1.5, float("inf")])
    column = diff_traces(c, d).columns[0]
    assert (column.one_sided, column.max_abs, column.max_rel) == (0, 0.5, 0.5 / 1.5)


@pytest.mark.parametrize("config", [c for c in CONFIGS if c.ours], ids=lambda c: c.desc)
def test_ours_and_torchs_traces_are_identical(tmp_path, config):
    """Ours and torch's for-loop implementation trace identically."""
    torch_path, ours_path = tmp_path / "torch.trace.csv", tmp_path / "ours.trace.csv"
    run(config, "torch", torch_path)
    run(config, "tracer", ours_path)
    result = diff_traces(ours_path, torch_path)
    assert result.equal, result.report()
    assert {key for key, _, _ in result.meta} >= {"optimizer.class", "optimizer.impl"}


def test_command_line_exit_status(tmp_path, capsys):
    a = _write(tmp_path / "a.trace.csv", [0.3, 0.2])
    b = _write(tmp_path / "b.trace.csv", [0.3, 0.25])
    assert main(["diff", str(a), str(a)]) == 0
    assert main(["diff", str(a), str(b)]) == 1
    assert "first update" in capsys.readouterr().out
    assert main(["diff", str(a), str(b), "--atol", "0.1"]) == 0
    assert main(["diff", str(a), str(b), "--columns", "Wa.theta"]) == 0
    capsys.readouterr()
    (tmp_path / "bad.trace.csv").write_text("not,a,trace\n")
    assert main(["diff", str(a), str(tmp_path / "bad.trace.csv")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tracer: error: ") and "bad.trace.csv, line 1" in err and err.count("\n") == 1
    assert main(["diff", str(a), str(b), "--rtol", "-1"]) == 2
    assert main(["diff", str(a), str(b), "--columns", "nope"]) == 2


def test_bad_tolerance_is_a_tracer_error(tmp_path):
    a = _write(tmp_path / "a.trace.csv", [0.3])
    with pytest.raises(TracerError, match="invalid rtol nan"):
        diff_traces(a, a, rtol=float("nan"))


def test_assert_trace_matches_and_regeneration(tmp_path, monkeypatch):
    fresh = _write(tmp_path / "fresh.trace.csv", [0.3, 0.2])
    committed = tmp_path / "logs" / "ref.trace.csv"
    monkeypatch.delenv("TRACER_REGENERATE", raising=False)
    with pytest.raises(AssertionError, match="TRACER_REGENERATE=1"):
        assert_trace_matches(fresh, committed)
    monkeypatch.setenv("TRACER_REGENERATE", "1")
    assert_trace_matches(fresh, committed)  # writes the reference
    monkeypatch.delenv("TRACER_REGENERATE")
    assert_trace_matches(fresh, committed)
    other = _write(tmp_path / "other.trace.csv", [0.3, 0.2000001])
    with pytest.raises(AssertionError, match=r"differs from the committed[\s\S]*loss"):
        assert_trace_matches(other, committed)
    assert_trace_matches(other, committed, rtol=1e-5)
    assert len(load_trace(committed)) == 2
