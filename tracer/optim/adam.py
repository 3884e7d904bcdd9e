"""Adam and AdamW: momentum and RMSprop together, with bias correction."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor
from torch.optim.optimizer import ParamsT

from tracer.native.steps import AdamScalars, StepTap, adam_native, count_steps
from tracer.optim._common import (
    as_scalar,
    check_learning_rate,
    check_fused,
    check_non_negative,
    native_pass_takes,
    new_step_counter,
    params_with_grad,
    restore_defaults,
    step_each,
)

__all__ = ["Adam", "AdamW", "adam_update"]

# The state tensors the native pass (fused=True) reads and writes.
_NATIVE_STATE = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")


class Adam(torch.optim.Optimizer):
    r"""Adam (and AdamW with decoupled_weight_decay=True); bit for bit torch.optim.Adam.

    The article writes Adam as::

        v     <- b1 * v + (1 - b1) * g
        s     <- b2 * s + (1 - b2) * g^2
        v_hat <- v / (1 - b1^t)                 (bias correction)
        s_hat <- s / (1 - b2^t)
        theta <- theta - lr * v_hat / (sqrt(s_hat) + eps)

    This class computes, for every parameter with a gradient, at step t::

        g <- -grad if maximize else grad
        if weight_decay != 0:
            theta <- theta * (1 - lr * weight_decay)    (decoupled: AdamW)
            g     <- g + weight_decay * theta           (otherwise: L2 penalty)
        v <- v + (1 - b1) * (g - v)                     (a lerp; = b1 v + (1 - b1) g)
        s <- b2 * s + (1 - b2) * g^2
        if amsgrad:
            s_max <- max(s_max, s);  s <- s_max         (for the denominator only)
        step_size <- lr / (1 - b1^t)
        denom     <- sqrt(s) / sqrt(1 - b2^t) + eps
        theta     <- theta - step_size * v / denom

    That is the article's update with the bias corrections moved: v_hat is
    never formed (lr / (1 - b1^t) is one number), and eps is added to
    sqrt(s) / sqrt(1 - b2^t) = sqrt(s_hat), so eps sits outside the square
    root exactly as in the article. The rounding of this order is torch's,
    which is what makes the results bitwise equal to torch's.

    Args:
        params: an iterable of tensors, of (name, tensor) pairs, or of dicts
            defining parameter groups (per-group options override the rest).
        lr: learning rate (default: 1e-3).
        betas: (b1, b2), decay rates of the first and second moment
            averages, each in [0, 1) (default: (0.9, 0.999)).
        eps: added to the denominator for numerical stability (default: 1e-8).
        weight_decay: weight decay lambda (default: 0).
        amsgrad: divide by the largest second moment seen so far, the AMSGrad
            variant (default: False).
        maximize: maximize the objective instead of minimizing it
            (default: False).
        decoupled_weight_decay: shrink the parameters directly
            (theta <- theta (1 - lr lambda), AdamW) instead of adding lambda
            theta to the gradient, which Adam would then rescale
            (default: False).
        fused: update every float32 CPU tensor of the group in one native
            pass over memory (``tracer/native/steps.c``: the same
            operations in the same order, each rounded once, on torch's
            thread count), as torch's ``fused=True`` does; other tensors
            take the arithmetic above. It agrees with torch within a few
            float32 ulps (torch's kernels fuse some multiply-adds, and which
            depends on the CPU). A Recorder at summary granularity then
            computes its summaries inside this pass (``step_tap``)
            instead of a snapshot before the step and a pass after it.
            Raises RuntimeError where the native kernels cannot be built
            (no C compiler). Default: False.

    ``step_tap``: None, or a ``tracer.native.steps.StepTap`` a caller (the
    Recorder) sets for one step: the native pass then also writes what it
    computes anyway (delta and its reductions) where the tap says, and the
    tap hears of every tensor updated another way before it is.

    State per parameter (torch's keys): ``step`` (a 0-d float32 CPU tensor),
    ``exp_avg`` (v), ``exp_avg_sq`` (s), ``max_exp_avg_sq`` (if amsgrad).
    Sparse gradients raise RuntimeError. Complex parameters are updated
    through view_as_real, as in torch.

    References:
        Kingma and Ba (2014), "Adam: A Method for Stochastic Optimization",
        arXiv:1412.6980. Reddi, Kale and Kumar (2018), "On the Convergence of
        Adam and Beyond", ICLR (amsgrad). Loshchilov and Hutter (2019),
        "Decoupled Weight Decay Regularization", ICLR (decoupled_weight_decay).
    """

    def __init__(
        self,
        params: ParamsT,
        lr: float | Tensor = 1e-3,
        betas: tuple[float | Tensor, float | Tensor] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
        decoupled_weight_decay: bool = False,
        fused: bool = False,
    ) -> None:
        check_learning_rate(lr)
        check_fused(fused)
        check_non_negative(eps, "epsilon value", "eps")
        for index, beta in enumerate(betas):
            if not 0.0 <= beta < 1.0:
                raise ValueError(
                    f"Invalid beta parameter at index {index}: {beta} (expected 0 <= beta < 1)"
                )
        check_non_negative(weight_decay, "weight_decay value", "weight_decay")
        if not (
            all(isinstance(beta, float) for beta in betas)
            or all(isinstance(beta, Tensor) for beta in betas)
        ):
            raise ValueError(f"betas must be either both floats or both Tensors, got {betas!r}")
        for index, beta in enumerate(betas):
            if isinstance(beta, Tensor) and beta.numel() != 1:
                raise ValueError(f"Tensor betas[{index}] must be 1-element")
        defaults = {
            "lr": lr,
            "betas": tuple(as_scalar(beta) for beta in betas),
            "eps": eps,
            "weight_decay": weight_decay,
            "amsgrad": amsgrad,
            "maximize": maximize,
            "decoupled_weight_decay": decoupled_weight_decay,
            "fused": fused,
        }
        super().__init__(params, defaults)
        self.step_tap: StepTap | None = None

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        restore_defaults(
            self, {"amsgrad": False, "maximize": False, "decoupled_weight_decay": False, "fused": False}
        )
        self.__dict__.setdefault("step_tap", None)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """Update every parameter that has a gradient; return the closure's loss, if any."""
        return step_each(self, closure, self._prepare, _native_item, _update, _run_native)

    def _prepare(self, group: dict) -> tuple[list[Tensor], _GroupOptions]:
        """The group's parameters with a gradient, their state made; lr and betas read once, as torch."""
        params = list(params_with_grad(group, type(self).__name__))
        for param in params:
            state = self.state[param]
            if len(state) == 0:
                state["step"] = new_step_counter()
                state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)
                if group["amsgrad"]:
                    state["max_exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)
        beta1, beta2 = (as_scalar(beta) for beta in group["betas"])
        return params, _GroupOptions(as_scalar(group["lr"]), beta1, beta2, group, self.state)


class AdamW(Adam):
    r"""AdamW: Adam with decoupled weight decay; bit for bit torch.optim.AdamW.

    The same algorithm as :class:`Adam` with ``decoupled_weight_decay=True``:
    before the moments are updated, theta <- theta * (1 - lr * weight_decay),
    and the gradient is left alone (Loshchilov and Hutter, "Decoupled Weight
    Decay Regularization"). Note that the decay is scaled by lr (as torch and
    optax do), so a schedule on lr also schedules the decay.

    Args:
        params: an iterable of tensors, of (name, tensor) pairs, or of dicts
            defining parameter groups (per-group options override the rest).
        lr: learning rate (default: 1e-3).
        betas: (b1, b2), each in [0, 1) (default: (0.9, 0.999)).
        eps: added to the denominator for numerical stability (default: 1e-8).
        weight_decay: decoupled weight decay lambda (default: 1e-2).
        amsgrad: the AMSGrad variant (default: False).
        maximize: maximize the objective instead of minimizing it
            (default: False).
        fused: one native pass per step, as :class:`Adam`'s (default: False).

    References:
        Loshchilov and Hutter (2019), "Decoupled Weight Decay Regularization",
        ICLR.
    """

    def __init__(
        self,
        params: ParamsT,
        lr: float | Tensor = 1e-3,
        betas: tuple[float | Tensor, float | Tensor] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
        fused: bool = False,
    ) -> None:
        super().__init__(
            params,
            lr,
            betas,
            eps,
            weight_decay,
            amsgrad,
            maximize=maximize,
            decoupled_weight_decay=True,
            fused=fused,
        )

    def __setstate__(self, state: dict) -> None:
        # Whatever was loaded, AdamW decays decoupled (as torch's AdamW).
        super().__setstate__(state)
        for group in self.param_groups:
            group["decoupled_weight_decay"] = True


def adam_update(
    param: Tensor,
    grad: Tensor,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
    max_exp_avg_sq: Tensor | None,
    step: Tensor,
    *,
    lr: float | Tensor,
    beta1: float | Tensor,
    beta2: float | Tensor,
    eps: float,
    weight_decay: float,
    amsgrad: bool,
    maximize: bool,
    decoupled_weight_decay: bool,
) -> None:
    """Update one parameter and its state in place.

    The operations and their order are those of torch's for-loop Adam, which
    is what makes the result bitwise equal to it.
    """
    if maximize:
        grad = -grad

    step += 1

    if weight_decay != 0:
        if decoupled_weight_decay:
            param.mul_(1 - lr * weight_decay)
        else:
            grad = grad.add(param, alpha=weight_decay)

    if torch.is_complex(param):
        # Real and imaginary parts get their own moments, as in torch.
        param = torch.view_as_real(param)
        grad = torch.view_as_real(grad)
        exp_avg = torch.view_as_real(exp_avg)
        exp_avg_sq = torch.view_as_real(exp_avg_sq)
        if max_exp_avg_sq is not None:
            max_exp_avg_sq = torch.view_as_real(max_exp_avg_sq)

    # lerp is one pass over the buffer: v + (1 - b1) (g - v) = b1 v + (1 - b1) g.
    if isinstance(beta1, Tensor):
        exp_avg.lerp_(grad, 1 - beta1.to(device=param.device, dtype=param.dtype))
    else:
        exp_avg.lerp_(grad, 1 - beta1)
    exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)

    # .item(): Python-float arithmetic on the step count, as torch's default.
    step_count = step.item()
    bias_correction1 = 1 - beta1**step_count
    bias_correction2 = 1 - beta2**step_count
    step_size = lr / bias_correction1
    bias_correction2_sqrt = bias_correction2**0.5

    if amsgrad:
        torch.maximum(max_exp_avg_sq, exp_avg_sq, out=max_exp_avg_sq)
        denom = (max_exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps)
    else:
        denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps)

    param.addcdiv_(exp_avg, denom, value=-step_size)


