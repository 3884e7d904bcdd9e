"""Adam's update in one native pass (``steps.c``), optionally with the summaries of that update.

``adam_native`` updates every given tensor in one C call; ``native_tensors``
says which tensors it takes (float32, on the CPU, contiguous, real, dense
gradient). ``InStepSummaries`` is how a caller (the Recorder) asks the same
pass for the summary reductions of some parameters: for each, where to write
delta and which previous delta to read; the step fills ``results``. The
optimizer sees only this request, nothing of traces.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from tracer import native
from tracer.summary_kernels import REDUCTIONS


@dataclass(frozen=True)
class SummaryTarget:
    """Where a traced step writes one parameter's delta (theta_before - theta_after), and what it reads."""

    delta: Tensor  # written, float32, contiguous, the parameter's length
    previous: Tensor | None  # the previous delta, read (None: no previous)
    g_theta: float  # g = grad + g_theta * theta_before in the reductions (tracer.summary_kernels)


@dataclass
class InStepSummaries:
    """A request for the summary reductions of one update, computed inside the optimizer's pass.

    ``targets`` maps ``id(param)`` to its SummaryTarget. The step fills
    ``results[id(param)]`` (the REDUCTIONS as float64, tracer.summary_kernels)
    for each target it updated; a target it did not update (no gradient)
    gets no entry.
    """

    targets: dict[int, SummaryTarget]
    results: dict[int, np.ndarray] = field(default_factory=dict)


def native_tensors(param: Tensor, *others: Tensor | None) -> bool:
    """Whether the native pass takes ``param`` with its gradient and state ``others`` (None: absent)."""
    length = param.numel()
    for t in (param, *others):  # a loop of plain checks: this runs for every tensor at every step
        if t is not None and not (
            t.dtype is torch.float32 and t.is_cpu and not t.is_sparse and t.is_contiguous() and t.numel() == length
        ):
            return False
    return True


@dataclass(frozen=True)
class AdamScalars:
    """One tensor's Adam hyperparameters at this step, as Python floats (torch's for-loop arithmetic on them)."""

    lr: float
    beta1: float
    beta2: float
    eps: float
    weight_decay: float
    decoupled: bool
    maximize: bool
    step: float  # the step count after this update's increment


def adam_native(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    max_exp_avg_sqs: list[Tensor | None],
    scalars: list[AdamScalars],
    request: InStepSummaries | None = None,
    library=None,
) -> None:
    """Adam's update of every ``params[i]`` in one native call; the request's targets also reduced.

    Every tensor must pass ``native_tensors``. The scalars go to float32 as
    torch casts them for float32 tensors: 1 - b1 (the lerp weight), b2,
    1 - b2, sqrt(1 - b2^t), eps and -lr / (1 - b1^t). ``library``: the
    loaded kernels (``tracer.native.load``), by default ``tracer.native.library()``.
    """
    library = library if library is not None else native.library()
    if library is None:
        raise RuntimeError(f"the native Adam step cannot be built here ({native.failure()})")
    results = np.zeros((len(params), len(REDUCTIONS)), dtype=np.float64)
    row_bytes, results_address = results.strides[0], results.ctypes.data
    records = []
    traced: list[tuple[int, int]] = []  # (row, id(param))
    for row, (param, grad, exp_avg, exp_avg_sq, largest, k) in enumerate(
        zip(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, scalars)
    ):
        target = None if request is None else request.targets.get(id(param))
        weight_decay = k.weight_decay
        records.append((
            param.numel(),
            param.data_ptr(),
            exp_avg.data_ptr(),
            exp_avg_sq.data_ptr(),
            0 if largest is None else largest.data_ptr(),
            grad.data_ptr(),
            0 if target is None else target.delta.data_ptr(),
            0 if target is None or target.previous is None else target.previous.data_ptr(),
            0 if target is None else results_address + row * row_bytes,
            0.0 if target is None else target.g_theta,
            -1.0 if k.maximize else 1.0,
            1 - k.lr * weight_decay if (weight_decay != 0 and k.decoupled) else 1.0,
            weight_decay if (weight_decay != 0 and not k.decoupled) else 0.0,
            1 - k.beta1,
            k.beta2,
            1 - k.beta2,
            (1 - k.beta2**k.step) ** 0.5,
            k.eps,
            -(k.lr / (1 - k.beta1**k.step)),
        ))
        if target is not None:
            traced.append((row, id(param)))
    table = np.array(records, dtype=native.ADAM_ITEM)
    if library.tracer_adam_f32(table.ctypes.data, len(params), torch.get_num_threads()) != 0:
        raise MemoryError("the native Adam step could not allocate its task table (nothing was updated)")
    if request is not None:
        for row, key in traced:
            request.results[key] = results[row]
