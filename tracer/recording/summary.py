"""Summary granularity: per parameter tensor, norms, largest |d| and cosines, with d measured from the displacement.

Summaries do not repeat the optimizer's arithmetic (full granularity does):
the snapshot of theta taken before the step becomes, in place,
``delta = theta - theta_next``, and ``d = delta / lr`` by definition
(``theta_next = theta - lr * d``), exact up to one rounding. So
``displacement = |delta|``, ``d_norm = |delta| / lr``, ``d_max = max|delta| /
lr``, and the cosines are those of delta. With lr = 0 the step does not move
theta and d cannot be measured: its cells are empty.

The reductions of one update (``tracer.summaries`` declares them) are one call of a pass
(native or eager); they land in
one results buffer per device and dtype. ``reduce`` launches them and a copy
of the results into host memory (pinned and non-blocking on an accelerator,
so the step path never waits for the device) and returns PendingSummaries;
``PendingSummaries.read`` makes the Summaries once the copy is done. The
previous delta is kept by swapping two buffers, never copied; the swap
depends on host facts only (gradient present, lr > 0), so it happens at once.

Under torch.distributed a ``Sharding`` (``tracer.recording.sharding``)
says which piece of each tensor this rank reduces (none: its row stays at
the identities, zeros) and combines the ranks' partial reductions with one
all-gather per update; that read is synchronous.

Inside the optimizer: with the native pass, a fused ``tracer.optim`` optimizer
computes the reductions of the tensors its native pass updates inside that
pass (``snapshot(optimizer, lrs)`` sets its ``step_tap`` to an ``InStepSummaries``:
the previous delta is read from its buffer and this delta written over it).
No snapshot is taken for them and no pass runs after the step; the numbers
are the native pass's, bit for bit (the same C reductions of the same values).

``cos_d_prev`` is the cosine between this update's d and the tensor's d at
the update before. Recording every update, that is the last update that
moved the tensor. Recording every k-th update (``Recorder(every=k)``), the
update just before each recorded one is *measured* but not reduced
(``measure_previous``: the snapshot before it and one subtraction after it,
no reduction, no row), so ``cos_d_prev`` still compares with the previous
update; it is empty when that update did not move the tensor (no gradient,
lr = 0).

Memory: a summarised tensor holds two buffers of its size and dtype, the
snapshot and the previous delta (8 bytes per float32 parameter, 4 per
bfloat16 one), for the whole run. ``keep_previous=False``
(``Recorder(cos_d_prev=False)``) holds the snapshot only, half of that: no
previous delta is kept, so ``cos_d_prev`` is empty in every row; every other
cell is the same, bit for bit. The optimizer's in-step pass (which writes
delta over the previous delta) is not used then.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from tracer.families import Family
from tracer.native.steps import NativeOutputs
from tracer.probes import gradient_convention, state_tensor
from tracer.recording.sharding import WHOLE, Sharding
from tracer.recording.selection import TracedParameter
from tracer.summaries import REDUCTIONS
from tracer.summaries.cells import Reduced, Summary, summarize
from tracer.summaries.eager import SummaryInput, reduce_eager, result_dtype
from tracer.summaries.native import NativeReducer

@dataclass(eq=False)
class _Buffers:
    """One summarised parameter's two buffers, swapped after every update that measures d."""

    parameter: TracedParameter
    key: tuple[torch.device, torch.dtype]  # its results buffer
    row: int  # its row there
    snapshot: Tensor | None  # theta before the step (``SummaryReducer.snapshot``); delta after the reduction
    previous_delta: Tensor | None  # the last measured update's delta
    held: bool = True  # this rank reduces a piece of the parameter (always in one process)
    has_previous: bool = False  # previous_delta holds a measured delta


@dataclass
class InStepSummaries:
    """The Recorder's ``tracer.native.steps.StepTap``: one step's request for summaries computed inside a fused step.

    ``outputs`` maps ``id(param)`` to where the native pass writes delta and
    the reductions; the step lists every tensor it updated natively in
    ``reduced``. A tensor it updates another way is first copied into its
    ``theta_before`` buffer (the snapshot) and listed in ``copied``, so that
    it is reduced after the step as usual; a tensor not updated (no
    gradient) is in neither.
    """

    outputs: dict[int, NativeOutputs]
    theta_before: dict[int, Tensor]
    reduced: set[int] = field(default_factory=set)
    copied: set[int] = field(default_factory=set)

    def before_update(self, param: Tensor) -> None:
        """Before ``param`` is updated outside the native pass: theta into its snapshot, if it is asked for."""
        buffer = self.theta_before.get(id(param))
        if buffer is not None:
            buffer.copy_(param)
            self.copied.add(id(param))

    def updated_natively(self, params: Sequence[Tensor]) -> None:
        outputs = self.outputs
        self.reduced.update(key for key in map(id, params) if key in outputs)


