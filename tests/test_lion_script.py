"""scripts/trace_lion.py: a user's Lion traced beside torch's AdamW, drawn together."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import numpy as np

from tracer import load_trace

SCRIPT = pathlib.Path(__file__).resolve().parent.parent / "scripts" / "trace_lion.py"


def test_lion_script_traces_both_and_draws_them_together(tmp_path):
    figures = tmp_path / "figures"  # make reproduce draws them into figures/, the traces go elsewhere
    done = subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path), "--figures", str(figures), "--epochs", "3"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    lion, adamw = load_trace(tmp_path / "lion.trace.csv"), load_trace(tmp_path / "adamw.trace.csv")
    assert (len(lion), lion.status, len(adamw), adamw.status) == (24, "complete", 24, "complete")
    assert lion.meta["optimizer"]["d"] == "measured"
    assert lion.meta["optimizer"]["d_note"] == "__main__.Lion is not in the family table: d measured"
    assert lion.meta["optimizer"]["state_keys"] == {"v": "exp_avg", "s": None}
    # Lion's d is sign(...) + wd * theta: for 0.bias (16 entries, |theta| < 1) |d| is 4 within wd * |theta| = 0.1 |theta|.
    np.testing.assert_allclose(lion["0.bias.d_norm"], 4.0, atol=0.1 * lion["0.bias.theta_norm"].max() + 1e-3)
    # Every state key, by name, with its norm: v is exp_avg, so v_norm is exp_avg's norm.
    assert lion.meta["state"]["0.weight"] == {"exp_avg": [16, 4]}
    np.testing.assert_allclose(lion["0.weight.v_norm"], lion["0.weight.state_norm:exp_avg"], rtol=1e-6)
    assert {"step", "exp_avg", "exp_avg_sq"} == set(adamw.meta["state"]["2.bias"])
    assert "state        v=exp_avg; keys (parameters holding each): exp_avg (4)" in done.stdout
    assert sorted(p.name for p in figures.iterdir()) == ["lion_vs_adamw_dashboard.png", "lion_vs_adamw_state.png"]
    for path in figures.iterdir():
        assert path.stat().st_size > 10000
    assert not list(tmp_path.glob("*.png"))
