"""The per-tensor reductions behind the summary columns, in one pass over memory.

A summarised parameter tensor needs, at each update, eight numbers (the
``REDUCTIONS``), from which its nine summary columns follow (see
``tracer.recorder``):

    theta_sq            |theta|^2 of theta before the update
    delta_sq            |delta|^2, delta = theta - theta_next (the update's displacement, lr * d)
    delta_abs_max       max |delta_i|
    g_dot_delta         g_raw . delta   (g_raw = grad + g_theta * theta; the optimizer's g is sign * g_raw)
    g_sq                |g_raw|^2
    previous_dot_delta  delta_previous . delta
    v_sq, s_sq          |v|^2, |s|^2 of the optimizer's state after the update

The inputs are the snapshot of theta taken before the step (which becomes
delta in place), theta after the step, the gradient, v, s and the previous
delta: one read of each and one write of delta is the least any summary
computed outside the optimizer can do (28 bytes per float32 parameter, plus 8
for the snapshot copy before the step, against fused Adam's 28).

Two implementations with one contract:

- ``reduce_eager``: torch ops, one kernel per reduction (BLAS dot products
  where the dtypes allow), about ten passes over memory. Always available; the
  reference the fused path is tested against.
- ``FusedReducer``: the same arithmetic written once as a torch function and
  compiled by ``torch.compile`` (inductor: one C++/OpenMP loop on CPU, one
  Triton kernel on GPU), dynamic in the tensor's length so one compilation
  serves every tensor of a model. Where compilation is not possible (no C++
  compiler, an unsupported device) it falls back to ``reduce_eager`` once,
  with a warning.

The two agree within named tolerances: they sum the same products in
different orders (blocked BLAS against inductor's vectorised cascade sums). A
sum of squares (all terms of one sign) agrees within ``FUSED_RTOL`` relative
(measured: 2.4e-7 on 100k float32 terms); a dot product of terms of both signs
can lose relative precision to cancellation, so it is compared against the
product of its operands' norms, ``|fused - eager| <= FUSED_COSINE_ATOL * |a| |b|``
(an error of at most that much in the cosines the recorder writes).
``delta_abs_max`` and ``delta`` itself (one subtraction) are identical bit for
bit.
"""

from __future__ import annotations

import warnings
from typing import Callable

import torch
from torch import Tensor

REDUCTIONS = (
    "theta_sq",
    "delta_sq",
    "delta_abs_max",
    "g_dot_delta",
    "g_sq",
    "previous_dot_delta",
    "v_sq",
    "s_sq",
)
FUSED_RTOL = 1e-5
"""Relative tolerance between fused and eager sums of squares (float32 sums in different orders)."""
FUSED_COSINE_ATOL = 1e-5
"""Tolerance between fused and eager dot products, relative to the product of the operands' norms."""


def result_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype summaries are reduced in: float64 for float64, else float32 (a squared norm overflows float16)."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _dot(a: Tensor, b: Tensor, out: Tensor) -> None:
    """a . b (1-D) into the 0-dim ``out``; a dot product is BLAS, faster than vector_norm."""
    if a.dtype == out.dtype:
        torch.dot(a, b, out=out)
    else:
        out.copy_(torch.dot(a.to(out.dtype), b.to(out.dtype)))


def _flat(tensor: Tensor) -> Tensor:
    return tensor if tensor.dim() == 1 else tensor.reshape(-1)


