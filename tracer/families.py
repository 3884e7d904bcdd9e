"""Optimizer families: how the recorder reads each kind of optimizer.

Every ``torch.optim.Optimizer`` (parameter groups and per-parameter state),
torch's or a user's, is traced. A family says which optimizer state keys
hold its ``v`` (momentum or first moment) and ``s`` (the per-coordinate
scale: running average of g^2, its sum, or its infinity norm), how its ``d``
is obtained, and its display name. The table ``FAMILIES`` holds torch's
optimizers and ``tracer.optim``'s; a package adds its own optimizer with one
``register_family(Family(...))`` call. An optimizer no family knows gets a
family of its own (``family_of``): d measured, v and s from the recorder's
``state_keys=`` (none without it). Every state tensor is recorded by its key
whatever the family (``tracer.recording.state``).

d is defined by ``theta_next = theta - lr * d``. It is obtained one of two ways:

- recomputed: a probe (``tracer.probes``) repeats the optimizer's arithmetic
  in its own op order from (gradient, state after the step, group options,
  theta before the step). Bit for bit the step's own d for SGD, Momentum and
  RMSprop with momentum; within a few ulp for Adam/AdamW and plain RMSprop,
  where torch folds lr into a fused op. Only where the optimizer is known to
  run the family's arithmetic: a subclass that overrides ``step()`` or
  ``_init_group`` has d measured, and its metadata says why. Every
  recomputed d is also checked against the displacement at every update
  (``DISPLACEMENT_ULPS``); on a disagreement that parameter switches to
  measured d (``tracer.recording.full``).
- measured: ``d = (theta - theta_next) / lr`` in float64 from the
  parameters before and after the step, exact up to one rounding. For every
  family whose arithmetic the toolkit does not repeat (NAdam, RAdam, Adamax,
  Adagrad, Adadelta, ASGD, Rprop, SparseAdam, Adafactor, Muon, LBFGS and
  every optimizer outside the table), and for float16 and bfloat16
  parameters of every family: torch's fused kernels compute their step in
  float32 from state they then round to 16 bits, so no recomputation from
  the stored state is the step (recomputed in float16 it was even inf).
  Empty where lr is 0, absent or not a number, as theta does not move or d
  has no scale; the displacement is still recorded.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import Tensor

import tracer.optim as ours
from tracer.errors import TracerError
from tracer.probes import Probe, ProbeResult, option_value, probe_adam, probe_rmsprop, probe_sgd, used_gradient

_LOW_PRECISION = (torch.float16, torch.bfloat16)
# How far theta - lr * d, in float64, may be from theta_next before a recomputed d is called wrong: in units of
# the parameter dtype's eps, relative to |theta_next| + lr * |d|. A bitwise probe is within 1, a folded one
# (Adam, plain RMSprop, fused kernels) within 4 (tests/test_families.py's FOLDED_FACTOR_TOLERANCE).
DISPLACEMENT_ULPS = 16
# The methods whose override means an optimizer no longer runs its family's arithmetic.
_ARITHMETIC_METHODS = ("step", "_init_group")
GRADIENTS = ("torch", "decoupled", "raw")


@dataclass(frozen=True)
class Family:
    """How the recorder reads one kind of optimizer.

    ``classes``: the optimizer classes it covers (subclasses included, unless
    they override ``step`` or ``_init_group``). ``v_key`` and ``s_key`` are
    the optimizer state keys of v and s (None: the family keeps no such
    quantity); with ``momentum_v`` v exists only while the group's
    ``momentum`` is non-zero; with ``moments_optional`` a parameter whose
    state lacks the key, or holds it in another shape than the parameter's,
    has no v or s (Adafactor keeps ``variance`` for vectors only). ``probe`` recomputes d; None means d is measured from the
    displacement. ``name_for`` gives the display name from the group options
    (default: ``name``). ``d_reason`` says why d is measured where a probe
    would be expected (a subclass overriding ``step``), else None.
    ``gradient`` says how the group options make g from ``grad``: "torch"
    (``maximize`` negates it, ``weight_decay`` is added to it unless
    ``decoupled_weight_decay``), "decoupled" (``maximize`` only: the decay
    acts on theta) or "raw" (g is ``grad`` as the step saw it: the options'
    meaning is unknown).
    """

    name: str
    classes: tuple[type, ...]
    v_key: str | None
    s_key: str | None
    probe: Probe | None = None
    momentum_v: bool = False
    name_for: Callable[[Mapping[str, Any]], str] | None = None
    moments_optional: bool = False
    d_reason: str | None = None
    gradient: str = "torch"

    def __post_init__(self) -> None:
        if self.gradient not in GRADIENTS:
            raise TracerError(f"invalid Family gradient {self.gradient!r}; accepted: {', '.join(GRADIENTS)}")

    def gradient_options(self, group: Mapping[str, Any]) -> Mapping[str, Any]:
        """The group options that turn ``grad`` into g (``tracer.probes.gradient_convention`` reads them)."""
        if self.gradient == "torch":
            return group
        if self.gradient == "decoupled":
            return {"maximize": group.get("maximize", False), "decoupled_weight_decay": True}
        return {}

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
    # Adafactor keeps no first moment. Its s is factored for a matrix (row_var, col_var: the running averages of
    # g^2's row and column means, whose outer product over row_var's mean is the estimate): no tensor of the
    # parameter's shape, so s is empty there and the factors are recorded as state keys; a vector's s is variance.
    Family("adafactor", (optim.Adafactor,), None, "variance", moments_optional=True, gradient="decoupled"),
    # Muon's v is its momentum buffer (Nesterov or not); d is the orthogonalised update, measured.
    Family("muon", (optim.Muon,), "momentum_buffer", None, gradient="decoupled"),
    # LBFGS keeps its history (old_dirs, old_stps, d, t, ...) in the state of the first parameter only.
    Family("lbfgs", (optim.LBFGS,), None, None, gradient="raw"),
)
del optim

_registered: list[Family] = []


def register_family(family: Family) -> None:
    """Add a family to the table, ahead of ``FAMILIES`` (a package's record for its own optimizer class).

    Its ``classes`` and their subclasses are then read as it says; without a
    probe their d is measured, with one it is recomputed and checked against
    the displacement at every update. TracerError for a record that is not a
    Family, covers no optimizer class, or reuses a family's name.
    """
    if not isinstance(family, Family):
        raise TracerError(f"register_family takes a tracer.families.Family, got {type(family).__name__}")
    if not family.classes or not all(isinstance(c, type) and issubclass(c, torch.optim.Optimizer) for c in family.classes):
        raise TracerError(
            f"family {family.name!r} must name its torch.optim.Optimizer subclasses in classes, got {family.classes!r}"
        )
    taken = [f.name for f in (*_registered, *FAMILIES)]
    if family.name in taken:
        raise TracerError(f"a family named {family.name!r} is already in the table; pick another name")
    _registered.insert(0, family)


def unregister_family(name: str) -> None:
    """Remove a family added by ``register_family`` (tests; a package unloading); the built-in ones stay."""
    _registered[:] = [f for f in _registered if f.name != name]


def _implementation(cls: type, name: str) -> Any:
    """The function behind ``cls.name``, unwrapped (torch wraps ``step`` in hooks on the class itself)."""
    attribute = getattr(cls, name, None)
    return None if attribute is None else inspect.unwrap(attribute)


def _overridden(cls: type, family: Family) -> str | None:
    """The arithmetic method ``cls`` defines over the family's own class, or None where it runs the family's."""
    base = next(c for c in cls.__mro__ if c in family.classes)
    for name in _ARITHMETIC_METHODS:
        if _implementation(cls, name) is not _implementation(base, name):
            return f"{name}()"
    return None


def _qualified(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def family_of(optimizer: torch.optim.Optimizer) -> Family:
    """The family of an optimizer: its record in the table, or one of its own with d measured.

    A subclass of a table class that overrides ``step`` or ``_init_group``
    does not run the family's arithmetic: it gets a family of its own (its
    class name lowercased, d measured, no v or s, g the raw gradient,
    ``d_reason`` saying why); so does a class outside the table.
    TracerError only for an object without ``param_groups`` and step hooks.
    """
    cls = type(optimizer)
    if not isinstance(getattr(optimizer, "param_groups", None), list) or not hasattr(optimizer, "register_step_post_hook"):
        raise TracerError(
            f"cannot trace optimizer {_qualified(cls)}: it has no param_groups list and step hooks; "
            f"accepted: any torch.optim.Optimizer"
        )
    for family in (*_registered, *FAMILIES):
        if not isinstance(optimizer, family.classes):
            continue
        method = _overridden(cls, family)
        if method is None:
            return family
        return Family(
            cls.__name__.lower(), (cls,), None, None, gradient="raw",
            d_reason=f"{_qualified(cls)} overrides {method} of the {family.name} family: d measured, not recomputed",
        )
    return Family(cls.__name__.lower(), (cls,), None, None, gradient="raw", d_reason=f"{_qualified(cls)} is not in the family table: d measured")


STATE_KEY_NAMES = ("v", "s")


def with_state_keys(family: Family, state_keys: Mapping[str, str | None] | None) -> Family:
    """The family with v and s read from these optimizer state keys (``Recorder(state_keys=...)``); a key not given keeps the family's.

    TracerError for anything but a mapping of "v" and/or "s" to state key strings (or None: no such quantity).
    Whether the optimizer has the keys is checked once it has state (``check_state_keys``).
    """
    if state_keys is None:
        return family
    if not isinstance(state_keys, Mapping) or not all(
        key in STATE_KEY_NAMES and (value is None or isinstance(value, str)) for key, value in state_keys.items()
    ):
        raise TracerError(
            f"invalid state_keys {state_keys!r}; accepted: a dict mapping 'v' and/or 's' to optimizer state keys, "
            f"e.g. {{'v': 'exp_avg', 's': 'exp_avg_sq'}}"
        )
    return dataclasses.replace(
        family,
        v_key=state_keys.get("v", family.v_key),
        s_key=state_keys.get("s", family.s_key),
        momentum_v=family.momentum_v and "v" not in state_keys,
        # A parameter whose state lacks a named key, or holds it in another shape, has no v or s cells.
        moments_optional=True,
    )


def check_state_keys(family: Family, optimizer: torch.optim.Optimizer, given: Mapping[str, str | None]) -> None:
    """TracerError if a ``state_keys`` value is in no parameter's state (call once the optimizer has state)."""
    seen = sorted({str(key) for state in optimizer.state.values() for key in state})
    if not seen:
        return
    for name, key in given.items():
        if key is not None and key not in seen:
            raise TracerError(
                f"state_keys {name}={key!r} is not an optimizer state key; {type(optimizer).__name__}'s state "
                f"after its first step has {', '.join(seen)}"
            )


