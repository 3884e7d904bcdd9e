"""Full granularity: every traced coordinate's theta, g, v, s, d and theta_next, read as floats.

The family (``tracer.families``) gives g, v, s and d: d recomputed in the
optimizer's own op order where that is sound, otherwise measured from the
displacement. A recomputed d is checked at every update against the
displacement: ``theta - lr * d`` (float64) must be within
``DISPLACEMENT_ULPS`` float roundings of theta_next; where it is not, the
parameter's d is measured from then on (this update included), and the
switch is reported (``switches``) for the recorder to warn once and write
in the trailer. Every value of an update is read back with one torch.stack (or
cat) and one tolist(), or, for scalar parameters on the CPU, one item() each.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import torch
from torch import Tensor

from tracer.families import DISPLACEMENT_ULPS, Family, group_lr, read_group
from tracer.recording.selection import TracedParameter


@dataclass(frozen=True)
class FullValues:
    """One fully traced parameter at one update: its traced coordinates as floats.

    ``g``, ``v``, ``s`` and ``d`` are None where the parameter had no gradient
    (the optimizer skipped it) or the optimizer keeps no such quantity; ``d``
    also where it is measured and lr = 0 (theta does not move).
    """

    theta: list[float]  # before the step
    g: list[float] | None
    v: list[float] | None
    s: list[float] | None
    d: list[float] | None
    theta_next: list[float]  # after the step

    def finite(self) -> bool:
        """theta, g, v and s are all finite (d and theta_next follow from them)."""
        return all(map(math.isfinite, self.theta)) and all(
            all(map(math.isfinite, column)) for column in (self.g, self.v, self.s) if column is not None
        )


# Which of (theta, g, v, s, d, theta_next) an update read for a parameter without a gradient.
_WITHOUT_GRAD = (True, False, False, False, False, True)


class FullReader:
    """Reads the fully traced parameters of a Recorder at each update.

    Owns a snapshot of theta before the step for each parameter traced whole
    in full; a parameter traced partly in full is also summarised, and its
    theta before the step is the summary reducer's snapshot (passed to
    ``read``).
    """

    def __init__(
        self, parameters: Sequence[TracedParameter], groups: int,
        summary_snapshots: Callable[[], Mapping[int, Tensor]] | None = None,
    ) -> None:
        """``summary_snapshots``: theta before the step of the parameters traced partly in full, which the
        summary reducer snapshots (``SummaryReducer.snapshots``), read before it turns them into displacements."""
        self.parameters = [p for p in parameters if p.full]
        self._summary_snapshots = summary_snapshots
        self._by_group = [[p for p in self.parameters if p.group == g] for g in range(groups)]
        whole = [p for p in self.parameters if not p.summarized]
        # theta before the step, one buffer per parameter traced whole, allocated once.
        self._snapshots = {p.index: torch.empty_like(p.tensor, memory_format=torch.contiguous_format) for p in whole}
        self._copy_targets = list(self._snapshots.values())
        self._copy_sources = [p.tensor for p in whole]
        # Scalar parameters are joined with one torch.stack instead of one reshape per piece; on the CPU
        # they are read one item() each, cheaper than joining a handful of 0-dim tensors.
        self._all_scalars = all(p.tensor.dim() == 0 and p.full_index is None for p in self.parameters)
        self._items = self._all_scalars and all(p.tensor.device.type == "cpu" for p in self.parameters)
        # Parameters whose recomputed d disagreed with the displacement: d measured for them from then on.
        self.measured: set[int] = set()
        # Switches not yet taken by the recorder: (parameter name, largest |theta - lr * d - theta_next|, that
        # disagreement in units of one rounding eps * (|theta_next| + lr * |d|)).
        self.switches: list[tuple[str, float, float]] = []

    def snapshot(self) -> None:
        """Copy theta before the step (the pre-step hook)."""
        if self._copy_targets:
            torch._foreach_copy_(self._copy_targets, self._copy_sources)

    def current(self) -> dict[str, float]:
        """The fully traced coordinates' values now, by name (read once, at the end of a sampled run)."""
        values: dict[str, float] = {}
        for p in self.parameters:
            flat = p.tensor.detach().reshape(-1)
            chosen = flat if p.full_index is None else flat[p.full_index]
            values.update(zip(p.coordinates, chosen.tolist()))
        return values

    def read(self, optimizer: torch.optim.Optimizer, family: Family) -> tuple[dict[int, FullValues], bool]:
        """Per fully traced parameter (by index), its values at the update just made; and whether all are finite.

        Call it before the summary reducer's ``reduce``: the snapshots of the
        parameters traced partly in full are theta before the step until then.
        """
        partly = self._summary_snapshots() if self._summary_snapshots is not None else None
        before = {**self._snapshots, **partly} if partly else self._snapshots
        pieces: list[Tensor] = []
        # Per parameter in read order: which of (theta, g, v, s, d, theta_next) the flat read-back holds.
        # Per parameter in read order: (parameter, present, its group's lr where d is recomputed, else None).
        layout: list[tuple[TracedParameter, tuple[bool, ...], float | None]] = []
        for group, members in zip(optimizer.param_groups, self._by_group):
            with_grad = [p for p in members if p.tensor.grad is not None]
            given: list[tuple[int, Sequence[Tensor | None]]] = []
            checked_lr = None
            if with_grad:
                thetas = [before[p.index] for p in with_grad]
                result = read_group(
                    family,
                    [p.tensor.grad for p in with_grad],
                    [optimizer.state[p.tensor] for p in with_grad],
                    group,
                    thetas,
                    [p.tensor for p in with_grad],
                )
                # Each quantity the family gives, with its slot in (theta, g, v, s, d, theta_next).
                given = [(slot, q) for slot, q in zip((1, 2, 3, 4), (result.g, result.v, result.s, result.d)) if q is not None]
                if result.d is not None and all(family.recomputes(theta.dtype) for theta in thetas):
                    checked_lr = group_lr(group)
                    checked_lr = 0.0 if checked_lr is None else checked_lr
            k = 0
            for parameter in members:
                if k < len(with_grad) and with_grad[k] is parameter:
                    # A v or s the parameter's state lacks (Adafactor's matrices: no variance), or of another shape
                    # than the parameter (a user's state_keys naming a factor), has no per-coordinate cells.
                    shape = parameter.tensor.shape
                    here = [True, False, False, False, False, True]
                    tensors = [before[parameter.index]]
                    for slot, quantity in given:
                        tensor = quantity[k]
                        if tensor is not None and tensor.shape == shape:
                            here[slot] = True
                            tensors.append(tensor)
                    tensors.append(parameter.tensor)
                    layout.append((parameter, here, checked_lr))
                    k += 1
                else:
                    tensors = [before[parameter.index], parameter.tensor]
                    layout.append((parameter, _WITHOUT_GRAD, None))
                if parameter.full_index is not None:
                    tensors = [tensor.reshape(-1)[parameter.full_index] for tensor in tensors]
                pieces += tensors
        if not pieces:
            return {}, True
        # float32 (or float16) -> Python float is exact, one item at a time or joined (torch.stack/cat promote
        # mixed dtypes, exactly).
        if self._items:
            flat = [piece.item() for piece in pieces]
        elif self._all_scalars:
            flat = torch.stack(pieces).tolist()
        else:
            flat = torch.cat([piece.reshape(-1) for piece in pieces]).tolist()
        values: dict[int, FullValues] = {}
        offset = 0
        for parameter, present, checked_lr in layout:
            count = len(parameter.coordinates)
            columns: list[list[float] | None] = []
            for here in present:
                if here:
                    columns.append(flat[offset : offset + count])
                    offset += count
                else:
                    columns.append(None)
            if checked_lr is not None and columns[4] is not None:
                if checked_lr > 0:
                    columns[4] = self._checked_d(parameter, columns[0], columns[4], columns[5], checked_lr)
                elif parameter.index in self.measured:  # measured d needs theta to move
                    columns[4] = None
            values[parameter.index] = FullValues(*columns)
        # A finite sum has no inf or nan among its terms; a sum that is not (or overflows) is checked value by value.
        finite = math.isfinite(sum(flat)) or all(item.finite() for item in values.values())
        return values, finite

    def _checked_d(
        self, parameter: TracedParameter, theta: list[float], d: list[float], theta_next: list[float], lr: float
    ) -> list[float]:
        """The recomputed d if ``theta - lr * d`` is theta_next within rounding, else d measured (and the switch noted)."""
        if parameter.index not in self.measured:
            eps = _ROUNDING[parameter.tensor.dtype] * DISPLACEMENT_ULPS
            worst, worst_error = 0.0, 0.0
            for t, x, n in zip(theta, d, theta_next):
                step = lr * x
                error = abs(t - step - n)
                bound = eps * (abs(n) + abs(step))
                if error > bound and math.isfinite(error):  # a diverged (non-finite) update says nothing of d
                    ratio = error / bound if bound else math.inf
                    if ratio > worst:
                        worst, worst_error = ratio, error
            if worst == 0.0:
                return d
            self.measured.add(parameter.index)
            self.switches.append((parameter.name, worst_error, worst / DISPLACEMENT_ULPS))
        return [(t - n) / lr for t, n in zip(theta, theta_next)]


# One rounding of each floating dtype (torch.finfo costs a microsecond a call, at every update).
_ROUNDING = {dtype: torch.finfo(dtype).eps for dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64)}