def _same_shape(moment, parameter: Tensor) -> bool:
    return isinstance(moment, Tensor) and moment.shape == parameter.shape


class SummaryReducer:
    """Per-tensor summaries of a Recorder's summarised parameters at each recorded update.

    ``summary_pass``: "native" or "eager", the implementation of
    the reductions (``tracer.summaries``; a Recorder resolves "auto").
    ``sharding`` says what this rank reduces of each tensor under
    torch.distributed; by default every tensor is whole and local.
    ``keep_previous``: keep each tensor's previous delta for ``cos_d_prev``
    (False: half the buffers, ``cos_d_prev`` empty).
    """

    def __init__(
        self, parameters: Sequence[TracedParameter], groups: int, sharding: Sharding = WHOLE, summary_pass: str = "eager",
        keep_previous: bool = True,
    ) -> None:
        summarized = [p for p in parameters if p.summarized]
        self._by_group = [[p for p in summarized if p.group == g] for g in range(groups)]
        self._sharding = sharding
        self._keep_previous = keep_previous
        self._pass = summary_pass
        self._native = NativeReducer() if summary_pass == "native" else None
        counts: dict[tuple[torch.device, torch.dtype], int] = {}
        self._buffers: dict[int, _Buffers] = {}
        for p in summarized:
            key = (p.tensor.device, result_dtype(p.tensor.dtype))
            row = counts.get(key, 0)
            counts[key] = row + 1
            piece = sharding.piece(p.tensor)
            if piece is None:  # held by another rank: this row stays at the identities (zeros)
                self._buffers[p.index] = _Buffers(p, key, row, None, None, held=False)
                continue
            snapshot = torch.empty_like(piece, memory_format=torch.contiguous_format)
            # zeros, not empty: a pass reads the previous delta before one exists (and ignores the result).
            previous = torch.zeros_like(snapshot) if keep_previous else None
            self._buffers[p.index] = _Buffers(p, key, row, snapshot, previous)
        self._results = {key: torch.zeros(count, len(REDUCTIONS), dtype=key[1], device=key[0]) for key, count in counts.items()}
        # Where an optimizer's native pass writes its float64 reductions (one row per parameter, as _results).
        self._staging = {key: np.zeros((count, len(REDUCTIONS))) for key, count in counts.items()}
        # Two host copies per results buffer, used in turn: a row waits at most one update for its copy.
        self._host = [
            {key: torch.zeros(buffer.shape, dtype=buffer.dtype, pin_memory=key[0].type == "cuda") for key, buffer in self._results.items()}
            for _ in range(2)
        ]
        self._turn = 0
        self._held = [b for b in self._buffers.values() if b.held]
        # The optimizer's pass may reduce whole, purely summarised tensors (a partly full one's
        # snapshot is read by the full reader as theta before the step): per group, each one's
        # id, buffers and staging row address, found once.
        self._in_step = summary_pass == "native" and sharding is WHOLE and keep_previous
        self._in_step_members = [
            [(id(p.tensor), self._buffers[p.index], self._staging_row_address(self._buffers[p.index])) for p in members if not p.full]
            for members in self._by_group
        ]
        self._request: InStepSummaries | None = None

    def _staging_row_address(self, buffers: _Buffers) -> int:
        """Where the optimizer's pass writes this parameter's reductions (numpy's ctypes.data costs 1.7 us: taken once)."""
        staging = self._staging[buffers.key]
        return staging.ctypes.data + buffers.row * staging.strides[0]

    @property
    def summary_pass(self) -> str:
        """The pass in use: "native" or "eager"."""
        return self._pass

    def snapshot(self, optimizer: torch.optim.Optimizer | None = None, lrs: Sequence[float] = ()) -> None:
        """Before the step (the pre-step hook): theta of every tensor copied, all in one call.

        Given the optimizer of a recorded update and its groups' learning
        rates, a fused ``tracer.optim.Adam`` is asked to reduce the tensors its
        native pass takes inside that pass instead; only the others are copied.
        """
        if not self._buffers:  # nothing summarised (full granularity)
            return
        held = self._held
        self._request = self._ask_in_step(optimizer, lrs) if optimizer is not None and self._in_step else None
        if self._request is not None:
            held = [b for b in held if id(b.parameter.tensor) not in self._request.outputs]
        if not held:
            return
        snapshots, thetas = [b.snapshot for b in held], [self._sharding.piece(b.parameter.tensor) for b in held]
        if self._native is not None:  # streaming stores where it can: a third less memory traffic
            self._native.copy(snapshots, thetas)
        else:
            torch._foreach_copy_(snapshots, thetas)

    def _ask_in_step(self, optimizer: torch.optim.Optimizer, lrs: Sequence[float]) -> InStepSummaries | None:
        """Set the optimizer's ``step_tap`` for this step, if it computes any of the summaries itself.

        Such an optimizer (tracer.optim's Adam, AdamW, SGD and RMSprop) has a ``step_tap``; every purely
        summarised tensor of its fused groups is asked for: the step reduces it in its native pass, or
        keeps theta before updating it another way (into the snapshot), or leaves it alone (InStepSummaries).

        Where lr > 0 the pass writes delta over the previous delta, in place (the next update's previous
        one: nothing to swap); with lr = 0 d is not measured and the previous delta must outlive this
        update, so delta goes to the snapshot buffer instead.
        """
        if not hasattr(optimizer, "step_tap"):
            return None
        outputs: dict[int, NativeOutputs] = {}
        theta_before: dict[int, Tensor] = {}
        for group, members, lr in zip(optimizer.param_groups, self._in_step_members, lrs):
            if not group.get("fused"):
                continue
            sign, weight_decay = gradient_convention(group)
            g_theta = sign * weight_decay
            for key, buffers, results in members:
                previous = buffers.previous_delta
                outputs[key] = NativeOutputs(previous if lr > 0 else buffers.snapshot, previous, g_theta, results)
                theta_before[key] = buffers.snapshot
        if not outputs:
            return None
        optimizer.step_tap = request = InStepSummaries(outputs, theta_before)
        return request

    def snapshots(self) -> dict[int, Tensor]:
        """theta before the step per summarised parameter (by index); valid until ``reduce``."""
        return {index: buffers.snapshot for index, buffers in self._buffers.items() if buffers.held}

    def measure_previous(self, lrs: Sequence[float]) -> None:
        """After an update that is not recorded but precedes a recorded one: keep its delta, reduce nothing."""
        for group_members, lr in zip(self._by_group, lrs):
            for parameter in group_members:
                buffers = self._buffers[parameter.index]
                buffers.has_previous = parameter.tensor.grad is not None and lr > 0 and self._keep_previous
                if buffers.has_previous and buffers.held:
                    buffers.snapshot.sub_(self._sharding.piece(parameter.tensor))
                    buffers.snapshot, buffers.previous_delta = buffers.previous_delta, buffers.snapshot

    def forget_previous(self) -> None:
        """After an update that is neither recorded nor measured: no tensor has a previous delta any more."""
        for buffers in self._buffers.values():
            buffers.has_previous = False

    def reduce(self, optimizer: torch.optim.Optimizer, family: Family, lrs: Sequence[float]) -> "PendingSummaries":
        """Launch the reductions of the update just made and their copy to the host; read them with ``read()``."""
        if not self._buffers:  # nothing summarised (full granularity): nothing to launch or copy
            return PendingSummaries({}, None, [])
        # Per results buffer: (its row, what that row's reductions read), for the tensors this rank holds.
        inputs: dict[tuple[torch.device, torch.dtype], list[tuple[int, SummaryInput]]] = {key: [] for key in self._results}
        pending: list[Reduced] = []
        in_step: dict[tuple[torch.device, torch.dtype], list[int]] = {}  # rows the optimizer reduced, per results buffer
        piece, request = self._sharding.piece, self._request
        for group, members, lr in zip(optimizer.param_groups, self._by_group, lrs):
            if not members:
                continue
            sign, weight_decay = gradient_convention(family.gradient_options(group))
            v_key, s_key = family.moment_keys(group)
            for parameter in members:
                buffers = self._buffers[parameter.index]
                grad = parameter.tensor.grad
                has_grad = grad is not None
                if has_grad and grad.is_sparse:  # SparseAdam's
                    grad = grad.to_dense()
                has_previous = has_grad and buffers.has_previous
                # v and s are in the trace wherever the family keeps them; under ZeRO their owner reduces them.
                has_v, has_s = has_grad and v_key is not None, has_grad and s_key is not None
                if family.moments_optional and (has_v or has_s):
                    # A parameter whose state lacks the key, or holds it in another shape (a factor), has none.
                    moments = self._sharding.state(optimizer, parameter.tensor) or {}
                    has_v = has_v and _same_shape(moments.get(v_key), parameter.tensor)
                    has_s = has_s and _same_shape(moments.get(s_key), parameter.tensor)
                pending.append(
                    Reduced(parameter.index, buffers.key, buffers.row, lr, sign, has_grad, has_previous, has_v, has_s)
                )
                if has_grad and lr > 0 and self._keep_previous:  # d measured: the next one's previous
                    buffers.has_previous = True
                if not buffers.held:
                    continue
                if request is not None and self._taken_in_step(parameter, buffers):
                    # Its delta is already where the next update reads it: over the previous one where lr > 0.
                    in_step.setdefault(buffers.key, []).append(buffers.row)
                    continue
                state = self._sharding.state(optimizer, parameter.tensor) if has_grad else None
                v = piece(state_tensor(state, v_key)) if has_v and state is not None else None
                s = piece(state_tensor(state, s_key)) if has_s and state is not None else None
                # Positional, in SummaryInput's order (snapshot, theta_after, grad, g_theta, v, s, previous_delta).
                # The previous delta is always the buffer (zeros before a first delta), read and ignored without
                # has_previous: one input layout for every update.
                summary_input = SummaryInput(
                    buffers.snapshot, piece(parameter.tensor), piece(grad) if has_grad else None, sign * weight_decay,
                    v, s, buffers.previous_delta,
                )
                inputs[buffers.key].append((buffers.row, summary_input))
                if has_grad and lr > 0 and self._keep_previous:
                    buffers.snapshot, buffers.previous_delta = buffers.previous_delta, buffers.snapshot
        if in_step:  # first: a whole buffer's staging may be copied, and the other rows are reduced over it below
            self._store_in_step(in_step)
        for key, items in inputs.items():
            rows = self._results[key]
            if self._native is not None:
                self._native(items, rows)
            else:
                for row, item in items:
                    reduce_eager(item, rows[row])
        self._request = None
        if self._sharding is not WHOLE:
            # Across ranks: one all-gather of every buffer's partials, read at once.
            return PendingSummaries(None, None, pending, self._sharding.read(self._results, REDUCTIONS))
        host = self._host[self._turn]
        self._turn = 1 - self._turn
        event = None
        for key, buffer in self._results.items():
            host[key].copy_(buffer, non_blocking=True)
            if key[0].type == "cuda":
                event = torch.cuda.Event()
                event.record()
        return PendingSummaries(host, event, pending)

    def _taken_in_step(self, parameter: TracedParameter, buffers: _Buffers) -> bool:
        """Whether the optimizer's pass reduced this parameter at this step (into its staging row); if not, reduce it here.

        Asked for but neither reduced nor copied by the step (not updated: no
        gradient), theta did not move: it is copied now and reduced like the
        others (delta = 0). Copied by the step, its snapshot is in place.
        Called while this step's request is set.
        """
        request = self._request
        key = id(parameter.tensor)
        if key not in request.outputs:
            return False
        if key in request.reduced:
            return True
        if key not in request.copied:
            buffers.snapshot.copy_(parameter.tensor)
        return False

    def _store_in_step(self, in_step: dict[tuple[torch.device, torch.dtype], list[int]]) -> None:
        """The optimizer's float64 reductions into the results buffers, rounded as the native pass rounds them."""
        for key, rows in in_step.items():
            staging, results = torch.from_numpy(self._staging[key]), self._results[key]
            if len(rows) == len(results):  # every row: one copy
                results.copy_(staging)
            else:
                results[rows] = staging[rows].to(results.dtype)