def reduce_eager(
    snapshot: Tensor,
    theta_after: Tensor,
    grad: Tensor | None,
    g_theta: float,
    v: Tensor | None,
    s: Tensor | None,
    previous_delta: Tensor | None,
    out: Tensor,
) -> None:
    """Turn ``snapshot`` (theta before, contiguous) into delta in place; the REDUCTIONS into ``out`` (8,).

    Entries whose input is None (no gradient, no v, no s, no previous delta) are left as they are.
    """
    flat = snapshot.view(-1)
    _dot(flat, flat, out[0])
    g = None
    if grad is not None and g_theta != 0:
        g = torch.add(grad, snapshot, alpha=g_theta).reshape(-1)
    snapshot.sub_(theta_after)
    _dot(flat, flat, out[1])
    if grad is None:
        return
    if g is None:
        g = _flat(grad)
    out[2].copy_(torch.linalg.vector_norm(flat, float("inf"), dtype=out.dtype))
    _dot(g, flat, out[3])
    _dot(g, g, out[4])
    if previous_delta is not None:
        _dot(previous_delta.view(-1), flat, out[5])
    if v is not None:
        _squared_norm(v, out[6])
    if s is not None:
        _squared_norm(s, out[7])


def _squared_norm(tensor: Tensor, out: Tensor) -> None:
    """|x|^2 into the 0-dim ``out``."""
    if tensor.is_contiguous():
        flat = _flat(tensor)
        _dot(flat, flat, out)
    else:
        out.copy_(torch.linalg.vector_norm(tensor, dtype=out.dtype).square())


def _reductions(
    snapshot: Tensor,
    theta_after: Tensor,
    grad: Tensor,
    g_theta: float,
    v: Tensor | None,
    s: Tensor | None,
    previous_delta: Tensor | None,
) -> Tensor:
    """The compiled body: every reduction of one tensor over one loop; writes delta into ``snapshot``.

    Written as whole-tensor expressions so that inductor fuses them into one
    loop (each input read once, delta stored once); the result dtype is float32
    for every parameter dtype but float64 (``result_dtype``).
    """
    wide = torch.float64 if snapshot.dtype == torch.float64 else torch.float32
    theta = snapshot.view(-1).to(wide)
    delta = theta - theta_after.reshape(-1).to(wide)
    g = grad.reshape(-1).to(wide)
    if g_theta != 0:
        g = g + g_theta * theta
    zero = theta.new_zeros(())
    results = torch.stack(
        [
            (theta * theta).sum(),
            (delta * delta).sum(),
            delta.abs().amax(),
            (g * delta).sum(),
            (g * g).sum(),
            zero if previous_delta is None else (previous_delta.reshape(-1).to(wide) * delta).sum(),
            zero if v is None else (v.reshape(-1).to(wide) * v.reshape(-1).to(wide)).sum(),
            zero if s is None else (s.reshape(-1).to(wide) * s.reshape(-1).to(wide)).sum(),
        ]
    )
    snapshot.view(-1).copy_(delta.to(snapshot.dtype))
    return results


class FusedReducer:
    """``reduce_eager``'s contract through one compiled loop per tensor; eager where compiling fails.

    ``fused`` says whether the compiled path is in use. The first call per
    combination of inputs (which of grad, v, s, previous delta are present;
    device; dtype) compiles, a few seconds on a CPU; later calls reuse it for
    tensors of any length.
    """

    def __init__(self) -> None:
        self.fused = True
        self._compiled: Callable[..., Tensor] = torch.compile(_reductions, dynamic=True, fullgraph=True)

    def __call__(
        self,
        snapshot: Tensor,
        theta_after: Tensor,
        grad: Tensor | None,
        g_theta: float,
        v: Tensor | None,
        s: Tensor | None,
        previous_delta: Tensor | None,
        out: Tensor,
    ) -> None:
        if grad is None or not self.fused:
            reduce_eager(snapshot, theta_after, grad, g_theta, v, s, previous_delta, out)
            return
        try:
            results = self._compiled(snapshot, theta_after, grad, g_theta, v, s, previous_delta)
        except Exception as error:  # no C++ compiler, an unsupported device or dtype: stay correct, get slower
            self.fused = False
            warnings.warn(
                f"the fused summary pass could not be compiled ({type(error).__name__}: {str(error)[:200]}); "
                "using the eager reductions",
                RuntimeWarning,
                stacklevel=2,
            )
            reduce_eager(snapshot, theta_after, grad, g_theta, v, s, previous_delta, out)
            return
        out.copy_(results)
