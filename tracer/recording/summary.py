"""Summary granularity: per parameter tensor, norms, largest |d| and cosines, with d measured from the displacement.

Summaries do not repeat the optimizer's arithmetic (full granularity does):
the snapshot of theta taken before the step becomes, in place,
``delta = theta - theta_next``, and ``d = delta / lr`` by definition
(``theta_next = theta - lr * d``), exact up to one rounding. So
``displacement = |delta|``, ``d_norm = |delta| / lr``, ``d_max = max|delta| /
lr``, and the cosines are those of delta. With lr = 0 the step does not move
theta and d cannot be measured: its cells are empty.

The reductions of one update are one call, ``reduce_eager`` (the seam where
a fused pass plugs in: ``SummaryReducer.reduce``); they write into slots of
one results buffer per device and dtype, read back with one tolist(): one
device sync per update. The previous delta is kept by swapping two buffers,
never copied. benchmarks/bench_recorder.py measures what this costs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Callable, Mapping, Sequence

import torch
from torch import Tensor

from tracer.families import Family
from tracer.probes import gradient_convention, state_tensor
from tracer.recording.selection import TracedParameter
from tracer.trace import SUMMARY_QUANTITIES


@dataclass(frozen=True)
class ReductionSlots:
    """One summarised parameter's places in a results buffer: 0-dim views, written with ``out=``.

    ``delta = theta_before - theta_next``; ``g`` is the gradient the
    optimizer used times its sign (``grad + sign * weight_decay * theta``).
    """

    theta_sq: Tensor  # |theta_before|^2
    delta_sq: Tensor  # |delta|^2
    delta_min: Tensor
    delta_max: Tensor
    g_dot_delta: Tensor
    g_sq: Tensor  # |g|^2
    previous_dot_delta: Tensor  # previous delta . delta
    v_sq: Tensor
    s_sq: Tensor


REDUCTIONS = tuple(field.name for field in fields(ReductionSlots))


@dataclass(frozen=True)
class Reductions:
    """The numbers of ReductionSlots read back as floats (fields as there)."""

    theta_sq: float
    delta_sq: float
    delta_min: float
    delta_max: float
    g_dot_delta: float
    g_sq: float
    previous_dot_delta: float
    v_sq: float
    s_sq: float


@dataclass(frozen=True)
class ReductionInput:
    """What one summarised parameter's reductions read at one update.

    ``theta_before`` is the snapshot taken before the step; the reduction
    overwrites it with ``delta = theta_before - theta_next`` (the same
    memory, so no third buffer per parameter). Without a gradient (``grad``
    None) only ``delta_sq`` is reduced; ``v``, ``s`` and ``previous_delta``
    are None where absent, and their slots are left as they were.
    """

    theta_before: Tensor
    theta_next: Tensor
    grad: Tensor | None
    grad_decay: float  # g (times its sign) = grad + grad_decay * theta_before
    v: Tensor | None
    s: Tensor | None
    previous_delta: Tensor | None
    slots: ReductionSlots


@dataclass(frozen=True)
class Summary:
    """One summarised parameter's trace cells at one update (fields as ``SUMMARY_QUANTITIES``); None: empty cell."""

    theta_norm: float
    g_norm: float | None
    v_norm: float | None
    s_norm: float | None
    d_norm: float | None
    displacement: float
    d_max: float | None
    cos_d_prev: float | None
    cos_g_d: float | None

    def cells(self) -> list[float | None]:
        return [getattr(self, quantity) for quantity in SUMMARY_QUANTITIES]


assert tuple(field.name for field in fields(Summary)) == SUMMARY_QUANTITIES


def result_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype summaries are reduced in: float64 for float64, else float32 (a squared norm overflows float16)."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _dot(a: Tensor, b: Tensor, out: Tensor) -> None:
    """a . b (1-D) into the 0-dim ``out``; a dot product is BLAS, faster than vector_norm."""
    if a.dtype == out.dtype:
        torch.dot(a, b, out=out)
    else:
        out.copy_(torch.dot(a.to(out.dtype), b.to(out.dtype)))


def _aminmax(a: Tensor, low: Tensor, high: Tensor) -> None:
    if a.dtype == low.dtype:
        torch.aminmax(a, out=(low, high))
    else:
        low.copy_(a.min())
        high.copy_(a.max())


