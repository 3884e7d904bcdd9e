"""The recording plan (tracer.recording.plan) and the typed row (tracer.trace.TraceRow).

The plan owns the rules of a recording; these tests ask the plan, not a
Recorder, so that each rule is tested where it lives.
"""

from __future__ import annotations

import pytest
import torch

from tracer import Recorder, load_trace
from tracer import native
from tracer.errors import TracerError
from tracer.recording.plan import ROLES, plan_recording
from tracer.recording.snapshots import SnapshotPolicy
from tracer.trace import TraceRow, TraceWriter, row_columns


def _optimizer(*tensors: torch.Tensor) -> torch.optim.Optimizer:
    return torch.optim.SGD([torch.nn.Parameter(t) for t in tensors], lr=0.1)


@pytest.mark.parametrize(
    "every, cos_d_prev, roles",
    [
        (1, True, "rrrrrr"),
        (3, True, "rsmrsm"),  # the update before a recorded one is measured, for its cos_d_prev
        (3, False, "rssrss"),  # nothing to measure without cos_d_prev
        (2, True, "rmrmrm"),
    ],
)
def test_role_of_each_update(tmp_path, every, cos_d_prev, roles):
    plan = plan_recording(_optimizer(torch.zeros(3)), tmp_path / "t.csv", granularity="summary", every=every,
                          cos_d_prev=cos_d_prev)
    got = "".join(plan.role_of(update)[0] for update in range(1, 7))
    assert got == roles
    assert {plan.role_of(u) for u in range(1, 50)} <= set(ROLES)


@pytest.mark.skipif(native.library() is None, reason="the native C library does not build on this machine")
@pytest.mark.parametrize(
    "tensor, expected",
    [
        (torch.zeros(4, 3), "native"),
        (torch.zeros(4, 3, dtype=torch.float64), "eager"),  # the native pass takes float32 only
        (torch.zeros(3, 4).t(), "eager"),  # nor a non-contiguous tensor: the rule is native_tensors'
    ],
    ids=["float32", "float64", "non-contiguous"],
)
def test_summary_pass_follows_the_native_pass_rule(tmp_path, tensor, expected):
    plan = plan_recording(_optimizer(tensor), tmp_path / "t.csv", granularity="summary")
    assert plan.summary_pass == expected
    assert plan.meta["summary_pass"] == expected


def test_no_summary_pass_where_nothing_is_summarised(tmp_path):
    plan = plan_recording(_optimizer(torch.zeros(2)), tmp_path / "t.csv", granularity="full")
    assert plan.summary_pass is None and "summary_pass" not in plan.meta


def test_plan_records_state_unless_told_not_to(tmp_path):
    optimizer = _optimizer(torch.zeros(2))
    assert plan_recording(optimizer, tmp_path / "a.csv").records_state
    assert plan_recording(optimizer, tmp_path / "a.csv").meta["state"] == {}
    lean = plan_recording(optimizer, tmp_path / "a.csv", record_state=False)
    assert not lean.records_state and "state" not in lean.meta


def test_plan_writes_nothing(tmp_path):
    # Planning decides; only Recorder.start opens the file.
    plan_recording(_optimizer(torch.zeros(2)), tmp_path / "t.csv", snapshots=SnapshotPolicy(every=2))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "options, message",
    [
        ({"granularity": "coarse"}, "invalid granularity 'coarse'; accepted: full, summary"),
        ({"every": 0}, "invalid every 0; accepted: a whole number of updates >= 1"),
        ({"if_exists": "append", "snapshots": SnapshotPolicy(every=2)}, "snapshots cannot continue an appended trace"),
        ({"meta": {"granularity": "x"}}, "meta may not set ['granularity']"),
        ({"summary_pass": "compiled"}, "invalid summary_pass 'compiled'"),
    ],
)
def test_bad_options_refused_by_the_plan_and_the_recorder_alike(tmp_path, options, message):
    for make in (plan_recording, Recorder):
        with pytest.raises(TracerError) as error:
            make(_optimizer(torch.zeros(2)), tmp_path / "t.csv", **options)
        assert message in str(error.value) and "\n" not in str(error.value)


def test_recorder_takes_its_plan(tmp_path):
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    recorder = Recorder(optimizer, tmp_path / "t.csv", named_parameters=model.named_parameters(),
                        granularity="summary", every=2)
    plan = recorder.plan
    assert recorder.columns == plan.columns and recorder.columns is not plan.columns
    assert recorder.meta is plan.meta and recorder.family is plan.family
    assert [p.name for p in plan.parameters] == ["weight", "bias"]
    assert plan.meta["every"] == 2 and plan.granularity == "summary"


def test_trace_row_cells_follow_row_columns(tmp_path):
    # Two groups, one coordinate in full, one state column: every part lands under its own column.
    per_parameter = [f"w.{q}" for q in ("theta", "g", "v", "s", "d", "u")]
    columns = row_columns(2, per_parameter, ["w.state.step"])
    row = TraceRow(update=7, epoch=1, batch=2, lrs=[0.5, None], loss=0.25,
                   parameters=[1.0, 2.0, None, None, 3.0, 4.0], state=[6.0], step_size=5.0, displacement=1.5)
    path = tmp_path / "t.csv"
    with TraceWriter(path, {"optimizer": {"name": "SGD"}}, columns) as writer:
        writer.write_row(row)
    trace = load_trace(path)
    expected = {"update": 7, "epoch": 1, "batch": 2, "lr[0]": 0.5, "loss": 0.25, "w.theta": 1.0, "w.g": 2.0,
                "w.d": 3.0, "w.u": 4.0, "w.state.step": 6.0, "step_size": 5.0, "displacement": 1.5}
    for column, value in expected.items():
        assert trace[column][0] == value, column
    for column in ("lr[1]", "w.v", "w.s"):
        assert trace[column][0] != trace[column][0], column  # empty: NaN
    assert len(row.cells()) == len(columns)
