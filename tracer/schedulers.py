"""Learning-rate schedulers from short specs a user can type.

Grammar::

    spec     := NAME [ ":" argument { ";" argument } ]
    argument := KEY "=" VALUE
    VALUE    := a number, true/false, a word, or a comma-separated list
    at-list  := item { "," item };  item := N | START "-" STOP [ "/" STRIDE ]

Keys are the torch scheduler's own argument names. Values are checked as the
scheduler needs them: step counts (step_size, T_max, T_0, T_mult,
total_iters, total_steps, epochs, steps_per_epoch, step_size_up/down,
milestones, at) are integers >= 1; gamma, factor, max_lr, div_factor and
final_div_factor are > 0; eta_min, base_lr and power are >= 0; pct_start,
end_factor, constant's factor and the momenta lie in [0, 1]; LinearLR's
start_factor in (0, 1]. OneCycleLR must not be stepped more often than
its total_steps (`check_steps`). Examples::

    step:step_size=4;gamma=0.9                 StepLR
    multistep:milestones=4,8,10;gamma=0.8      MultiStepLR
    exponential:gamma=0.9                      ExponentialLR
    linear:start_factor=0.5;total_iters=4      LinearLR
    cosine:T_max=100                           CosineAnnealingLR
    onecycle:max_lr=0.1;total_steps=800        OneCycleLR
    multiplicative:factor=0.5;at=5,10,15,20    MultiplicativeLR
    multiplicative:factor=0.8;at=6-24/2        the same, at 6, 8, ..., 24

`multiplicative` is MultiplicativeLR with the lambda built from the spec (no
code is evaluated): after the scheduler's t-th step (t = 1, 2, ...) the
learning rate is multiplied by `factor` when t is in `at`, by 1 otherwise;
without `at` it is multiplied at every step. A range START-STOP/STRIDE is
inclusive at both ends (6-24/2 is 6, 8, ..., 24); STRIDE defaults to 1.

What t counts depends on when the scheduler steps (the runner's
`scheduler_every`): updates for the orbit runs, as in the article, epochs for
the linear-regression runs.

`parse_scheduler_spec(text)` gives a frozen `SchedulerSpec` whose `text` is the
canonical form written into the trace's metadata (keys in the scheduler's
order, numbers in their shortest form), so equal schedules read equal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from tracer.errors import TracerError


@dataclass(frozen=True)
class IntRange:
    """START-STOP/STRIDE, inclusive at both ends; a single count is START == STOP."""

    start: int
    stop: int
    stride: int = 1

    def __contains__(self, count: int) -> bool:
        return self.start <= count <= self.stop and (count - self.start) % self.stride == 0

    def __str__(self) -> str:
        if self.start == self.stop:
            return str(self.start)
        return f"{self.start}-{self.stop}" + (f"/{self.stride}" if self.stride != 1 else "")


# ---------------------------------------------------------------- value types
# Each parser takes the text after "=" and returns the value, or raises
# ValueError with the kind of value expected.


def _parse_int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError("an integer") from None


def _parse_float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError("a number") from None


def _parse_bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("true", "yes", "1"):
        return True
    if lowered in ("false", "no", "0"):
        return False
    raise ValueError("true or false")


def _parse_ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(item) for item in text.split(","))
    except ValueError:
        raise ValueError("a comma-separated list of integers") from None


def _parse_counts(text: str) -> tuple[IntRange, ...]:
    expected = "a comma-separated list of counts N or ranges START-STOP[/STRIDE]"
    items = []
    for item in text.split(","):
        item = item.strip()
        try:
            span, _, stride = item.partition("/")
            start, dash, stop = span.partition("-")
            first = int(start)
            last = int(stop) if dash else first
            step = int(stride) if stride else 1
        except ValueError:
            raise ValueError(expected) from None
        if step < 1 or last < first or (stride and not dash):
            raise ValueError(expected + " with START <= STOP and STRIDE >= 1")
        # Canonical form: STOP is the last count the range holds, and a range
        # of one count has stride 1 ("3-4/2" is "3"), so the spec's text
        # reparses to the identical spec.
        last = first + (last - first) // step * step
        items.append(IntRange(first, last, step if last > first else 1))
    return tuple(items)


def _at_least(parse: Callable[[str], Any], low: float, *, strict: bool = False,
              high: float | None = None, what: str = "") -> Callable[[str], Any]:
    """`parse`, then a bound: values below `low` (or equal when `strict`) or above `high` are
    refused, as the scheduler would misbehave on them (cosine:T_max=-5 climbs back up)."""
    kind = what or ("an integer" if parse in (_parse_int, _parse_ints, _parse_counts) else "a number")
    bound = f"> {low:g}" if strict else f">= {low:g}"
    expected = f"{kind} {bound}" + (f" and <= {high:g}" if high is not None else "")

    def check(value: Any) -> bool:
        return (value > low if strict else value >= low) and (high is None or value <= high)

    def parse_bounded(text: str) -> Any:
        value = parse(text)
        items = value if isinstance(value, tuple) else (value,)
        for item in items:
            if isinstance(item, IntRange):
                item = item.start
            if not check(item):
                raise ValueError(expected)
        return value

    return parse_bounded


_COUNT = _at_least(_parse_int, 1)                       # step counts: step_size, T_max, total_iters, ...
_POSITIVE = _at_least(_parse_float, 0, strict=True)     # gamma, factors, learning rates
_NON_NEGATIVE = _at_least(_parse_float, 0)              # eta_min, base_lr
_FRACTION = _at_least(_parse_float, 0, high=1)          # pct_start, end_factor, momenta
_START_FACTOR = _at_least(_parse_float, 0, strict=True, high=1)
_MILESTONES = _at_least(_parse_ints, 1, what="a comma-separated list of integers, each")
_AT = _at_least(_parse_counts, 1, what="a comma-separated list of counts N or ranges START-STOP[/STRIDE], each")


def _choice(*words: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in words:
            raise ValueError("one of " + ", ".join(words))
        return text

    return parse


def _format(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return ",".join(_format(item) for item in value)
    if isinstance(value, float):
        return repr(value)
    return str(value)


# ------------------------------------------------------------------ registry


class _FactorAt:
    """MultiplicativeLR's lambda: `factor` at the listed counts, 1 elsewhere (picklable)."""

    def __init__(self, factor: float, at: tuple[IntRange, ...] | None) -> None:
        self.factor, self.at = factor, at

    def __call__(self, count: int) -> float:
        if self.at is None or any(count in item for item in self.at):
            return self.factor
        return 1.0


