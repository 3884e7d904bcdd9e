"""The recorder on every configuration of the optimizer table: the trace is the run."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tracer import load_trace
from traced_configs import SHAPES, cases, run

STEPS = 12
# step_size is lr * |d| with d recomputed or measured, displacement |theta_next - theta|
# measured: they agree to float32 rounding of theta (16-bit parameters: float16's).
STEP_TOLERANCE = {"float32": 1e-5, "float16": 1e-2}


@pytest.mark.parametrize("config, impl", cases())
@pytest.mark.parametrize("granularity", ["full", "summary"])
def test_the_trace_is_the_run(tmp_path, config, impl, granularity):
    path = tmp_path / "run.trace.csv"
    traced = run(config, impl, path, steps=STEPS, recorder_options={"granularity": granularity})
    trace = load_trace(path)
    assert len(trace) == STEPS and trace.status == "complete"
    assert list(trace["update"]) == list(range(1, STEPS + 1))
    if granularity == "full":
        shapes = config.shapes or SHAPES
        final = {c: v for k in range(2) for c, v in zip(_names(f"w{k}", shapes[k]), traced[k].reshape(-1).tolist())}
        assert {k: trace.final[k] for k in final} == final
        # The first row starts from the initial parameters (tests.traced_configs.run starts w0 at 0.1).
        assert trace[f"{_names('w0', shapes[0])[0]}.theta"][0] == torch.tensor(0.1, dtype=config.dtype).item()
    step, moved = trace["step_size"], trace["displacement"]
    tolerance = STEP_TOLERANCE[str(config.dtype).removeprefix("torch.")]
    assert (np.abs(step - moved) <= tolerance * step + 1e-7).all()


@pytest.mark.parametrize("config, impl", cases())
def test_g_d_and_u_are_there_where_the_step_was(tmp_path, config, impl):
    path = tmp_path / "run.trace.csv"
    run(config, impl, path, steps=3)
    trace = load_trace(path)
    shapes = config.shapes or SHAPES
    coordinates = [c for k, shape in enumerate(shapes) for c in _names(f"w{k}", shape)]
    assert not math.isnan(trace[f"{coordinates[0]}.g"][0]) and not math.isnan(trace[f"{coordinates[0]}.d"][0])
    u = [trace[f"{c}.u"][0] for c in coordinates]
    assert math.hypot(*u) == pytest.approx(1.0, abs=1e-12)
    if config.closure:  # the closure computes every gradient (LBFGS): none is skipped
        return
    # w2 has no gradient at the third update: its g, v, s, d, u cells are empty there.
    for quantity in ("g", "v", "s", "d", "u"):
        assert math.isnan(trace[f"w2[0].{quantity}"][2])


def _names(name: str, shape: tuple[int, ...]) -> list[str]:
    """The coordinate names of a parameter of this shape: its name for a scalar, else name[i]."""
    return [name] if shape == () else [f"{name}[{i}]" for i in range(math.prod(shape))]
