"""Adam's, SGD's and RMSprop's update in one native pass (``steps.c``), optionally with its summaries.

``adam_native``, ``sgd_native`` and ``rmsprop_native`` update every given tensor in one C call; ``native_tensors``
says which tensors it takes (float32, on the CPU, contiguous, real, dense
gradient). A ``StepTap`` is how a caller (the Recorder) asks the same pass
for what it computes anyway for some parameters (``NativeOutputs``: delta
and the summary reductions over it). The optimizer passes the tap through
and knows nothing of traces.
"""

from __future__ import annotations

from typing import Mapping, NamedTuple, Protocol, Sequence

import numpy as np
import torch
from torch import Tensor
from torch.autograd.graph import increment_version

from tracer import native


class NativeOutputs(NamedTuple):
    """Where a native step writes, for one parameter, what it computes anyway.

    ``delta`` = theta_before - theta_after (float32, contiguous, the
    parameter's length) and, at the address ``results``, the nine
    reductions of ``tracer.summaries`` over it, reading the ``previous``
    delta and g = grad + g_theta * theta_before. ``delta`` may be
    ``previous`` itself: the pass reads each chunk's previous delta before it
    writes that chunk's delta over it, which moves less memory than writing
    to a third buffer.
    """

    delta: Tensor  # written by the native pass
    previous: Tensor  # read (zeros before a first delta)
    g_theta: float  # g = grad + g_theta * theta_before in the reductions
    results: int  # the address of 9 float64s, kept alive by the tap's owner


class StepTap(Protocol):
    """What a caller may ask of one step of a fused ``tracer.optim`` optimizer (its ``step_tap``, set for one step).

    The optimizer does not know why. Its native pass writes ``outputs[id(param)]``
    for each tensor it updates that ``outputs`` names, then tells
    ``updated_natively(params)``; before it updates a tensor another way (a
    tensor the native pass does not take) it calls ``before_update(param)``.
    The Recorder's implementation is ``tracer.recording.summary.InStepSummaries``.
    """

    outputs: Mapping[int, NativeOutputs]

    def before_update(self, param: Tensor) -> None: ...

    def updated_natively(self, params: Sequence[Tensor]) -> None: ...


_FLOAT32, _STRIDED = torch.float32, torch.strided  # module constants: two attribute lookups less per tensor
_COUNTER_DTYPES = (torch.float32, torch.float64)  # the step counters count_steps counts natively


def native_tensors(param: Tensor, *others: Tensor | None) -> bool:
    """Whether the native pass takes ``param`` with its gradient and state ``others`` (None: absent)."""
    length = param.numel()
    for t in (param, *others):  # plain checks, cheapest first: this runs for every tensor at every step
        if t is not None and not (
            t.dtype is _FLOAT32 and t.layout is _STRIDED and t.is_cpu and t.is_contiguous() and t.numel() == length
        ):
            return False
    return True


def count_steps(steps: list[Tensor], library=None) -> list[float]:
    """Every ``step`` counter + 1, in place, and the new counts as Python floats.

    torch's ``_foreach_add_(steps, 1)`` then ``step.item()`` of each, the same
    bits, in one native call where every counter is a one-element float32 or
    float64 CPU tensor (torch's non-capturable counters, and ours); torch's
    calls otherwise. The native call takes about a tenth of their time (1.8 us
    a tensor), which adds up over a model's tensors at every step.
    """
    library = _library(library)
    addresses, doubles = [], []
    for step in steps:
        dtype = step.dtype
        if not (step.is_cpu and step.layout is _STRIDED and step.numel() == 1 and dtype in _COUNTER_DTYPES):
            torch._foreach_add_(steps, 1)
            return [step.item() for step in steps]
        addresses.append(step.data_ptr())
        doubles.append(dtype is torch.float64)
    values = np.empty(len(steps))
    library.tracer_count_steps(
        np.array(addresses, dtype=np.uint64).ctypes.data, np.array(doubles, dtype=np.uint8).ctypes.data, len(steps), values.ctypes.data
    )
    increment_version(steps)  # as torch's in-place add marks them changed (5 us for 100 tensors)
    return values.tolist()


# NativeOutputs and the *Scalars are made per tensor at every step: NamedTuples, immutable and quick to build.


class AdamScalars(NamedTuple):
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
    tap: StepTap | None = None,
    library=None,
) -> None:
    """Adam's update of every ``params[i]`` in one native call; the tap's outputs also written.

    Every tensor must pass ``native_tensors``. The scalars go to float32 as
    torch casts them for float32 tensors: 1 - b1 (the lerp weight), b2,
    1 - b2, sqrt(1 - b2^t), eps and -lr / (1 - b1^t). ``library``: the
    loaded kernels (``tracer.native.load``), by default ``tracer.native.library()``.
    """
    library = _library(library)
    fields_of: dict[int, tuple] = {}  # per AdamScalars object: a batch shares one per group and step count
    records = []
    for param, grad, exp_avg, exp_avg_sq, largest, k in zip(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, scalars):
        fields = fields_of.get(id(k))
        if fields is None:
            fields = fields_of[id(k)] = _adam_fields(k)
        records.append((
            param.numel(),
            param.data_ptr(),
            exp_avg.data_ptr(),
            exp_avg_sq.data_ptr(),
            0 if largest is None else largest.data_ptr(),
            grad.data_ptr(),
            *_traced_fields(tap, param),
            *fields,
        ))
    _run(library.tracer_adam_f32, np.array(records, dtype=native.ADAM_ITEM), params, tap)


