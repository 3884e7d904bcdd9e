"""Is an optimizer equal to a reference, update by update? The library behind ``assert_optimizers_match`` and ``tracer check-optimizer``.

For a hand-written, ported or fused optimizer (the *candidate*) and the one
it should equal (the *reference*, e.g. ``torch.optim.Adam``)::

    from tracer.testing import assert_optimizers_match
    assert_optimizers_match(MyAdam, torch.optim.Adam, configs=[{"lr": 0.01}])

Both run side by side, one *case* at a time (a configuration, a dtype, with
no scheduler or with one of the given schedulers), on identical parameters.
Before each update both get the same gradient: the gradient of a random
quadratic whose linear term changes every update (seeded),

    g_k(p) = c_k * n_k + CURVATURE * p,    n_k ~ N(0, 1),  c_k in {1, 2, 3},

which a closure recomputes wherever an optimizer evaluates it (L-BFGS does,
several times per update). After every update the parameters, every state
tensor the two have in common, and the numeric hyperparameters of the groups
(lr, betas, ... as schedulers change them) are compared.

A *difference in ulps* is ``|candidate - reference|`` in units in the last
place of the reference value in the tensor's own dtype (``tracer.ulps``, the
definition ``tracer diff`` uses too): one float32 ulp apart is 1, whatever
the magnitude. ``ulps=0`` asks for bit for bit: identical bits, NaN included.

``tracer check-optimizer`` is this module's command line (``tracer.optimizer_check.cli``).
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.optim import lr_scheduler

from tracer.errors import TracerError
from tracer.ulps import ulps_between

OptimizerFactory = Callable[..., torch.optim.Optimizer]
"""An optimizer class or a function ``(params, **config) -> Optimizer``."""
SchedulerFactory = Callable[[torch.optim.Optimizer], Any]
"""A function ``optimizer -> scheduler``; the scheduler's ``step()`` runs after every update."""

CURVATURE = 0.1
"""Curvature of the quadratic the gradients come from: small, so that lr up to
1 neither diverges nor stalls in 25 updates, non-zero, so that a closure's
line search has a minimum to find."""

DEFAULT_SHAPES: tuple[tuple[int, ...], ...] = ((4,), (3, 5), (2, 3, 4), ())
"""A vector, a matrix, a 3-d tensor and a 0-d scalar: the shapes algorithms special-case."""
DEFAULT_DTYPES: tuple[torch.dtype, ...] = (torch.float32, torch.float64)
DEFAULT_SCHEDULERS: Mapping[str, SchedulerFactory] = {
    # lr halves every 5 updates: catches an optimizer that reads lr once at construction.
    "StepLR": lambda optimizer: lr_scheduler.StepLR(optimizer, step_size=5, gamma=0.5),
}


# ---------------------------------------------------------------- what is compared


@dataclass(frozen=True)
class Case:
    """One side-by-side run: a configuration, a dtype, a scheduler (or none)."""

    config: Mapping[str, Any]
    dtype: torch.dtype
    scheduler: str | None

    def describe(self) -> str:
        scheduler = f"scheduler {self.scheduler}" if self.scheduler else "no scheduler"
        return f"config {dict(self.config)!r}, {_dtype_name(self.dtype)}, {scheduler}"


@dataclass(frozen=True)
class TensorDifference:
    """Where one compared tensor (or number) differs at one update.

    ``what`` names it ("parameter 1", "parameter 1 state 'exp_avg'",
    "group 0 'lr'"); ``ulps`` (in ``precision``, the dtype's) and ``absolute``
    are the largest differences over its elements (inf where one side is NaN
    or the shapes differ); ``element`` is the index of the worst one with the
    two values there.
    """

    what: str
    ulps: float
    absolute: float
    element: tuple[int, ...] | None = None
    candidate_value: Any = None
    reference_value: Any = None
    detail: str = ""
    state_key: str | None = None
    precision: str = ""

    def describe(self) -> str:
        if self.detail:
            return f"{self.what}: {self.detail}"
        where = f" at element {self.element}" if self.element else ""
        return (
            f"{self.what}: differs by up to {self.absolute:.3g} ({_format_ulps(self.ulps, self.precision)})"
            f"{where}: candidate {self.candidate_value!r}, reference {self.reference_value!r}"
        )


