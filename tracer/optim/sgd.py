"""Stochastic gradient descent, with optional (Nesterov) momentum."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from torch.optim.optimizer import ParamsT

from tracer.native.steps import SgdScalars, StepTap, sgd_native
from tracer.optim._common import (
    as_scalar,
    check_learning_rate,
    check_fused,
    check_non_negative,
    native_pass_takes,
    params_with_grad,
    restore_defaults,
    step_each,
)

__all__ = ["SGD", "sgd_update"]

# The state tensors the native pass (fused=True) reads and writes.
_NATIVE_STATE = ("momentum_buffer",)


class SGD(torch.optim.Optimizer):
    r"""Stochastic gradient descent, optionally with momentum; bit for bit torch.optim.SGD.

    The article writes plain SGD and momentum as::

        SGD        theta <- theta - lr * g
        Momentum   v     <- 0.9 * v + g
                   theta <- theta - lr * v

    This class computes, for every parameter with a gradient, at step t::

        g <- -grad if maximize else grad
        g <- g + weight_decay * theta                    (if weight_decay != 0)
        if momentum != 0:
            v <- g                                       (t = 1: a copy of g)
            v <- momentum * v + (1 - dampening) * g      (t > 1)
            g <- g + momentum * v   if nesterov   else   g <- v
        theta <- theta - lr * g

    Where torch's convention (followed here) differs from the article and
    from other libraries:

    - The first momentum buffer is the gradient itself, not zeros, so the
      first step is a plain SGD step and dampening is not applied to it.
    - The learning rate multiplies the buffer (theta <- theta - lr * v), not
      the gradient inside it (Sutskever et al. write v <- mu v + lr g,
      theta <- theta - v); the two differ when lr changes during training.
    - There is no bias correction: with momentum 0.9 early steps are small
      until v has built up (Adam corrects for this, momentum-SGD does not).

    Args:
        params: an iterable of tensors, of (name, tensor) pairs, or of dicts
            defining parameter groups (per-group options override the rest).
        lr: learning rate (default: 1e-3).
        momentum: momentum factor mu (default: 0).
        dampening: dampening tau of the gradient added to the buffer from the
            second step on (default: 0).
        weight_decay: L2 penalty lambda added to the gradient (default: 0).
        nesterov: Nesterov momentum; needs momentum > 0 and dampening 0
            (default: False).
        maximize: maximize the objective instead of minimizing it
            (default: False).
        fused: update every float32 CPU tensor in one native pass over
            memory (``tracer/native/steps.c``: the operations above in their
            order, each rounded once, on torch's thread count); other
            tensors take the arithmetic above. Within a few float32 ulps of
            torch's SGD. A Recorder at summary granularity then computes its
            summaries inside this pass. Raises RuntimeError where the native
            kernels cannot be built. Default: False.

    ``step_tap``: None, or a ``tracer.native.steps.StepTap`` a caller sets
    for one step (see tracer.optim.Adam).

    State per parameter (torch's keys): ``momentum_buffer`` (only when
    momentum != 0). Sparse gradients are supported as in torch. Complex
    parameters are updated by the same complex arithmetic as torch's.

    References:
        Sutskever, Martens, Dahl and Hinton (2013), "On the importance of
        initialization and momentum in deep learning", ICML.
    """

    def __init__(
        self,
        params: ParamsT,
        lr: float | Tensor = 1e-3,
        momentum: float = 0,
        dampening: float = 0,
        weight_decay: float | Tensor = 0,
        nesterov: bool = False,
        *,
        maximize: bool = False,
        fused: bool = False,
    ) -> None:
        check_learning_rate(lr)
        check_fused(fused)
        check_non_negative(momentum, "momentum value", "momentum")
        check_non_negative(weight_decay, "weight_decay value", "weight_decay")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError(
                "Nesterov momentum requires a momentum and zero dampening "
                f"(got momentum={momentum}, dampening={dampening}; "
                "expected momentum > 0 and dampening = 0)"
            )
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "dampening": dampening,
            "weight_decay": weight_decay,
            "nesterov": nesterov,
            "maximize": maximize,
            "fused": fused,
        }
        super().__init__(params, defaults)
        self.step_tap: StepTap | None = None

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        restore_defaults(self, {"nesterov": False, "maximize": False, "fused": False})
        self.__dict__.setdefault("step_tap", None)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """Update every parameter that has a gradient; return the closure's loss, if any."""
        return step_each(self, closure, self._prepare, self._native_item, self._update, _run_native)

    def _prepare(self, group: dict) -> tuple[list[Tensor], float | Tensor]:
        """The group's parameters with a gradient, and lr read once, as torch."""
        return list(params_with_grad(group, type(self).__name__, sparse_supported=True)), as_scalar(group["lr"])

    def _native_item(self, group: dict, lr: float | Tensor, param: Tensor) -> tuple | None:
        """(momentum buffer, whether it is new, scalars) where the native pass takes ``param``; a new buffer is made here."""
        if not native_pass_takes(group, param, self.state.get(param, {}), _NATIVE_STATE):
            return None
        # Only touch the state when there is a buffer to keep, as torch does.
        state = self.state[param] if group["momentum"] != 0 else None
        buffer = None if state is None else state.get("momentum_buffer")
        first = state is not None and buffer is None
        if first:
            buffer = state["momentum_buffer"] = torch.empty_like(param, memory_format=torch.contiguous_format)
        scalars = SgdScalars(float(lr), group["momentum"], group["dampening"], float(group["weight_decay"]),
                             group["nesterov"], group["maximize"])
        return buffer, first, scalars

    def _update(self, group: dict, lr: float | Tensor, param: Tensor) -> None:
        if group["momentum"] != 0:
            # Only touch the state when there is a buffer to keep, as
            # torch does: plain SGD leaves optimizer.state empty.
            state = self.state[param]
            buffer = state.get("momentum_buffer")
        else:
            buffer = None
        buffer = sgd_update(
            param,
            param.grad,
            buffer,
            lr=lr,
            momentum=group["momentum"],
            dampening=group["dampening"],
            weight_decay=group["weight_decay"],
            nesterov=group["nesterov"],
            maximize=group["maximize"],
        )
        if group["momentum"] != 0:
            state["momentum_buffer"] = buffer


def _run_native(params: list[Tensor], items: list[tuple], tap: StepTap | None) -> None:
    """Every tensor the native pass takes, in one call."""
    buffers, first, scalars = zip(*items)
    sgd_native(params, [p.grad for p in params], list(buffers), list(first), list(scalars), tap)


def sgd_update(
    param: Tensor,
    grad: Tensor,
    momentum_buffer: Tensor | None,
    *,
    lr: float | Tensor,
    momentum: float,
    dampening: float,
    weight_decay: float | Tensor,
    nesterov: bool,
    maximize: bool,
) -> Tensor | None:
    """Update one parameter in place; return its momentum buffer (None without momentum).

    The operations and their order are those of torch's for-loop SGD, which is
    what makes the result bitwise equal to it.
    """
    if maximize:
        grad = -grad

    if weight_decay != 0:
        grad = grad.add(param, alpha=weight_decay)

    if momentum != 0:
        if momentum_buffer is None:
            # The first buffer is the gradient itself: no (1 - dampening).
            momentum_buffer = grad.detach().clone()
        else:
            momentum_buffer.mul_(momentum).add_(grad, alpha=1 - dampening)

        if nesterov:
            grad = grad.add(momentum_buffer, alpha=momentum)
        else:
            grad = momentum_buffer

    param.add_(grad, alpha=-lr)
    return momentum_buffer
