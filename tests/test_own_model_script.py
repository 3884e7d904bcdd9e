"""scripts/trace_own_model.py: the Recorder on a plain training loop with torch's own AdamW."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import numpy as np

from tracer import load_trace

SCRIPT = pathlib.Path(__file__).resolve().parent.parent / "scripts" / "trace_own_model.py"


def test_own_model_script_traces_renders_and_reports(tmp_path):
    done = subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path), "--epochs", "3"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    trace = load_trace(tmp_path / "own_model.trace.csv")
    # 3 epochs of 8 updates, torch's AdamW, mixed granularity as the script asks.
    assert (len(trace), trace.status, trace.meta["granularity"]) == (24, "complete", "mixed")
    assert trace.meta["optimizer"]["class"] == "torch.optim.adamw.AdamW"
    assert trace.meta["coordinates"] == ["2.weight[0]", "2.weight[1]", "2.bias[0]"]
    # CosineAnnealingLR(T_max=24) steps after every update: lr_t = 0.02 (1 + cos(pi t / 24)) / 2.
    t = np.arange(24)
    np.testing.assert_allclose(trace["lr"], 0.02 * (1 + np.cos(np.pi * t / 24)) / 2, rtol=1e-12)
    assert "granularity  mixed" in done.stdout
    for name in ("own_model_dashboard.png", "own_model_paths.gif"):
        assert (tmp_path / name).stat().st_size > 1000