@dataclass
class CheckResult:
    """The outcome of ``compare_optimizers``: equal, or where the two first part.

    ``differences`` are all the tensors that differ at ``update`` (1-based),
    the first update where any did, in ``case``. ``only_in_candidate`` and
    ``only_in_reference`` are the state keys (after ``state_key_map``) that
    one optimizer kept and the other did not, over every case and update.
    """

    candidate: str
    reference: str
    ulps: float
    steps: int
    cases: list[Case]
    shapes: list[tuple[int, ...]]
    seed: int
    case: Case | None = None
    update: int | None = None
    differences: list[TensorDifference] = field(default_factory=list)
    only_in_candidate: set[str] = field(default_factory=set)
    only_in_reference: set[str] = field(default_factory=set)
    compared_state_keys: set[str] = field(default_factory=set)
    state_key_map: dict[str, str] = field(default_factory=dict)

    @property
    def equal(self) -> bool:
        return not self.differences

    def report(self) -> str:
        rule = "bit for bit" if self.ulps == 0 else f"within {self.ulps:g} ulps"
        lines = []
        if self.equal:
            lines.append(
                f"{self.candidate} matches {self.reference} {rule}: {len(self.cases)} cases x "
                f"{self.steps} updates, parameters of shapes {self.shapes}"
            )
        else:
            assert self.case is not None
            lines.append(
                f"{self.candidate} differs from {self.reference} ({rule}) first at update "
                f"{self.update} of {self.steps}, {self.case.describe()}:"
            )
            lines += [f"  {difference.describe()}" for difference in self.differences]
            agreeing = sorted(self.compared_state_keys - {d.state_key for d in self.differences})
            if agreeing:
                lines.append(f"  equal at this update: state {', '.join(agreeing)} (of every parameter)")
        state = ", ".join(sorted(self.compared_state_keys)) or "none"
        lines.append(f"state keys compared: {state}")
        if self.only_in_candidate:
            lines.append(f"state keys only the candidate has: {', '.join(sorted(self.only_in_candidate))}")
        if self.only_in_reference:
            lines.append(f"state keys only the reference has: {', '.join(sorted(self.only_in_reference))}")
        if not self.equal:
            assert self.case is not None
            scheduler = f"{{{self.case.scheduler!r}: ...}}" if self.case.scheduler else "{}"
            key_map = f", state_key_map={self.state_key_map!r}" if self.state_key_map else ""
            lines.append(
                f"re-run this case alone: assert_optimizers_match(candidate, reference, "
                f"configs=[{dict(self.case.config)!r}], shapes={self.shapes!r}, "
                f"dtypes=[torch.{_dtype_name(self.case.dtype)}], steps={self.update}, "
                f"schedulers={scheduler}, seed={self.seed}, ulps={self.ulps:g}{key_map})"
            )
        return "\n".join(lines)


# ---------------------------------------------------------------- the public API


