"""A recorded update, from what the readers read to its typed row (``tracer.trace.TraceRow``).

At a recorded update the Recorder gathers a ``PendingRow``: the notes, the
learning rates, the fully traced values (``tracer.recording.full``), the
summaries on their way to the host (``tracer.recording.summary``) and the
state values (``tracer.recording.state``). Once the summaries are on the
host, ``assemble`` makes the row. It defines the two norms over every traced
parameter together:

- ``|d|``, which ``u`` divides by: the norm of every traced parameter's d;
- ``step_size``: the norm of ``lr_group * d`` over the parameters, and
  ``displacement``: the norm of ``theta_next - theta``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

from tracer.recording.full import FullValues
from tracer.recording.selection import TracedParameter
from tracer.recording.state import StateValues
from tracer.recording.summary import PendingSummaries
from tracer.trace import TraceRow


@dataclass(frozen=True)
class PendingRow:
    """A recorded update whose row waits for its summaries to reach the host (one update at most)."""

    update: int
    notes: dict[str, Any]  # epoch, batch, loss (a float, or a host tensor being copied from the device)
    lrs: list[float]  # NaN where a group has no usable lr
    full_values: dict[int, FullValues]  # by parameter index, for the parameters with coordinates traced in full
    finite_full: bool
    summaries: PendingSummaries
    state: StateValues  # the state columns' values (tracer.recording.state)


def assemble(pending: PendingRow, parameters: Sequence[TracedParameter]) -> tuple[TraceRow, bool]:
    """The row of ``pending``, and whether every value in it is finite (waits for the summaries' copy)."""
    summaries, finite_summary = pending.summaries.read()
    full_values, lrs = pending.full_values, pending.lrs
    loss = pending.notes.get("loss")
    if loss is not None:
        loss = float(loss)  # a host tensor's copy is done with the summaries'

    # Norms of d and of the displacement over every traced parameter together.
    d_norms, lr_d_norms, displacements = [], [], []
    for parameter in parameters:
        if parameter.summarized:
            summary = summaries[parameter.index]
            d_norm, displacement = summary.d_norm, summary.displacement
        else:
            values = full_values[parameter.index]
            d_norm = None if values.d is None else math.hypot(*values.d)
            displacement = math.dist(values.theta_next, values.theta)
        d_norm = d_norm or 0.0
        d_norms.append(d_norm)
        lr_d_norms.append(lrs[parameter.group] * d_norm if d_norm else 0.0)
        displacements.append(displacement)
    d_norm_all = math.hypot(*d_norms)

    cells: list[Any] = []
    for parameter in parameters:
        if parameter.full:
            values = full_values[parameter.index]
            missing = [None] * len(parameter.coordinates)
            d = values.d
            u = missing if d is None or not d_norm_all else [x / d_norm_all for x in d]
            for coordinate_cells in zip(
                values.theta, values.g or missing, values.v or missing, values.s or missing, d or missing, u
            ):
                cells += coordinate_cells
        if parameter.summarized:
            cells += summaries[parameter.index]  # a Summary is its cells, in SUMMARY_QUANTITIES order
    row = TraceRow(
        update=pending.update,
        epoch=pending.notes.get("epoch"),
        batch=pending.notes.get("batch"),
        lrs=[lr if lr == lr else None for lr in lrs],  # NaN: the group has no usable lr, an empty cell
        loss=loss,
        parameters=cells,
        state=pending.state.read(summaries),
        step_size=math.hypot(*lr_d_norms),
        displacement=math.hypot(*displacements),
    )
    finite = (loss is None or math.isfinite(loss)) and pending.finite_full and finite_summary
    return row, finite


def final_coordinates(pending: PendingRow, parameters: Sequence[TracedParameter]) -> Iterator[tuple[str, float]]:
    """(coordinate, theta after the update) of every coordinate traced in full."""
    for parameter in parameters:
        if parameter.full:
            yield from zip(parameter.coordinates, pending.full_values[parameter.index].theta_next)
