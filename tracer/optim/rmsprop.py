"""RMSprop: divide the gradient by a running root mean square of its history."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from torch.optim.optimizer import ParamsT

from tracer.native.steps import RmspropScalars, StepTap, count_steps, rmsprop_native
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

__all__ = ["RMSprop", "rmsprop_update"]

# The state tensors the native pass (fused=True) reads and writes.
_NATIVE_STATE = ("square_avg", "grad_avg", "momentum_buffer")


class RMSprop(torch.optim.Optimizer):
    r"""RMSprop; bit for bit torch.optim.RMSprop.

    The article writes RMSprop as::

        s     <- alpha * s + (1 - alpha) * g^2
        theta <- theta - lr * g / (sqrt(s) + eps)

    This class computes, for every parameter with a gradient::

        g <- -grad if maximize else grad
        g <- g + weight_decay * theta                   (if weight_decay != 0)
        s <- alpha * s + (1 - alpha) * g^2              (s starts at 0)
        s~ <- s
        if centered:
            m  <- alpha * m + (1 - alpha) * g           (m starts at 0)
            s~ <- s - m^2                               (an estimate of the variance)
        d <- g / (sqrt(s~) + eps)
        if momentum > 0:
            b <- momentum * b + d                       (b starts at 0)
            theta <- theta - lr * b
        else:
            theta <- theta - lr * d

    Where torch's convention (followed here) differs from others:

    - eps is added *outside* the square root, sqrt(s) + eps, as in the
      article. TensorFlow and optax put it inside, sqrt(s + eps), so the same
      eps means a different thing there.
    - There is no bias correction: s starts at 0, so early steps are large
      (g / sqrt((1 - alpha) g^2) = 1 / sqrt(1 - alpha) = 10 for alpha = 0.99).
    - Unlike SGD's, the momentum buffer starts at zeros.

    Args:
        params: an iterable of tensors, of (name, tensor) pairs, or of dicts
            defining parameter groups (per-group options override the rest).
        lr: learning rate (default: 1e-2).
        alpha: smoothing constant of the running averages (default: 0.99).
        eps: added to the denominator for numerical stability (default: 1e-8).
        weight_decay: L2 penalty lambda added to the gradient (default: 0).
        momentum: momentum factor (default: 0).
        centered: normalize by an estimate of the gradient's variance instead
            of its second moment (default: False).
        maximize: maximize the objective instead of minimizing it
            (default: False).
        fused: update every float32 CPU tensor in one native pass over
            memory (``tracer/native/steps.c``: the operations above in their
            order, each rounded once, on torch's thread count); other
            tensors take the arithmetic above. torch's RMSprop has no fused
            version: this one agrees with its for-loop version within a few
            float32 ulps. A Recorder at summary granularity then computes
            its summaries inside this pass. Raises RuntimeError where the
            native kernels cannot be built. Default: False.

    ``step_tap``: None, or a ``tracer.native.steps.StepTap`` a caller sets
    for one step (see tracer.optim.Adam).

    State per parameter (torch's keys): ``step`` (a 0-d float32 CPU tensor),
    ``square_avg`` (s), ``momentum_buffer`` (b, if momentum > 0 at the first
    step), ``grad_avg`` (m, if centered). Sparse gradients raise
    RuntimeError. Complex parameters are updated through view_as_real, as in
    torch.

    References:
        Tieleman and Hinton (2012), "Lecture 6.5 - rmsprop: Divide the
        gradient by a running average of its recent magnitude", COURSERA:
        Neural Networks for Machine Learning.
    """

    def __init__(
        self,
        params: ParamsT,
        lr: float | Tensor = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0,
        momentum: float = 0,
        centered: bool = False,
        *,
        maximize: bool = False,
        fused: bool = False,
    ) -> None:
        check_learning_rate(lr)
        check_fused(fused)
        check_non_negative(eps, "epsilon value", "eps")
        check_non_negative(momentum, "momentum value", "momentum")
        check_non_negative(weight_decay, "weight_decay value", "weight_decay")
        check_non_negative(alpha, "alpha value", "alpha")
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "alpha": alpha,
            "eps": eps,
            "centered": centered,
            "weight_decay": weight_decay,
            "maximize": maximize,
            "fused": fused,
        }
        super().__init__(params, defaults)
        self.step_tap: StepTap | None = None

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        restore_defaults(self, {"momentum": 0, "centered": False, "maximize": False, "fused": False})
        self.__dict__.setdefault("step_tap", None)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """Update every parameter that has a gradient; return the closure's loss, if any."""
        return step_each(self, closure, self._prepare, self._native_item, self._update, _run_native)

    def _prepare(self, group: dict) -> tuple[list[Tensor], float | Tensor]:
        """The group's parameters with a gradient, their state made; lr read once, as torch."""
        params = list(params_with_grad(group, type(self).__name__))
        for param in params:
            state = self.state[param]
            if len(state) == 0:
                state["step"] = new_step_counter()
                state["square_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
                if group["momentum"] > 0:
                    state["momentum_buffer"] = torch.zeros_like(param, memory_format=torch.preserve_format)
                if group["centered"]:
                    state["grad_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
        return params, as_scalar(group["lr"])

    def _native_item(self, group: dict, lr: float | Tensor, param: Tensor) -> tuple | None:
        """(state, scalars) where the native pass takes ``param``."""
        state = self.state[param]
        if not native_pass_takes(group, param, state, _NATIVE_STATE):
            return None
        return state, RmspropScalars(float(lr), group["alpha"], group["eps"], group["weight_decay"], group["momentum"],
                                     group["maximize"])

    def _update(self, group: dict, lr: float | Tensor, param: Tensor) -> None:
        state = self.state[param]
        rmsprop_update(
            param,
            param.grad,
            state["square_avg"],
            state.get("grad_avg"),
            state.get("momentum_buffer"),
            state["step"],
            lr=lr,
            alpha=group["alpha"],
            eps=group["eps"],
            weight_decay=group["weight_decay"],
            momentum=group["momentum"],
            centered=group["centered"],
            maximize=group["maximize"],
        )



def rmsprop_update(
    param: Tensor,
    grad: Tensor,
    square_avg: Tensor,
    grad_avg: Tensor | None,
    momentum_buffer: Tensor | None,
    step: Tensor,
    *,
    lr: float | Tensor,
    alpha: float,
    eps: float,
    weight_decay: float,
    momentum: float,
    centered: bool,
    maximize: bool,
) -> None:
    """Update one parameter and its state in place.

    The operations and their order are those of torch's for-loop RMSprop,
    which is what makes the result bitwise equal to it.
    """
    if maximize:
        grad = -grad

    step += 1

    if weight_decay != 0:
        grad = grad.add(param, alpha=weight_decay)

    if torch.is_complex(param):
        # Real and imaginary parts are averaged separately, as torch does.
        param = torch.view_as_real(param)
        grad = torch.view_as_real(grad)
        square_avg = torch.view_as_real(square_avg)
        if grad_avg is not None:
            grad_avg = torch.view_as_real(grad_avg)
        if momentum_buffer is not None:
            momentum_buffer = torch.view_as_real(momentum_buffer)

    square_avg.mul_(alpha).addcmul_(grad, grad, value=1 - alpha)

    if centered:
        grad_avg.lerp_(grad, 1 - alpha)
        avg = square_avg.addcmul(grad_avg, grad_avg, value=-1).sqrt_()
    else:
        avg = square_avg.sqrt()
    # eps outside the square root (TensorFlow and optax put it inside).
    avg = avg.add_(eps)

    if momentum > 0:
        momentum_buffer.mul_(momentum).addcdiv_(grad, avg)
        param.add_(momentum_buffer, alpha=-lr)
    else:
        param.addcdiv_(grad, avg, value=-lr)


def _run_native(params: list[Tensor], items: list[tuple[dict, RmspropScalars]], tap: StepTap | None) -> None:
    """Every tensor the native pass takes, in one call."""
    states = [state for state, _ in items]
    count_steps([state["step"] for state in states])
    rmsprop_native(
        params,
        [param.grad for param in params],
        [state["square_avg"] for state in states],
        [state.get("grad_avg") for state in states],
        [state.get("momentum_buffer") for state in states],
        [scalars for _, scalars in items],
        tap,
    )