def compare_optimizers(
    candidate: OptimizerFactory,
    reference: OptimizerFactory,
    *,
    configs: Sequence[Mapping[str, Any]] = ({},),
    shapes: Sequence[tuple[int, ...]] = DEFAULT_SHAPES,
    dtypes: Sequence[torch.dtype] = DEFAULT_DTYPES,
    steps: int = 25,
    schedulers: Mapping[str, SchedulerFactory] = DEFAULT_SCHEDULERS,
    ulps: float = 0,
    state_key_map: Mapping[str, str] | None = None,
    seed: int = 0,
) -> CheckResult:
    """Run ``candidate`` and ``reference`` side by side; return where they first differ, if anywhere.

    Args:
        candidate: the optimizer under test: a class or a factory
            ``(params, **config) -> Optimizer``.
        reference: the optimizer it should equal, given the same way.
        configs: keyword arguments given to both, one case each ({} = defaults).
        shapes: the shapes of the parameters (all in one parameter group).
        dtypes: one case each.
        steps: updates per case; compared after every one.
        schedulers: name -> ``optimizer -> scheduler``; every case runs
            without a scheduler and with each of these.
        ulps: the largest accepted difference (see the module docstring);
            0 is bit for bit.
        state_key_map: candidate state key -> reference state key, for
            candidates that name their state otherwise (``{"m": "exp_avg"}``).
        seed: seeds the parameters and the gradients.

    Raises:
        TracerError: a factory is not callable, does not return an optimizer,
            or rejects a configuration; bad ``steps``, ``ulps`` or ``shapes``.
    """
    _check_arguments(candidate, reference, steps, ulps, configs)
    key_map = dict(state_key_map or {})
    cases = [
        Case(dict(config), dtype, scheduler)
        for config in configs
        for dtype in dtypes
        for scheduler in (None, *schedulers)
    ]
    result = CheckResult(
        candidate=_name(candidate),
        reference=_name(reference),
        ulps=ulps,
        steps=steps,
        cases=cases,
        shapes=[tuple(shape) for shape in shapes],
        seed=seed,
        state_key_map=key_map,
    )
    for case in cases:
        _run_case(candidate, reference, case, result, schedulers, key_map)
        if not result.equal:
            break
    return result


def assert_optimizers_match(
    candidate: OptimizerFactory,
    reference: OptimizerFactory,
    *,
    configs: Sequence[Mapping[str, Any]] = ({},),
    shapes: Sequence[tuple[int, ...]] = DEFAULT_SHAPES,
    dtypes: Sequence[torch.dtype] = DEFAULT_DTYPES,
    steps: int = 25,
    schedulers: Mapping[str, SchedulerFactory] = DEFAULT_SCHEDULERS,
    ulps: float = 0,
    state_key_map: Mapping[str, str] | None = None,
    seed: int = 0,
) -> CheckResult:
    """Fail with where the two part unless ``candidate`` equals ``reference`` after every update.

    The arguments are those of ``compare_optimizers``. State keys only one
    optimizer has are reported but do not fail by themselves (a port may keep
    extra buffers); check ``result.only_in_candidate`` /
    ``result.only_in_reference`` where they must not exist.

    Returns:
        The ``CheckResult`` (its ``report()`` says what was compared).

    Raises:
        AssertionError: the first update, the parameter, the state key, the
            largest difference in ulps and absolute, and the case to re-run.
        TracerError: unusable input (see ``compare_optimizers``).
    """
    result = compare_optimizers(
        candidate,
        reference,
        configs=configs,
        shapes=shapes,
        dtypes=dtypes,
        steps=steps,
        schedulers=schedulers,
        ulps=ulps,
        state_key_map=state_key_map,
        seed=seed,
    )
    if not result.equal:
        raise AssertionError(result.report())
    return result


# ---------------------------------------------------------------- one case


