"""The summary reductions in torch ops: ``reduce_eager``, the reference the native pass is tested against.

``SummaryInput`` is what one tensor's reductions read (``tracer.summaries``
defines the reductions). The eager pass takes one kernel per reduction (BLAS
dot products where the dtypes allow), about ten passes over memory; it runs
anywhere torch does.

The two passes agree within named tolerances: they sum the same products in
different orders (blocked BLAS against the native float64 lanes). A
sum of squares (all terms of one sign) agrees within ``PASSES_RTOL`` relative
(measured: 2.4e-7 on 100k float32 terms); a dot product of terms of both signs
can lose relative precision to cancellation, so it is compared against the
product of its operands' norms, ``|native - eager| <= PASSES_COSINE_ATOL * |a| |b|``
(an error of at most that much in the cosines the recorder writes).
``delta_abs_max`` and ``delta`` itself (one subtraction) are identical bit for
bit.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

PASSES_RTOL = 1e-5
"""Relative tolerance between two passes' sums of squares (float32 sums in different orders)."""
PASSES_COSINE_ATOL = 1e-5
"""Tolerance between two passes' dot products, relative to the product of the operands' norms."""


def result_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype summaries are reduced in: float64 for float64, else float32 (a squared norm overflows float16)."""
    return torch.float64 if dtype == torch.float64 else torch.float32


class SummaryInput(NamedTuple):
    """One summarised parameter tensor at one update: what its reductions read.

    A NamedTuple (immutable, and made four times faster than a frozen
    dataclass): the recorder makes one per summarised tensor at every update.

    ``snapshot`` is theta before the step (contiguous, the recorder's buffer)
    and becomes delta = theta - theta_after in place. ``g_theta`` folds weight
    decay into the gradient: g_raw = grad + g_theta * theta (0 without).
    ``grad``, ``v``, ``s`` and ``previous_delta`` are None where absent.
    """

    snapshot: Tensor
    theta_after: Tensor
    grad: Tensor | None
    g_theta: float
    v: Tensor | None
    s: Tensor | None
    previous_delta: Tensor | None


def _dot(a: Tensor, b: Tensor, dtype: torch.dtype) -> Tensor:
    """a . b (1-D) as a 0-dim tensor of ``dtype``; a dot product is BLAS, faster than vector_norm."""
    if a.dtype == dtype:
        return torch.dot(a, b)
    return torch.dot(a.to(dtype), b.to(dtype))


def _flat(tensor: Tensor) -> Tensor:
    return tensor if tensor.dim() == 1 else tensor.reshape(-1)


def _squared_norm(tensor: Tensor, dtype: torch.dtype) -> Tensor:
    """|x|^2 as a 0-dim tensor of ``dtype``."""
    if tensor.is_contiguous():
        flat = _flat(tensor)
        return _dot(flat, flat, dtype)
    return torch.linalg.vector_norm(tensor, dtype=dtype).square()


def reduce_eager(item: SummaryInput, out: Tensor) -> None:
    """Turn ``item.snapshot`` into delta in place and write the REDUCTIONS into ``out`` (9,).

    Entries whose input is None (no gradient, no v, no s, no previous delta) are left as they are.
    The reductions are collected as 0-dim tensors and written with one ``stack`` where they fill
    a prefix of ``out`` (the usual case): per tensor, ~20 fewer small torch calls than writing each
    entry through its own view, the same kernels and so the same numbers.
    """
    dtype = out.dtype
    snapshot = item.snapshot
    flat = snapshot.view(-1)
    values = [_dot(flat, flat, dtype)]  # REDUCTIONS in order, from index 0
    later: list[tuple[int, Tensor]] = []  # those after a gap (an absent input)
    g = None
    if item.grad is not None and item.g_theta != 0:
        g = torch.add(item.grad, snapshot, alpha=item.g_theta).reshape(-1)
    snapshot.sub_(item.theta_after)
    values.append(_dot(flat, flat, dtype))
    if item.grad is not None:
        if g is None:
            g = _flat(item.grad)
        # aminmax is one vectorised pass; vector_norm(inf) measured twice as slow here. A NaN propagates through both.
        low, high = torch.aminmax(flat)
        values += [torch.maximum(high, low.neg()).to(dtype), _dot(g, flat, dtype), _dot(g, g, dtype)]
        if item.previous_delta is not None:
            previous = item.previous_delta.view(-1)
            values += [_dot(previous, flat, dtype), _dot(previous, previous, dtype)]
        for index, moment in ((7, item.v), (8, item.s)):
            if moment is None:
                continue
            norm = _squared_norm(moment, dtype)
            if index == len(values):
                values.append(norm)
            else:
                later.append((index, norm))
    torch.stack(values, out=out[: len(values)])
    for index, value in later:
        out[index].copy_(value)
