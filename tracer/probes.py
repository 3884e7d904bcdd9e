"""Probes: d recomputed in the optimizer's own op order, for the families where that is sound.

``tracer.families`` says which family uses which probe; families without a
probe have d measured from the displacement instead.

A probe derives, for the parameters of one parameter group, the gradient the
optimizer used (``g``: after ``maximize`` and coupled weight decay), its
momentum buffer or first moment (``v``, raw), its running average of g^2
(``s``, raw) and the direction ``d`` with ``theta_next = theta - lr * d``,
from (gradients, optimizer state after the step, group options, parameters
before the step). Ours (``tracer.optim``) and torch's optimizers keep the same
state keys and group options, so one probe per family serves both.

Each probe repeats the optimizer's elementary operations in torch's for-loop
order (``torch._foreach_*`` on CPU runs the same per-tensor ops in a C++
loop), so for SGD, Momentum and RMSprop with momentum ``d`` is exactly the
tensor the step subtracted. Where torch folds a factor into a fused op the
probe cannot be bitwise, only within rounding:

- Adam: torch computes ``addcdiv(theta, v, denom, value=-lr/bc1)``; the probe
  gives the article's ``d = (v / bc1) / denom`` (``denom = sqrt(s)/sqrt(bc2) + eps``),
  so ``theta - lr * d`` can differ from the step by a few ulps.
- RMSprop without momentum: torch computes ``addcdiv(theta, g, avg, value=-lr)``,
  i.e. ``(-lr * g) / avg``; the probe gives ``d = g / avg``.
- AdamW (decoupled weight decay): ``d = wd * theta + v_hat / denom``, so that
  ``theta_next = theta - lr * d`` holds up to rounding.

Conventions differ from the article in two places, as in torch: RMSprop and
Adam add ``eps`` outside the square root, and AMSGrad's ``d`` uses
``max_exp_avg_sq`` while the ``s`` column stays the raw running average.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import Tensor

from tracer.errors import TracerError

@dataclass(frozen=True)
class ProbeResult:
    """What one parameter group's optimizer did at one update, one tensor per parameter.

    ``v`` or ``s`` is None where the optimizer has no such quantity (``v`` for
    SGD without momentum, ``s`` for SGD, ``v`` for RMSprop without momentum),
    and holds None for a parameter whose state lacks an optional key
    (``Family.moments_optional``: Adafactor's matrices have no ``variance``);
    ``d`` is None where it cannot be measured (lr = 0, or no usable lr, and no probe).
    """

    g: tuple[Tensor, ...]
    v: tuple[Tensor, ...] | None
    s: tuple[Tensor, ...] | None
    d: tuple[Tensor, ...] | None


def option_value(value: Any) -> float:
    """A group option as a Python float (options may be 1-element tensors)."""
    return value.item() if isinstance(value, Tensor) else float(value)


def gradient_convention(group: Mapping[str, Any]) -> tuple[float, float]:
    """``(sign, weight_decay)`` with which the optimizer turns ``grad`` into g = sign * grad + weight_decay * theta.

    ``sign`` is -1 when maximizing; ``weight_decay`` is the coupled decay (0
    for decoupled decay, AdamW's and NAdam's or RAdam's with
    ``decoupled_weight_decay=True``, which acts on d, not on g).
    """
    sign = -1.0 if group.get("maximize", False) else 1.0
    coupled = not group.get("decoupled_weight_decay", False)
    return sign, option_value(group.get("weight_decay", 0.0)) if coupled else 0.0


def state_tensor(state: Mapping[str, Any], key: str) -> Tensor:
    """One state tensor, or a TracerError saying the state key is not torch's."""
    try:
        return state[key]
    except KeyError:
        raise TracerError(
            f"optimizer state has no {key!r} after step(); the probe expects torch's state keys"
        ) from None


def _state_list(states: Sequence[Mapping[str, Any]], key: str) -> list[Tensor]:
    return [state_tensor(state, key) for state in states]


def _cpu_scalars(tensors: Sequence[Tensor]) -> bool:
    """The tensors are 0-dim, of one dtype and on the CPU (torch.stack joins them without promotion)."""
    dtype = tensors[0].dtype
    return all(t.is_cpu and t.dim() == 0 and t.dtype is dtype for t in tensors)


def used_gradient(grads: list[Tensor], thetas: list[Tensor], group: Mapping[str, Any]) -> list[Tensor]:
    """The gradient as the optimizer used it: negated when maximizing, plus coupled weight decay (sparse made dense)."""
    sign, weight_decay = gradient_convention(group)
    grads = [grad.to_dense() if grad.is_sparse else grad for grad in grads]
    g = torch._foreach_neg(grads) if sign < 0 else list(grads)
    if weight_decay != 0:
        g = torch._foreach_add(g, thetas, alpha=weight_decay)
    return g


def probe_sgd(grads, states, group, thetas) -> ProbeResult:
    """SGD, with momentum, dampening and Nesterov: d = g, or v, or g + momentum * v."""
    g = used_gradient(grads, thetas, group)
    momentum = option_value(group.get("momentum", 0.0))
    if momentum == 0:
        return ProbeResult(g=tuple(g), v=None, s=None, d=tuple(g))
    v = _state_list(states, "momentum_buffer")
    d = torch._foreach_add(g, v, alpha=momentum) if group.get("nesterov", False) else v
    return ProbeResult(g=tuple(g), v=tuple(v), s=None, d=tuple(d))


def probe_rmsprop(grads, states, group, thetas) -> ProbeResult:
    """RMSprop, centered or not, with or without momentum: d = g / (sqrt(s) + eps), or the momentum buffer."""
    g = used_gradient(grads, thetas, group)
    s = _state_list(states, "square_avg")
    momentum = option_value(group.get("momentum", 0.0))
    v = _state_list(states, "momentum_buffer") if momentum > 0 else None
    if v is not None:
        d = v
    else:
        if group.get("centered", False):
            grad_avg = _state_list(states, "grad_avg")
            avg = torch._foreach_addcmul(s, grad_avg, grad_avg, value=-1)
            torch._foreach_sqrt_(avg)
        else:
            avg = torch._foreach_sqrt(s)
        torch._foreach_add_(avg, option_value(group["eps"]))
        d = torch._foreach_div(g, avg)
    return ProbeResult(g=tuple(g), v=None if v is None else tuple(v), s=tuple(s), d=tuple(d))


def probe_adam(grads, states, group, thetas) -> ProbeResult:
    """Adam and AdamW (decoupled decay), with AMSGrad: d = v_hat / (sqrt(s_hat) + eps) (+ wd * theta for AdamW)."""
    decoupled = bool(group.get("decoupled_weight_decay", False))
    g = used_gradient(grads, thetas, group)
    v = _state_list(states, "exp_avg")
    s = _state_list(states, "exp_avg_sq")
    beta1, beta2 = (option_value(beta) for beta in group["betas"])
    # Each parameter has its own step count: one skipped while its grad was None has fewer.
    steps = [option_value(state["step"]) for state in states]
    bias_correction1 = [1 - beta1**step for step in steps]
    bias_correction2_sqrt = [(1 - beta2**step) ** 0.5 for step in steps]
    second = _state_list(states, "max_exp_avg_sq") if group.get("amsgrad", False) else s
    eps = option_value(group["eps"])
    if len(second) > 1 and steps.count(steps[0]) == len(steps) and _cpu_scalars(v + second):
        # Scalar parameters on the CPU with one step count (tiny models traced in full): the same operations on one
        # stacked tensor instead of one 0-dim tensor at a time. Square root, division and addition are
        # exactly rounded, so each element is what it is alone, bit for bit.
        denom = torch.stack(second).sqrt_().div_(bias_correction2_sqrt[0]).add_(eps)
        d = torch.stack(v).div_(bias_correction1[0]).div_(denom).unbind()
    else:
        denom = torch._foreach_sqrt(second)
        torch._foreach_div_(denom, bias_correction2_sqrt)
        torch._foreach_add_(denom, eps)
        d = torch._foreach_div(torch._foreach_div(v, bias_correction1), denom)
    weight_decay = option_value(group.get("weight_decay", 0.0))
    if decoupled and weight_decay != 0:
        d = torch._foreach_add(d, thetas, alpha=weight_decay)
    return ProbeResult(g=tuple(g), v=tuple(v), s=tuple(s), d=tuple(d))


Probe = Callable[[list[Tensor], list[Mapping[str, Any]], Mapping[str, Any], list[Tensor]], ProbeResult]