def _run_case(
    candidate: OptimizerFactory,
    reference: OptimizerFactory,
    case: Case,
    result: CheckResult,
    schedulers: Mapping[str, SchedulerFactory],
    key_map: Mapping[str, str],
) -> None:
    shapes, seed = result.shapes, result.seed
    candidate_params = _make_params(shapes, case.dtype, seed)
    reference_params = _make_params(shapes, case.dtype, seed)
    candidate_optimizer = _build(candidate, candidate_params, case.config)
    reference_optimizer = _build(reference, reference_params, case.config)
    stepping = [
        (candidate_optimizer, candidate_params, _takes_closure(candidate_optimizer)),
        (reference_optimizer, reference_params, _takes_closure(reference_optimizer)),
    ]
    scheduler_list = (
        [schedulers[case.scheduler](candidate_optimizer), schedulers[case.scheduler](reference_optimizer)]
        if case.scheduler
        else []
    )
    for update in range(1, result.steps + 1):
        linear_terms = _linear_terms(shapes, case.dtype, seed, update)
        for optimizer, params, takes_closure in stepping:
            _set_gradients(params, linear_terms)
            optimizer.step(_closure(params, linear_terms)) if takes_closure else optimizer.step()
        for scheduler in scheduler_list:
            scheduler.step()
        differences = _compare(
            candidate_optimizer, reference_optimizer, candidate_params, reference_params, result, key_map
        )
        if differences:
            result.case, result.update, result.differences = case, update, differences
            return


def _make_params(shapes: Sequence[tuple[int, ...]], dtype: torch.dtype, seed: int) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=generator, dtype=dtype).requires_grad_() for shape in shapes]


def _linear_terms(
    shapes: Sequence[tuple[int, ...]], dtype: torch.dtype, seed: int, update: int
) -> list[torch.Tensor]:
    """c_k * n_k of every parameter for this update: new numbers and scales every update."""
    generator = torch.Generator().manual_seed(1_000_003 * seed + update)
    return [
        torch.randn(shape, generator=generator, dtype=dtype).mul_(1.0 + (update + index) % 3)
        for index, shape in enumerate(shapes)
    ]


def _closure(params: Sequence[torch.Tensor], linear_terms: Sequence[torch.Tensor]) -> Callable[[], torch.Tensor]:
    """Set every .grad to g(p) = linear + CURVATURE p; return the loss sum((linear + CURVATURE/2 p) . p)."""

    def closure() -> torch.Tensor:
        loss = torch.zeros((), dtype=torch.float64)
        with torch.no_grad():
            for param, linear in zip(params, linear_terms, strict=True):
                param.grad = linear + CURVATURE * param
                half_way = (linear + (0.5 * CURVATURE) * param) * (param.conj() if param.is_complex() else param)
                loss += half_way.sum().real.double()
        return loss

    return closure


def _set_gradients(params: Sequence[torch.Tensor], linear_terms: Sequence[torch.Tensor]) -> None:
    """What the closure does to .grad, without the loss: for optimizers that never call the closure."""
    with torch.no_grad():
        for param, linear in zip(params, linear_terms, strict=True):
            param.grad = linear + CURVATURE * param


def _takes_closure(optimizer: torch.optim.Optimizer) -> bool:
    try:
        return len(inspect.signature(optimizer.step).parameters) > 0
    except (TypeError, ValueError):  # a builtin without a signature: try it as torch's
        return True


# ---------------------------------------------------------------- comparing


def _compare(
    candidate: torch.optim.Optimizer,
    reference: torch.optim.Optimizer,
    candidate_params: Sequence[torch.Tensor],
    reference_params: Sequence[torch.Tensor],
    result: CheckResult,
    key_map: Mapping[str, str],
) -> list[TensorDifference]:
    differences: list[TensorDifference] = []

    def check(what: str, a: Any, b: Any, state_key: str | None = None) -> None:
        difference = _difference(what, a, b, result.ulps)
        if difference is not None:
            differences.append(dataclasses.replace(difference, state_key=state_key))

    for index, (p_candidate, p_reference) in enumerate(zip(candidate_params, reference_params)):
        check(f"parameter {index}", p_candidate.detach(), p_reference.detach())
        state_candidate = {key_map.get(k, k): v for k, v in candidate.state.get(p_candidate, {}).items()}
        state_reference = reference.state.get(p_reference, {})
        result.only_in_candidate |= state_candidate.keys() - state_reference.keys()
        result.only_in_reference |= state_reference.keys() - state_candidate.keys()
        for key in sorted(state_candidate.keys() & state_reference.keys()):
            result.compared_state_keys.add(key)
            check(f"parameter {index} state {key!r}", state_candidate[key], state_reference[key], key)
    for index, (group_candidate, group_reference) in enumerate(
        zip(candidate.param_groups, reference.param_groups)
    ):
        for key in sorted(group_candidate.keys() & group_reference.keys()):
            a, b = group_candidate[key], group_reference[key]
            if key != "params" and _is_numeric(a) and _is_numeric(b):
                check(f"group {index} {key!r}", a, b)
    return differences