def _multiplicative(lr_scheduler, optimizer, factor: float, at: tuple[IntRange, ...] | None = None):
    return lr_scheduler.MultiplicativeLR(optimizer, lr_lambda=_FactorAt(factor, at))


@dataclass(frozen=True)
class _Kind:
    torch_name: str                                # class in torch.optim.lr_scheduler
    keys: dict[str, Callable[[str], Any]]          # key -> value parser, in canonical order
    required: tuple[str, ...] = ()
    build: Callable | None = None                  # custom builder (lambda-based schedulers)


SCHEDULERS: dict[str, _Kind] = {
    "step": _Kind("StepLR", {"step_size": _COUNT, "gamma": _POSITIVE}, ("step_size",)),
    "multistep": _Kind("MultiStepLR", {"milestones": _MILESTONES, "gamma": _POSITIVE}, ("milestones",)),
    "exponential": _Kind("ExponentialLR", {"gamma": _POSITIVE}, ("gamma",)),
    "linear": _Kind(
        "LinearLR", {"start_factor": _START_FACTOR, "end_factor": _FRACTION, "total_iters": _COUNT}
    ),
    "constant": _Kind("ConstantLR", {"factor": _FRACTION, "total_iters": _COUNT}),
    "polynomial": _Kind("PolynomialLR", {"total_iters": _COUNT, "power": _NON_NEGATIVE}),
    "cosine": _Kind("CosineAnnealingLR", {"T_max": _COUNT, "eta_min": _NON_NEGATIVE}, ("T_max",)),
    "cosine-restarts": _Kind(
        "CosineAnnealingWarmRestarts",
        {"T_0": _COUNT, "T_mult": _COUNT, "eta_min": _NON_NEGATIVE},
        ("T_0",),
    ),
    "cyclic": _Kind(
        "CyclicLR",
        {
            "base_lr": _NON_NEGATIVE,
            "max_lr": _POSITIVE,
            "step_size_up": _COUNT,
            "step_size_down": _COUNT,
            "mode": _choice("triangular", "triangular2", "exp_range"),
            "gamma": _POSITIVE,
            "cycle_momentum": _parse_bool,
            "base_momentum": _FRACTION,
            "max_momentum": _FRACTION,
        },
        ("base_lr", "max_lr"),
    ),
    "onecycle": _Kind(
        "OneCycleLR",
        {
            "max_lr": _POSITIVE,
            "total_steps": _COUNT,
            "epochs": _COUNT,
            "steps_per_epoch": _COUNT,
            "pct_start": _FRACTION,
            "anneal_strategy": _choice("cos", "linear"),
            "cycle_momentum": _parse_bool,
            "base_momentum": _FRACTION,
            "max_momentum": _FRACTION,
            "div_factor": _POSITIVE,
            "final_div_factor": _POSITIVE,
            "three_phase": _parse_bool,
        },
        ("max_lr",),
    ),
    "multiplicative": _Kind(
        "MultiplicativeLR", {"factor": _POSITIVE, "at": _AT}, ("factor",), build=_multiplicative
    ),
}
SCHEDULER_NAMES: tuple[str, ...] = tuple(SCHEDULERS)