def optimizer_name(optimizer: torch.optim.Optimizer) -> str:
    """The toolkit's name for what the optimizer runs (sgd, momentum, rmsprop, adam, adamw, nadam, lion, ...), from group 0."""
    return family_of(optimizer).display_name(optimizer.param_groups[0])


def group_lr(group: Mapping[str, Any]) -> float | None:
    """A group's learning rate as a float; None where it has none usable as d's scale (absent, not a number)."""
    value = group.get("lr")
    if isinstance(value, bool):
        return None
    try:
        lr = option_value(value)
    except (TypeError, ValueError, RuntimeError):
        return None
    return lr if math.isfinite(lr) else None


def measured_d(before: Tensor, after: Tensor, lr: float) -> Tensor:
    """``(theta - theta_next) / lr`` in float64: d measured from the displacement."""
    return (before.double() - after.double()) / lr


def _moment(state: Mapping[str, Any], key: str | None, optional: bool) -> Tensor | None:
    if key is None:
        return None
    value = state.get(key)
    if value is None and not optional:
        raise TracerError(
            f"optimizer state has no {key!r} after step(); it has {', '.join(map(str, state)) or 'nothing'}: "
            f"name the keys of v and s with Recorder(state_keys=...)"
        )
    return value if isinstance(value, Tensor) else None


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
    A measured family's v or s may hold None for a parameter whose state
    lacks the key (``moments_optional``).
    """
    if all(family.recomputes(theta.dtype) for theta in before):
        return family.probe(list(grads), list(states), group, list(before))
    g = used_gradient(list(grads), list(before), family.gradient_options(group))
    v_key, s_key = family.moment_keys(group)
    optional = family.moments_optional
    v = None if v_key is None else tuple(_moment(state, v_key, optional) for state in states)
    s = None if s_key is None else tuple(_moment(state, s_key, optional) for state in states)
    lr = group_lr(group)
    d = None
    if lr is not None and lr > 0:
        d = tuple(measured_d(b, a, lr) for b, a in zip(before, after))
    return ProbeResult(g=tuple(g), v=v, s=s, d=d)