def _is_numeric(value: Any) -> bool:
    if isinstance(value, tuple):
        return all(_is_numeric(item) for item in value)
    return isinstance(value, (int, float, torch.Tensor)) and not isinstance(value, bool)


def _difference(what: str, a: Any, b: Any, ulps: float) -> TensorDifference | None:
    """None when ``a`` equals ``b`` (within ``ulps``); otherwise how they differ."""
    if (
        isinstance(a, torch.Tensor)
        and isinstance(b, torch.Tensor)
        and a.dtype == b.dtype
        and a.shape == b.shape
        and torch.equal(a, b)
    ):
        return None  # the common case, first and fast
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and a == b:
        return None  # hyperparameters such as lr, compared as they are
    if isinstance(a, (list, tuple)) or isinstance(b, (list, tuple)):
        if not isinstance(a, (list, tuple)) or not isinstance(b, (list, tuple)) or len(a) != len(b):
            return TensorDifference(what, math.inf, math.inf, detail=f"candidate {a!r}, reference {b!r}")
        for position, (item_a, item_b) in enumerate(zip(a, b)):
            difference = _difference(f"{what}[{position}]", item_a, item_b, ulps)
            if difference is not None:
                return difference
        return None
    if not isinstance(a, torch.Tensor) or not isinstance(b, torch.Tensor):
        numbers = [x for x in (a, b) if isinstance(x, (int, float)) and not isinstance(x, bool)]
        tensors = [x for x in (a, b) if isinstance(x, torch.Tensor)]
        if len(numbers) + len(tensors) < 2:  # anything else (a string, None): equal or not
            if a == b:
                return None
            return TensorDifference(what, math.inf, math.inf, detail=f"candidate {a!r}, reference {b!r}")
        # A number against a number (lr) or a tensor (a tensor lr on one side): compare values.
        dtype = tensors[0].dtype if tensors else torch.float64
        a, b = (x if isinstance(x, torch.Tensor) else torch.tensor(x, dtype=dtype) for x in (a, b))
    a, b = a.detach(), b.detach()
    if a.shape != b.shape and not (a.numel() == b.numel() == 1):
        return TensorDifference(
            what, math.inf, math.inf, detail=f"shape {tuple(a.shape)} in the candidate, {tuple(b.shape)} in the reference"
        )
    if a.dtype != b.dtype:
        return TensorDifference(
            what, math.inf, math.inf, detail=f"dtype {_dtype_name(a.dtype)} in the candidate, {_dtype_name(b.dtype)} in the reference"
        )
    a, b = a.reshape(b.shape).cpu(), b.cpu()
    if bitwise_equal(a, b):
        return None
    if a.is_complex():
        a, b = torch.view_as_real(a), torch.view_as_real(b)
    if not a.is_floating_point():
        mismatch = (a != b).nonzero()
        element = tuple(mismatch[0].tolist())
        return TensorDifference(what, math.inf, math.inf, element, a[element].item(), b[element].item())
    wide_a, wide_b = a.double(), b.double()
    absolute = (wide_a - wide_b).abs()
    same = (wide_a == wide_b) | (wide_a.isnan() & wide_b.isnan())
    absolute = torch.where(same, torch.zeros_like(absolute), absolute.nan_to_num(nan=math.inf))
    precision = _dtype_name(a.dtype)
    in_ulps = ulps_between(wide_a.numpy(), wide_b.numpy(), precision).reshape(-1)
    worst = int(in_ulps.argmax())
    largest_ulps = float(in_ulps[worst])
    if ulps > 0 and largest_ulps <= ulps:
        return None
    element = tuple(int(i) for i in torch.unravel_index(torch.tensor(worst), a.shape)) if a.dim() else ()
    return TensorDifference(
        what,
        largest_ulps,
        absolute.max().item(),
        element,
        a.reshape(-1)[worst].item(),
        b.reshape(-1)[worst].item(),
        precision=precision,
    )


