"""What the hand-written optimizers share: eager validation, lazy state and the step loop.

Kept apart from the algorithms so that each of sgd.py, rmsprop.py and adam.py
reads as its algorithm only. Nothing here touches the arithmetic.
``step_each`` is the one step loop of all three (native pass or for-loop
arithmetic per tensor, and the ``step_tap`` a caller may set for a step).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor

from tracer.native.steps import StepTap, native_tensors


def check_learning_rate(lr: float | Tensor) -> None:
    """Raise ValueError, as torch does, for a negative or a many-element lr."""
    if isinstance(lr, Tensor) and lr.numel() != 1:
        raise ValueError(f"Tensor lr must be 1-element, got shape {tuple(lr.shape)}")
    check_non_negative(lr, "learning rate", "lr")


def check_non_negative(value: float | Tensor, what: str, argument: str) -> None:
    """Raise ValueError("Invalid <what>: <value> ...") when value < 0.

    The message starts as torch's does (scripts that match torch's text keep
    working) and then says what is accepted.
    """
    if not 0.0 <= value:
        raise ValueError(f"Invalid {what}: {value} (expected {argument} >= 0)")


def as_scalar(value: float | Tensor) -> float | Tensor:
    """A 1-element hyperparameter tensor as a 0-d tensor; a number unchanged.

    torch squeezes tensor hyperparameters this way before its arithmetic
    (torch.optim.optimizer._to_scalar); doing the same keeps every operation's
    operand shapes, hence its result, identical.
    """
    if isinstance(value, Tensor) and value.dim() != 0:
        return value.squeeze()
    return value


def scalar_dtype() -> torch.dtype:
    """The dtype torch gives the `step` counter: float64 only if that is the default dtype."""
    return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32


def new_step_counter() -> Tensor:
    """A fresh `step` state: a 0-d tensor on the CPU, as torch's non-capturable default.

    Storing the same type and dtype as torch is what lets a state_dict move
    between ours and torch's in both directions.
    """
    return torch.zeros((), dtype=scalar_dtype(), device="cpu")


def params_with_grad(
    group: dict[str, Any], optimizer_name: str, *, sparse_supported: bool = False
) -> Iterator[Tensor]:
    """The parameters of a group that have a gradient, in order.

    Parameters without one are skipped, as in torch. A sparse gradient raises
    RuntimeError unless the algorithm supports it (SGD does, as torch's).
    Callers collect the whole list before updating anything, so that, as in
    torch, an error leaves every parameter of the group untouched.
    """
    for param in group["params"]:
        if param.grad is None:
            continue
        if param.grad.is_sparse and not sparse_supported:
            raise RuntimeError(
                f"{optimizer_name} does not support sparse gradients "
                "(got a sparse .grad); use dense gradients or torch.optim.SparseAdam"
            )
        yield param


def restore_defaults(optimizer: torch.optim.Optimizer, defaults: dict[str, Any]) -> None:
    """Fill keys missing from param groups loaded from an older state, as torch's __setstate__.

    A `step` stored as a plain number (very old torch) becomes a tensor again.
    """
    for group in optimizer.param_groups:
        for key, value in defaults.items():
            group.setdefault(key, value)
        for param in group["params"]:
            state = optimizer.state.get(param, {})
            if "step" in state and not torch.is_tensor(state["step"]):
                state["step"] = torch.tensor(float(state["step"]), dtype=scalar_dtype())


def evaluate_closure(closure: Callable[[], Any] | None) -> Any:
    """Run a step's closure with gradients enabled (step runs under no_grad); None without one.

    The closure re-evaluates the model and returns the loss, which step returns.
    """
    if closure is None:
        return None
    with torch.enable_grad():
        return closure()


def check_fused(fused: bool) -> None:
    """Raise RuntimeError for ``fused=True`` where the native kernels (tracer.native) cannot be built."""
    if fused:
        from tracer import native

        if native.library() is None:
            raise RuntimeError(
                f"fused=True needs the native kernels, which cannot be built here ({native.failure()}); use fused=False"
            )


def native_pass_takes(group: dict[str, Any], param: Tensor, state: dict[str, Any], state_keys: tuple[str, ...]) -> bool:
    """Whether a step updates ``param`` in its native pass: a fused group's float32 CPU tensor with a dense
    gradient, and its state tensors under ``state_keys`` (those it has) alike."""
    grad = param.grad
    if grad is None or not group.get("fused"):
        return False
    return native_tensors(param, grad, *[state.get(key) for key in state_keys])


def step_each(
    optimizer: torch.optim.Optimizer,
    closure: Callable[[], Any] | None,
    prepare: Callable[[dict[str, Any]], tuple[list[Tensor], Any]],
    native_item: Callable[[dict[str, Any], Any, Tensor], Any],
    update: Callable[[dict[str, Any], Any, Tensor], None],
    run_native: Callable[[list[Tensor], list[Any], StepTap | None], None],
) -> Any:
    """One step of a tracer.optim optimizer: every parameter with a gradient, group by group; return the closure's loss.

    ``prepare(group)`` gives the group's parameters to update (their state
    made) and what its updates share (lr as torch reads it, once per
    group); a tensor the native pass takes (``native_item`` returns its item,
    not None) is collected, and all of them are updated by one
    ``run_native(params, items, tap)`` call after the loop; any other is
    updated at once by ``update(group, shared, param)``, the algorithm's
    for-loop arithmetic. ``optimizer.step_tap`` (a ``StepTap``, set by a
    caller for one step) goes to the native pass and hears of every other
    update before it happens.
    """
    # Set for one step only: taken before the closure runs, so a failing closure leaves none behind.
    tap, optimizer.step_tap = optimizer.step_tap, None
    loss = evaluate_closure(closure)
    natives: list[Tensor] = []
    items: list[Any] = []
    for group in optimizer.param_groups:
        params, shared = prepare(group)
        fused = group.get("fused")
        for param in params:
            item = native_item(group, shared, param) if fused else None
            if item is not None:
                natives.append(param)
                items.append(item)
                continue
            if tap is not None:
                tap.before_update(param)
            update(group, shared, param)
    if natives:
        run_native(natives, items, tap)
    return loss