def _squared_norm(tensor: Tensor, out: Tensor) -> None:
    """|x|^2 into the 0-dim ``out``."""
    if tensor.is_contiguous():
        flat = tensor if tensor.dim() == 1 else tensor.view(-1)
        _dot(flat, flat, out)
    else:
        out.copy_(torch.linalg.vector_norm(tensor, dtype=out.dtype).square())


def _flat(tensor: Tensor) -> Tensor:
    return tensor if tensor.dim() == 1 else tensor.reshape(-1)


def reduce_eager(inputs: Sequence[ReductionInput]) -> None:
    """The reductions of one update, tensor by tensor, with eager torch ops (about ten kernels per tensor)."""
    for item in inputs:
        slots = item.slots
        g = None
        if item.grad is not None and item.grad_decay != 0:
            g = _flat(torch.add(item.grad, item.theta_before, alpha=item.grad_decay))
        delta = item.theta_before.sub_(item.theta_next).view(-1)
        _dot(delta, delta, slots.delta_sq)
        if item.grad is None:
            continue
        if g is None:
            g = _flat(item.grad)
        _aminmax(delta, slots.delta_min, slots.delta_max)
        _dot(g, delta, slots.g_dot_delta)
        _dot(g, g, slots.g_sq)
        if item.previous_delta is not None:
            _dot(item.previous_delta.view(-1), delta, slots.previous_dot_delta)
        if item.v is not None:
            _squared_norm(item.v, slots.v_sq)
        if item.s is not None:
            _squared_norm(item.s, slots.s_sq)


def _cosine(dot: float, norm_a: float | None, norm_b: float | None) -> float | None:
    """dot / (|a| |b|), clamped to [-1, 1]: the dot product and the norms are
    reduced separately in the parameters' dtype, so parallel vectors can come
    out a few ulp beyond 1, which no reader should see."""
    if not norm_a or not norm_b or not math.isfinite(norm_a * norm_b):
        return None
    return min(1.0, max(-1.0, dot / (norm_a * norm_b)))


@dataclass(eq=False)
class _Buffers:
    """One summarised parameter's two buffers, swapped after every update that measures d."""

    parameter: TracedParameter
    slots: ReductionSlots
    snapshot: Tensor  # theta before the step (``SummaryReducer.snapshot``); delta after the reduction
    previous_delta: Tensor  # the last measured update's delta
    previous_delta_norm: float | None = None  # None: no delta measured yet


@dataclass(frozen=True)
class _Pending:
    """What one update's reduction of one parameter needs afterwards to make its Summary."""

    buffers: _Buffers
    slot_key: tuple[torch.device, torch.dtype]
    lr: float
    sign: float
    has_grad: bool
    has_previous: bool
    has_v: bool
    has_s: bool