@dataclass(frozen=True)
class SchedulerSpec:
    """A parsed scheduler spec: the name and its arguments in canonical order."""

    name: str
    arguments: tuple[tuple[str, Any], ...] = ()

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.arguments)

    @property
    def text(self) -> str:
        """The canonical spec, e.g. 'multistep:milestones=5,10,15,20;gamma=0.5'."""
        if not self.arguments:
            return self.name
        return self.name + ":" + ";".join(f"{key}={_format(value)}" for key, value in self.arguments)

    def __str__(self) -> str:
        return self.text


def parse_scheduler_spec(text: str) -> SchedulerSpec:
    """Parse `name:key=value;key=value`; TracerError says what was expected."""
    if not isinstance(text, str) or not text.strip():
        raise TracerError(f"empty scheduler spec {text!r}; expected NAME[:KEY=VALUE;...], NAME one of: "
                          + ", ".join(SCHEDULER_NAMES))
    name, _, rest = text.strip().partition(":")
    name = name.strip().lower()
    kind = SCHEDULERS.get(name)
    if kind is None:
        raise TracerError(f"unknown scheduler {name!r} in spec {text!r}; expected one of: "
                          + ", ".join(SCHEDULER_NAMES))
    given: dict[str, Any] = {}
    for argument in filter(None, (part.strip() for part in rest.split(";"))):
        key, equals, value = (part.strip() for part in argument.partition("="))
        if not equals or not key or not value:
            raise TracerError(f"bad argument {argument!r} in scheduler spec {text!r}; expected KEY=VALUE")
        if key not in kind.keys:
            raise TracerError(f"unknown key {key!r} for scheduler {name!r}; valid keys: " + ", ".join(kind.keys))
        if key in given:
            raise TracerError(f"key {key!r} given twice in scheduler spec {text!r}")
        try:
            given[key] = kind.keys[key](value)
        except ValueError as expected:
            raise TracerError(f"bad value {value!r} for {name}:{key}; expected {expected}") from None
    missing = [key for key in kind.required if key not in given]
    if missing:
        raise TracerError(f"scheduler {name!r} needs " + ", ".join(missing) + f"; got {text!r}")
    return SchedulerSpec(name, tuple((key, given[key]) for key in kind.keys if key in given))


def step_limit(spec: SchedulerSpec) -> int | None:
    """How many times the scheduler may step, or None for no limit.

    OneCycleLR plans `total_steps` (or epochs * steps_per_epoch) steps and
    raises on the step after the last; the others take any number."""
    if spec.name != "onecycle":
        return None
    kwargs = spec.kwargs
    if "total_steps" in kwargs:
        return kwargs["total_steps"]
    if "epochs" in kwargs and "steps_per_epoch" in kwargs:
        return kwargs["epochs"] * kwargs["steps_per_epoch"]
    raise TracerError(f"scheduler 'onecycle' needs total_steps, or epochs and steps_per_epoch; got {spec.text!r}")


def check_steps(spec: SchedulerSpec, steps: int, counted: str) -> None:
    """TracerError, before training, when the scheduler cannot step `steps` times.

    `counted` says what one step is ("once per update, 2 epochs of 8 updates")."""
    limit = step_limit(spec)
    if limit is not None and steps > limit:
        key = "total_steps" if "total_steps" in spec.kwargs else "epochs * steps_per_epoch"
        raise TracerError(
            f"scheduler {spec.text!r} plans {limit} steps ({key}) but the run steps it {steps} times "
            f"({counted}); give {key} >= {steps}"
        )


def build_scheduler(optimizer, spec: str | SchedulerSpec | None):
    """The torch scheduler for `spec` on `optimizer`, or None for no spec."""
    if spec is None:
        return None
    if isinstance(spec, str):
        spec = parse_scheduler_spec(spec)
    from torch.optim import lr_scheduler

    kind = SCHEDULERS[spec.name]
    try:
        if kind.build is not None:
            return kind.build(lr_scheduler, optimizer, **spec.kwargs)
        return getattr(lr_scheduler, kind.torch_name)(optimizer, **spec.kwargs)
    except (ValueError, TypeError, KeyError) as error:
        # torch's own checks (e.g. OneCycleLR needs total_steps or epochs and
        # steps_per_epoch; cycle_momentum needs an optimizer with momentum).
        raise TracerError(f"cannot build scheduler {spec.text!r}: {error}") from None
