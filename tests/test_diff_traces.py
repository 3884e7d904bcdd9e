"""tracer.diff: tolerances, ours against torch's, the command line and the pytest helper."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tracer import diff_traces, load_trace
from tracer.cli import main
from tracer.errors import TracerError
from tracer.diff import Tolerance
from tracer.testing import assert_trace_matches
from tracer.trace import write_trace
from traced_configs import CONFIGS, run

COLUMNS = ["update", "loss", "Wa.theta", "Wa.v"]
HERE = {"fingerprint": "0123456789ab", "cpu_capability": "AVX2", "torch": "2.13.0+cpu", "cpu": "Test CPU"}
THERE = {"fingerprint": "ba9876543210", "cpu_capability": "AVX512", "torch": "2.13.0+cpu", "cpu": "Other CPU"}


def _write(path, loss_values, *, platform=HERE, **kwargs):
    rows = [{"update": i + 1, "loss": v, "Wa.theta": 0.5} for i, v in enumerate(loss_values)]
    meta = kwargs.pop("meta", {"label": "a"})
    if platform is not None:
        meta = {**meta, "platform": platform}
    return write_trace(path, meta, kwargs.pop("columns", COLUMNS), rows, **kwargs)


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


# Our fused optimizers are not torch's fused kernels bit for bit (within a few ulps: tests/test_native_steps.py).
@pytest.mark.parametrize("config", [c for c in CONFIGS if c.ours and not c.kwargs.get("fused")], ids=lambda c: c.desc)
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


# ------------------------------------------------------------- across platforms

def test_assert_trace_matches_says_which_comparison_applied(tmp_path, monkeypatch):
    monkeypatch.delenv("TRACER_REGENERATE", raising=False)
    losses = [float(np.float32(v)) for v in (0.3, 0.2, 0.1)]  # float32 values, as a float32 run records
    nudged = [losses[0], float(np.nextafter(np.float32(0.2), np.float32(1))), losses[2]]  # one ulp at update 2
    committed = _write(tmp_path / "committed.trace.csv", losses)
    same = _write(tmp_path / "same.trace.csv", losses)
    assert assert_trace_matches(same, committed) == "bit for bit on the same platform 0123456789ab"
    # Same platform, one ulp apart: caught.
    one_ulp = _write(tmp_path / "one_ulp.trace.csv", nudged)
    with pytest.raises(AssertionError, match=r"beyond bit for bit on the same platform[\s\S]*loss\s+2\s+1"):
        assert_trace_matches(one_ulp, committed)
    # Another platform: bit for bit does not apply, and without a declared tolerance that is a failure
    # naming both platforms and how to declare one.
    there = _write(tmp_path / "there.trace.csv", nudged, platform=THERE)
    with pytest.raises(AssertionError, match=r"different platforms[\s\S]*fresh ba9876543210 \(AVX512, Other CPU, "
                                             r"torch 2.13.0\+cpu\); committed 0123456789ab[\s\S]*cross_platform=Tolerance"):
        assert_trace_matches(there, committed)
    assert assert_trace_matches(there, committed, cross_platform=Tolerance(ulps=1)) == (
        "ulps=1 across platforms (fresh ba9876543210, committed 0123456789ab)")
    # A declared tolerance still catches a real difference.
    moved = _write(tmp_path / "moved.trace.csv", [losses[0], 0.21, losses[2]], platform=THERE)
    with pytest.raises(AssertionError, match=r"beyond ulps=1 across platforms"):
        assert_trace_matches(moved, committed, cross_platform=Tolerance(ulps=1))
    # A trace written before traces recorded their platform counts as another platform, said plainly.
    old = _write(tmp_path / "old.trace.csv", losses, platform=None)
    with pytest.raises(AssertionError, match=r"committed platform unknown \(the trace has no platform entry\)"):
        assert_trace_matches(same, old)
    assert assert_trace_matches(same, old, cross_platform=Tolerance()).startswith("bit for bit across platforms")


def test_ulps_count_units_in_the_last_place_of_the_runs_precision(tmp_path):
    value = np.float32(0.2)
    three_ulps = float(value + 3 * np.spacing(value))
    a = _write(tmp_path / "a.trace.csv", [0.3, float(value)])
    b = _write(tmp_path / "b.trace.csv", [0.3, three_ulps])
    result = diff_traces(b, a, ulps=2)
    assert result.precision == "float32" and not result.equal  # Wa.theta = 0.5 is float32 exactly
    assert "ulps=2 (float32 ulps)" in result.report()
    assert diff_traces(b, a, ulps=3).equal
    # A float64 run: the same difference is millions of float64 ulps.
    wide = {"update": 1, "loss": 0.3, "Wa.theta": 0.1}
    c = write_trace(tmp_path / "c.trace.csv", {"platform": HERE}, COLUMNS, [wide, {**wide, "loss": float(value)}])
    d = write_trace(tmp_path / "d.trace.csv", {"platform": HERE}, COLUMNS, [wide, {**wide, "loss": three_ulps}])
    assert diff_traces(d, c).precision == "float64" and not diff_traces(d, c, ulps=10**6).equal


@pytest.mark.parametrize("ulps", [-1, 1.5, True, "3"])
def test_bad_ulps_is_a_tracer_error(ulps):
    with pytest.raises(TracerError, match=f"invalid ulps {ulps!r}; accepted: an integer >= 0"):
        Tolerance(ulps=ulps)


def test_report_names_both_platforms_and_where_the_drift_starts_and_grows(tmp_path):
    rows = 150
    base = [{"update": i + 1, "loss": 0.1, "Wa.theta": 1.0} for i in range(rows)]
    # Differs from update 5 on, by 1e-7 up to update 99 and by 1e-4 after.
    drifted = [{**row, "Wa.theta": 1.0 + (1e-4 if i >= 99 else 1e-7 if i >= 4 else 0.0)} for i, row in enumerate(base)]
    a = write_trace(tmp_path / "a.trace.csv", {"platform": HERE}, COLUMNS, base)
    b = write_trace(tmp_path / "b.trace.csv", {"platform": THERE}, COLUMNS, drifted)
    result = diff_traces(b, a, atol=1e-3)
    assert result.equal and not result.same_platform
    report = result.report()
    assert "platforms DIFFER" in report and "0123456789ab (AVX2, Test CPU" in report
    assert "ba9876543210 (AVX512, Other CPU" in report
    assert result.drift.first_update == 5 and result.drift.first_column == "Wa.theta"
    assert [(first, last) for first, last, _, _ in result.drift.by_decade] == [(1, 9), (10, 99), (100, 150)]
    assert [absolute for _, _, absolute, _ in result.drift.by_decade] == pytest.approx([1e-7, 1e-7, 1e-4], rel=1e-6)
    assert "drift: first differs at update 5 (Wa.theta)" in report and report.endswith("equal: 4 columns agree "
                                                                                       "at every update (rtol=0.0, "
                                                                                       "atol=0.001)")
    same = diff_traces(a, a)
    assert same.same_platform and "platform: the same for both, 0123456789ab" in same.report()
    assert "drift: none" in same.report()
    # 1e-4 is 839 float32 ulps of 1.0: that many pass, fewer do not.
    assert main(["diff", str(b), str(a), "--ulps", "838"]) == 1
    assert main(["diff", str(b), str(a), "--ulps", "839"]) == 0


def test_a_column_name_with_brackets_is_a_name_not_a_glob(tmp_path):
    columns = ["update", "weight[0].theta", "weight[1].theta"]
    a = write_trace(tmp_path / "a.trace.csv", {}, columns, [{"update": 1, "weight[0].theta": 1.0, "weight[1].theta": 2.0}])
    b = write_trace(tmp_path / "b.trace.csv", {}, columns, [{"update": 1, "weight[0].theta": 1.0, "weight[1].theta": 3.0}])
    assert diff_traces(a, b, columns=["weight[0].theta"]).equal
    assert [c.column for c in diff_traces(a, b, columns=["weight[*"]).columns] == ["weight[1].theta"]


def test_a_sampled_trace_is_compared_with_a_full_one_by_update_number(tmp_path):
    # every=3 holds updates 1, 4, 7, 10: row 2 of it is update 4, not update 2.
    full = write_trace(tmp_path / "full.trace.csv", {"label": "a", "platform": HERE}, COLUMNS,
                       [{"update": u, "loss": 1.0 / u, "Wa.theta": 0.5 * u} for u in range(1, 11)])
    sampled_rows = [{"update": u, "loss": 1.0 / u, "Wa.theta": 0.5 * u} for u in (1, 4, 7, 10)]
    sampled = write_trace(tmp_path / "sampled.trace.csv", {"label": "a", "platform": HERE, "every": 3}, COLUMNS,
                          sampled_rows)
    result = diff_traces(full, sampled)
    assert result.common_updates == 4 and result.columns == ()
    assert not result.equal  # the traces do not hold the same updates
    assert "compared the 4 updates both hold, matched by update number" in result.report()

    sampled_rows[2]["Wa.theta"] = np.nextafter(3.5, 4.0)  # one ulp off at update 7
    changed = write_trace(tmp_path / "changed.trace.csv", {"label": "a", "platform": HERE, "every": 3}, COLUMNS,
                          sampled_rows)
    (column,) = diff_traces(full, changed).columns
    assert column.column == "Wa.theta" and column.first_update == 7 and column.rows == 1
