"""Regenerate every reference trace and compare it with the committed one in logs/.

Tolerance: none. Every run is deterministic (seeded private generators,
for-loop optimizer arithmetic, one thread per run), so on the same kind of
machine the fresh trace equals the committed one bit for bit, and CI runs on
the same kind of machine. The Momentum lr 0.012 runs are the canary: their
path passes close to where the mask changes which samples count, so a
difference in the last bit of any update grows into a different final point.
A tolerance would hide exactly the changes these tests exist to catch.

After an intended change: TRACER_REGENERATE=1 .venv/bin/python -m pytest
tests/test_reproduction.py rewrites logs/ (review `git diff --stat logs/`).
"""

import pathlib

import pytest

from tracer.experiments import RUNS, trace_runs
from tracer.testing import assert_trace_matches
from tracer.trace import load_trace

LOGS = pathlib.Path(__file__).resolve().parent.parent / "logs"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fresh_logs(tmp_path_factory):
    logs = tmp_path_factory.mktemp("logs")
    trace_runs(RUNS, logs, workers=2, say=lambda *_: None)
    return logs


@pytest.mark.parametrize("run", RUNS, ids=[run.id for run in RUNS])
def test_reference_trace_regenerates_bit_for_bit(fresh_logs, run):
    fresh = run.path(fresh_logs)
    assert_trace_matches(fresh, run.path(LOGS), rtol=0.0, atol=0.0)
    committed = load_trace(run.path(LOGS))
    regenerated = load_trace(fresh)
    assert len(regenerated) == len(committed) and regenerated.status == committed.status == "complete"
    assert regenerated.final == committed.final