def bitwise_equal(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Same dtype, shape and bits: torch.equal, except that NaNs with the same bits count as equal."""
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if torch.equal(a, b):
        return True
    if a.is_complex():
        a, b = torch.view_as_real(a), torch.view_as_real(b)
    if not a.is_floating_point():
        return False
    bits = {2: torch.int16, 4: torch.int32, 8: torch.int64}[a.element_size()]
    return torch.equal(a.detach().view(bits), b.detach().view(bits))


# ---------------------------------------------------------------- input checks


def _check_arguments(
    candidate: Any, reference: Any, steps: int, ulps: float, configs: Sequence[Mapping[str, Any]]
) -> None:
    for role, factory in (("candidate", candidate), ("reference", reference)):
        if not callable(factory):
            raise TracerError(
                f"the {role} {factory!r} is not callable; "
                "expected an optimizer class or a function (params, **config) -> Optimizer"
            )
        if inspect.isclass(factory) and not issubclass(factory, torch.optim.Optimizer):
            raise TracerError(
                f"the {role} {_name(factory)} is not an optimizer (not a subclass of torch.optim.Optimizer); "
                "expected an optimizer class or a function (params, **config) -> Optimizer"
            )
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise TracerError(f"steps must be a positive integer, got {steps!r}")
    if isinstance(ulps, bool) or not isinstance(ulps, (int, float)) or not ulps >= 0:
        raise TracerError(f"ulps must be a number >= 0 (0: bit for bit), got {ulps!r}")
    if isinstance(configs, Mapping) or not all(isinstance(config, Mapping) for config in configs):
        raise TracerError(f"configs must be a sequence of dicts of keyword arguments, got {configs!r}")


def _build(factory: OptimizerFactory, params: list[torch.Tensor], config: Mapping[str, Any]) -> torch.optim.Optimizer:
    # Tensor hyperparameters are copied: schedulers change a tensor lr in place.
    kwargs = {key: _fresh_copy(value) for key, value in config.items()}
    try:
        optimizer = factory(params, **kwargs)
    except (TypeError, ValueError, RuntimeError) as error:
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise TracerError(f"{_name(factory)} rejects the configuration {dict(config)!r}: {message}") from error
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TracerError(
            f"{_name(factory)} returned {type(optimizer).__name__}, not a torch.optim.Optimizer; "
            "expected an optimizer class or a function (params, **config) -> Optimizer"
        )
    return optimizer


def _fresh_copy(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.clone()
    if isinstance(value, tuple):
        return tuple(_fresh_copy(item) for item in value)
    return value


def _name(factory: Any) -> str:
    if hasattr(factory, "func"):  # functools.partial: name the function and its fixed options
        options = ", ".join(f"{key}={value!r}" for key, value in factory.keywords.items())
        return f"{_name(factory.func)}({options})"
    module = getattr(factory, "__module__", None)
    name = getattr(factory, "__qualname__", None) or repr(factory)
    return f"{module}.{name}" if module and module != "builtins" else name


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _format_ulps(value: float, precision: str = "") -> str:
    """``value`` ulps in words: "1 float32 ulp", "2.5 float32 ulps", "inf float64 ulps"."""
    number = "inf" if math.isinf(value) else f"{value:.3g}"
    return " ".join(filter(None, [number, precision, "ulp" if value == 1 else "ulps"]))