def _adam_fields(k: AdamScalars) -> tuple[float, ...]:
    """An Adam item's scalar fields, sign to neg_step_size, from one tensor's hyperparameters."""
    weight_decay = k.weight_decay
    return (
        -1.0 if k.maximize else 1.0,
        1 - k.lr * weight_decay if (weight_decay != 0 and k.decoupled) else 1.0,
        weight_decay if (weight_decay != 0 and not k.decoupled) else 0.0,
        1 - k.beta1,
        k.beta2,
        1 - k.beta2,
        (1 - k.beta2**k.step) ** 0.5,
        k.eps,
        -(k.lr / (1 - k.beta1**k.step)),
    )


class SgdScalars(NamedTuple):
    """One tensor's SGD hyperparameters at this step, as Python floats."""

    lr: float
    momentum: float
    dampening: float
    weight_decay: float
    nesterov: bool
    maximize: bool


def sgd_native(
    params: list[Tensor],
    grads: list[Tensor],
    buffers: list[Tensor | None],
    first: list[bool],
    scalars: list[SgdScalars],
    tap: StepTap | None = None,
    library=None,
) -> None:
    """SGD's update of every ``params[i]`` in one native call; the tap's outputs also written.

    ``buffers[i]``: the momentum buffer (None without momentum); where
    ``first[i]`` it is new and becomes g. Every tensor must pass
    ``native_tensors``. The scalars go to float32 as torch casts them:
    weight_decay, momentum, 1 - dampening and -lr.
    """
    library = _library(library)
    records = []
    for param, grad, buffer, new, k in zip(params, grads, buffers, first, scalars):
        records.append((
            param.numel(),
            param.data_ptr(),
            0 if buffer is None else buffer.data_ptr(),
            grad.data_ptr(),
            *_traced_fields(tap, param),
            -1.0 if k.maximize else 1.0,
            k.weight_decay,
            k.momentum,
            1 - k.dampening,
            -k.lr,
            int(new),
            int(k.nesterov),
        ))
    _run(library.tracer_sgd_f32, np.array(records, dtype=native.SGD_ITEM), params, tap)


class RmspropScalars(NamedTuple):
    """One tensor's RMSprop hyperparameters at this step, as Python floats."""

    lr: float
    alpha: float
    eps: float
    weight_decay: float
    momentum: float
    maximize: bool


def rmsprop_native(
    params: list[Tensor],
    grads: list[Tensor],
    square_avgs: list[Tensor],
    grad_avgs: list[Tensor | None],
    buffers: list[Tensor | None],
    scalars: list[RmspropScalars],
    tap: StepTap | None = None,
    library=None,
) -> None:
    """RMSprop's update of every ``params[i]`` in one native call; the tap's outputs also written.

    ``grad_avgs[i]``: the centered average (None: not centered);
    ``buffers[i]``: the momentum buffer (None without momentum). Every
    tensor must pass ``native_tensors``. The scalars go to float32 as torch
    casts them: weight_decay, alpha, 1 - alpha, eps, momentum and -lr.
    """
    library = _library(library)
    records = []
    for param, grad, square_avg, grad_avg, buffer, k in zip(params, grads, square_avgs, grad_avgs, buffers, scalars):
        records.append((
            param.numel(),
            param.data_ptr(),
            square_avg.data_ptr(),
            0 if grad_avg is None else grad_avg.data_ptr(),
            0 if buffer is None else buffer.data_ptr(),
            grad.data_ptr(),
            *_traced_fields(tap, param),
            -1.0 if k.maximize else 1.0,
            k.weight_decay,
            k.alpha,
            1 - k.alpha,
            k.eps,
            k.momentum,
            -k.lr,
        ))
    _run(library.tracer_rmsprop_f32, np.array(records, dtype=native.RMSPROP_ITEM), params, tap)


def _library(library):
    library = library if library is not None else native.library()
    if library is None:
        raise RuntimeError(f"the native optimizer step cannot be built here ({native.failure()})")
    return library


def _traced_fields(tap: StepTap | None, param: Tensor) -> tuple:
    """An item's delta, previous, results and g_theta fields: zeros when the tap does not name ``param``."""
    target = None if tap is None else tap.outputs.get(id(param))
    if target is None:
        return 0, 0, 0, 0.0
    return target.delta.data_ptr(), target.previous.data_ptr(), target.results, target.g_theta


def _run(kernel, table: np.ndarray, params: list[Tensor], tap: StepTap | None) -> None:
    """Call a step kernel on its table; tell the tap which tensors it updated."""
    if kernel(table.ctypes.data, len(table), torch.get_num_threads()) != 0:
        raise MemoryError("the native optimizer step could not allocate its task table (nothing was updated)")
    if tap is not None:
        tap.updated_natively(params)