class _GroupOptions(NamedTuple):
    """What a group's updates share in one step: lr and betas as torch reads them, the group, the states."""

    lr: float | Tensor
    beta1: float | Tensor
    beta2: float | Tensor
    group: dict
    state: dict


def _native_item(group: dict, options: _GroupOptions, param: Tensor) -> tuple[dict, _GroupOptions] | None:
    """The parameter's state and its group's options, where the native pass takes it."""
    state = options.state[param]
    return (state, options) if native_pass_takes(group, param, state, _NATIVE_STATE) else None


def _update(group: dict, options: _GroupOptions, param: Tensor) -> None:
    state = options.state[param]
    adam_update(
        param,
        param.grad,
        state["exp_avg"],
        state["exp_avg_sq"],
        state.get("max_exp_avg_sq"),
        state["step"],
        lr=options.lr,
        beta1=options.beta1,
        beta2=options.beta2,
        eps=group["eps"],
        weight_decay=group["weight_decay"],
        amsgrad=group["amsgrad"],
        maximize=group["maximize"],
        decoupled_weight_decay=group["decoupled_weight_decay"],
    )


def _run_native(params: list[Tensor], items: list[tuple[dict, _GroupOptions]], tap: StepTap | None) -> None:
    """Every tensor the native pass takes, in one call; lr and betas as Python floats (torch's fused Adam casts them so)."""
    states = [state for state, _ in items]
    counts = count_steps([state["step"] for state in states])
    # One AdamScalars per group and step count (usually one per group), shared by its tensors.
    made: dict[tuple[int, float], AdamScalars] = {}
    scalars = []
    for (_, options), count in zip(items, counts):
        k = made.get((id(options), count))
        if k is None:
            group = options.group
            k = made[id(options), count] = AdamScalars(
                float(options.lr), float(options.beta1), float(options.beta2), group["eps"], group["weight_decay"],
                group["decoupled_weight_decay"], group["maximize"], count,
            )
        scalars.append(k)
    adam_native(
        params,
        [param.grad for param in params],
        [state["exp_avg"] for state in states],
        [state["exp_avg_sq"] for state in states],
        [state.get("max_exp_avg_sq") for state in states],
        scalars,
        tap,
    )
