"""Optimizer families: one record per kind of optimizer the recorder traces.

A family says how it is recognised (the optimizer classes, torch's and
``tracer.optim``'s, subclasses included), which optimizer state keys hold its
``v`` (momentum or first moment) and ``s`` (the per-coordinate scale: running
average of g^2, its sum, or its infinity norm), how its ``d`` is obtained,
and its display name. Supporting one more optimizer is one record here and
one row in the tests' optimizer table.

d is defined by ``theta_next = theta - lr * d``. It is obtained one of two ways:

- recomputed: a probe (``tracer.probes``) repeats the optimizer's arithmetic
  in its own op order from (gradient, state after the step, group options,
  theta before the step). Bit for bit the step's own d for SGD, Momentum and
  RMSprop with momentum; within a few ulp for Adam/AdamW and plain RMSprop,
  where torch folds lr into a fused op.
- measured: ``d = (theta - theta_next) / lr`` in float64 from the
  parameters before and after the step, exact up to one rounding. For every
  family whose arithmetic the toolkit does not repeat (NAdam, RAdam, Adamax,
  Adagrad, Adadelta, ASGD, Rprop, SparseAdam), and for float16 and bfloat16
  parameters of every family: torch's fused kernels compute their step in
  float32 from state they then round to 16 bits, so no recomputation from
  the stored state is the step (recomputed in float16 it was even inf).
  Empty while lr = 0, as theta does not move.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import Tensor

import tracer.optim as ours
from tracer.errors import TracerError
from tracer.probes import Probe, ProbeResult, option_value, probe_adam, probe_rmsprop, probe_sgd, state_tensor, used_gradient

_LOW_PRECISION = (torch.float16, torch.bfloat16)


@dataclass(frozen=True)
class Family:
    """How the recorder reads one kind of optimizer.

    ``v_key`` and ``s_key`` are the optimizer state keys of v and s (None:
    the family keeps no such quantity); with ``momentum_v`` v exists only
    while the group's ``momentum`` is non-zero. ``probe`` recomputes d; None
    means d is measured from the displacement. ``name_for`` gives the
    display name from the group options (default: ``name``).
    """

    name: str
    classes: tuple[type, ...]
    v_key: str | None
    s_key: str | None
    probe: Probe | None = None
    momentum_v: bool = False
    name_for: Callable[[Mapping[str, Any]], str] | None = None

    def recomputes(self, dtype: torch.dtype) -> bool:
        """d of a parameter of this dtype is recomputed by the probe (else measured from the displacement)."""
        return self.probe is not None and dtype not in _LOW_PRECISION

    def d_source(self, dtypes: Sequence[torch.dtype]) -> str:
        """How d is obtained for parameters of these dtypes: "recomputed", "measured", or "measured for 16-bit parameters"."""
        recomputed = {self.recomputes(dtype) for dtype in dtypes} or {self.probe is not None}
        if recomputed == {True}:
            return "recomputed"
        return "measured" if recomputed == {False} else "measured for 16-bit parameters"

    def display_name(self, group: Mapping[str, Any]) -> str:
        return self.name if self.name_for is None else self.name_for(group)

    def moment_keys(self, group: Mapping[str, Any]) -> tuple[str | None, str | None]:
        """The state keys of v and s under these group options (None: no such quantity)."""
        if self.momentum_v and option_value(group.get("momentum", 0.0)) == 0:
            return None, self.s_key
        return self.v_key, self.s_key


def _sgd_name(group: Mapping[str, Any]) -> str:
    return "momentum" if option_value(group.get("momentum", 0.0)) != 0 else "sgd"


def _adam_name(group: Mapping[str, Any]) -> str:
    return "adamw" if group.get("decoupled_weight_decay", False) else "adam"


optim = torch.optim
FAMILIES: tuple[Family, ...] = (
    Family("sgd", (optim.SGD, ours.SGD), "momentum_buffer", None, probe_sgd, momentum_v=True, name_for=_sgd_name),
    Family("rmsprop", (optim.RMSprop, ours.RMSprop), "momentum_buffer", "square_avg", probe_rmsprop, momentum_v=True),
    Family("adam", (optim.Adam, optim.AdamW, ours.Adam, ours.AdamW), "exp_avg", "exp_avg_sq", probe_adam, name_for=_adam_name),
    Family("nadam", (optim.NAdam,), "exp_avg", "exp_avg_sq"),
    Family("radam", (optim.RAdam,), "exp_avg", "exp_avg_sq"),
    # s is Adamax's exponentially weighted infinity norm of g, not an average of g^2.
    Family("adamax", (optim.Adamax,), "exp_avg", "exp_inf"),
    # s is Adagrad's sum of g^2 over every update.
    Family("adagrad", (optim.Adagrad,), None, "sum"),
    # Adadelta's other buffer, acc_delta (running average of the squared updates), is no moment of g.
    Family("adadelta", (optim.Adadelta,), None, "square_avg"),
    # ASGD keeps an averaged iterate (ax), no moment of g.
    Family("asgd", (optim.ASGD,), None, None),
    # Rprop keeps the previous gradient's sign and per-coordinate step sizes, no moment of g.
    Family("rprop", (optim.Rprop,), None, None),
    Family("sparse_adam", (optim.SparseAdam,), "exp_avg", "exp_avg_sq"),
)
del optim


def _supported() -> str:
    return ", ".join(cls.__name__ for family in FAMILIES for cls in family.classes if cls.__module__.startswith("torch"))


def family_of(optimizer: torch.optim.Optimizer) -> Family:
    """The family of an optimizer (torch's, tracer.optim's, or a subclass of either); TracerError for any other."""
    for family in FAMILIES:
        if isinstance(optimizer, family.classes):
            return family
    cls = type(optimizer)
    raise TracerError(
        f"cannot trace optimizer {cls.__module__}.{cls.__qualname__}: supported are torch.optim's {_supported()} "
        f"and tracer.optim's SGD, RMSprop, Adam, AdamW (subclasses of either included)"
    )


def optimizer_name(optimizer: torch.optim.Optimizer) -> str:
    """The toolkit's name for what the optimizer runs (sgd, momentum, rmsprop, adam, adamw, nadam, ...), from group 0."""
    return family_of(optimizer).display_name(optimizer.param_groups[0])


def read_group(
    family: Family,
    grads: Sequence[Tensor],
    states: Sequence[Mapping[str, Any]],
    group: Mapping[str, Any],
    before: Sequence[Tensor],
    after: Sequence[Tensor],
) -> ProbeResult:
    """g, v, s and d of one group's parameters that have gradients, at the update just made.

    ``before`` and ``after`` are the parameters before and after the step
    (of one dtype: a group of mixed 16-bit and wider parameters has d measured).
    """
    if all(family.recomputes(theta.dtype) for theta in before):
        return family.probe(list(grads), list(states), group, list(before))
    g = used_gradient(list(grads), list(before), group)
    v_key, s_key = family.moment_keys(group)
    v = None if v_key is None else tuple(state_tensor(state, v_key) for state in states)
    s = None if s_key is None else tuple(state_tensor(state, s_key) for state in states)
    lr = option_value(group["lr"])
    d = None
    if lr > 0:
        d = tuple((b.double() - a.double()) / lr for b, a in zip(before, after))
    return ProbeResult(g=tuple(g), v=v, s=s, d=d)