class SummaryReducer:
    """Per-tensor summaries of a Recorder's summarised parameters at each update.

    ``reduce`` is the one call that does the reductions of an update; it
    defaults to ``reduce_eager`` and may be replaced by a faster pass that
    fills the same slots.
    """

    reduce: Callable[[Sequence[ReductionInput]], None] = staticmethod(reduce_eager)

    def __init__(self, parameters: Sequence[TracedParameter], groups: int) -> None:
        summarized = [p for p in parameters if p.summarized]
        self._by_group = [[p for p in summarized if p.group == g] for g in range(groups)]
        counts: dict[tuple[torch.device, torch.dtype], int] = {}
        for p in summarized:
            key = (p.tensor.device, result_dtype(p.tensor.dtype))
            counts[key] = counts.get(key, 0) + len(REDUCTIONS)
        self._results = {key: torch.zeros(count, dtype=key[1], device=key[0]) for key, count in counts.items()}
        free = {key: iter(buffer.unbind()) for key, buffer in self._results.items()}
        self._buffers: dict[int, _Buffers] = {}
        for p in summarized:
            taken = free[(p.tensor.device, result_dtype(p.tensor.dtype))]
            snapshot = torch.empty_like(p.tensor, memory_format=torch.contiguous_format)
            slots = ReductionSlots(*(next(taken) for _ in REDUCTIONS))
            self._buffers[p.index] = _Buffers(p, slots, snapshot, torch.empty_like(snapshot))

    def snapshot(self) -> None:
        """Copy theta before the step and reduce |theta| (the pre-step hook)."""
        for buffers in self._buffers.values():
            buffers.snapshot.copy_(buffers.parameter.tensor)
            flat = buffers.snapshot.view(-1)
            _dot(flat, flat, buffers.slots.theta_sq)

    def snapshots(self) -> dict[int, Tensor]:
        """theta before the step per summarised parameter (by index); valid until ``summarize``."""
        return {index: buffers.snapshot for index, buffers in self._buffers.items()}

    def summarize(
        self, optimizer: torch.optim.Optimizer, family: Family, lrs: Sequence[float]
    ) -> tuple[dict[int, Summary], bool]:
        """Per summarised parameter (by index), its Summary of the update just made; and whether all are finite."""
        inputs: list[ReductionInput] = []
        pending: list[_Pending] = []
        for group, members, lr in zip(optimizer.param_groups, self._by_group, lrs):
            if not members:
                continue
            sign, weight_decay = gradient_convention(group)
            v_key, s_key = family.moment_keys(group)
            for parameter in members:
                buffers = self._buffers[parameter.index]
                grad = parameter.tensor.grad
                has_grad = grad is not None
                if has_grad and grad.is_sparse:  # SparseAdam's
                    grad = grad.to_dense()
                has_previous = has_grad and buffers.previous_delta_norm is not None
                state = optimizer.state[parameter.tensor] if has_grad else {}
                v = state_tensor(state, v_key) if has_grad and v_key is not None else None
                s = state_tensor(state, s_key) if has_grad and s_key is not None else None
                inputs.append(
                    ReductionInput(
                        theta_before=buffers.snapshot,
                        theta_next=parameter.tensor,
                        grad=grad,
                        grad_decay=sign * weight_decay,
                        v=v,
                        s=s,
                        previous_delta=buffers.previous_delta if has_previous else None,
                        slots=buffers.slots,
                    )
                )
                key = (parameter.tensor.device, result_dtype(parameter.tensor.dtype))
                pending.append(_Pending(buffers, key, lr, sign, has_grad, has_previous, v is not None, s is not None))
        self.reduce(inputs)
        # One device-to-host read per results buffer (one in all but mixed-dtype or multi-device models).
        numbers = {key: buffer.tolist() for key, buffer in self._results.items()}
        offsets = {key: 0 for key in numbers}
        out: dict[int, Summary] = {}
        finite = True
        for item in pending:
            start = offsets[item.slot_key]
            offsets[item.slot_key] = start + len(REDUCTIONS)
            reductions = Reductions(*numbers[item.slot_key][start : start + len(REDUCTIONS)])
            summary, item_finite = self._summary(item, reductions)
            out[item.buffers.parameter.index] = summary
            finite = finite and item_finite
        return out, finite

    @staticmethod
    def _summary(item: _Pending, r: Reductions) -> tuple[Summary, bool]:
        """The Summary of one parameter from its reductions; swaps its buffers when d was measured."""
        theta_norm = math.sqrt(r.theta_sq)
        displacement = math.sqrt(r.delta_sq)
        empty = Summary(theta_norm, None, None, None, None, displacement, None, None, None)
        if not item.has_grad:
            return empty, math.isfinite(theta_norm)
        g_norm = math.sqrt(r.g_sq)
        v_norm = math.sqrt(r.v_sq) if item.has_v else None
        s_norm = math.sqrt(r.s_sq) if item.has_s else None
        finite = math.isfinite(theta_norm) and all(
            math.isfinite(x) for x in (g_norm, v_norm, s_norm) if x is not None
        )
        lr = item.lr
        if not lr > 0:
            return Summary(theta_norm, g_norm, v_norm, s_norm, None, displacement, None, None, None), finite
        low, high = r.delta_min, r.delta_max
        d_max = (high if high >= -low else -low) / lr if low == low and high == high else math.nan
        buffers = item.buffers
        cos_d_prev = _cosine(r.previous_dot_delta, displacement, buffers.previous_delta_norm) if item.has_previous else None
        # d points along delta, so cos(g, d) = cos(g, delta).
        cos_g_d = _cosine(item.sign * r.g_dot_delta, g_norm, displacement)
        buffers.snapshot, buffers.previous_delta = buffers.previous_delta, buffers.snapshot
        buffers.previous_delta_norm = displacement
        return Summary(theta_norm, g_norm, v_norm, s_norm, displacement / lr, displacement, d_max, cos_d_prev, cos_g_d), finite