@dataclass
class PendingSummaries:
    """One update's reductions on their way to the host: ``ready()`` once copied, then ``read()``."""

    host: dict[tuple[torch.device, torch.dtype], Tensor]
    event: "torch.cuda.Event | None"  # recorded after the copies on an accelerator; None on a CPU
    items: list[Reduced]
    numbers: dict[tuple[torch.device, torch.dtype], list[float]] | None = None  # read already (flat, row-major)

    def ready(self) -> bool:
        """Whether the copy to the host is done (it is at once on a CPU); never waits."""
        return self.event is None or self.event.query()

    def read(self) -> tuple[dict[int, Summary], bool]:
        """Per summarised parameter (by index), its Summary; and whether all are finite. Waits for the copy if needed."""
        if not self.items:  # nothing summarised (full granularity): no table to build
            return {}, True
        if self.numbers is None and self.event is not None:
            self.event.synchronize()
        # Each item's reductions gathered into one float64 table, row i for items[i] (float32 results are exact in it).
        table = np.empty((len(self.items), len(REDUCTIONS)))
        keys = [item.key for item in self.items]
        rows = np.array([item.row for item in self.items], dtype=np.int64)
        distinct = dict.fromkeys(keys)
        for key in distinct:
            if self.numbers is not None:
                buffer = np.asarray(self.numbers[key], dtype=np.float64).reshape(-1, len(REDUCTIONS))
            else:
                buffer = self.host[key].numpy()
            if len(distinct) == 1:  # the usual case: one dtype and device, every item's row in this buffer
                table[:] = buffer[rows]
                break
            mine = np.array([k == key for k in keys], dtype=bool)
            table[mine] = buffer[rows[mine]]
        return summarize(table, self.items)
