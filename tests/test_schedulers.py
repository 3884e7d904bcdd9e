"""Scheduler specs: parsing, canonical text, the schedulers they build, and errors as data."""

import pytest
import torch

from tracer.errors import TracerError
from tracer.schedulers import SCHEDULER_NAMES, IntRange, SchedulerSpec, build_scheduler, parse_scheduler_spec


def _lrs(spec: str, steps: int, lr: float = 0.12, optimizer_class=torch.optim.Adam) -> list[float]:
    """The lr in effect at each of `steps` updates."""
    param = torch.nn.Parameter(torch.zeros(()))
    optimizer = optimizer_class([param], lr=lr)
    scheduler = build_scheduler(optimizer, spec)
    lrs = []
    for _ in range(steps):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


CANONICAL = [
    # (typed, canonical)
    ("step:step_size=4;gamma=0.9", "step:step_size=4;gamma=0.9"),
    ("step:gamma=0.90;step_size=4", "step:step_size=4;gamma=0.9"),
    (" multistep : milestones=4, 8,10 ; gamma=.8 ", "multistep:milestones=4,8,10;gamma=0.8"),
    ("exponential:gamma=9e-1", "exponential:gamma=0.9"),
    ("linear:start_factor=0.5;total_iters=4", "linear:start_factor=0.5;total_iters=4"),
    ("cosine:T_max=100", "cosine:T_max=100"),
    ("onecycle:max_lr=0.1;total_steps=800;three_phase=yes", "onecycle:max_lr=0.1;total_steps=800;three_phase=true"),
    ("multiplicative:at=5,10,15,20;factor=0.5", "multiplicative:factor=0.5;at=5,10,15,20"),
    ("multiplicative:factor=0.8;at=6-24/2", "multiplicative:factor=0.8;at=6-24/2"),
    ("multiplicative:factor=0.8;at=6-24/1,30", "multiplicative:factor=0.8;at=6-24,30"),
    ("MultiStep:milestones=3", "multistep:milestones=3"),
    ("constant", "constant"),
]


@pytest.mark.parametrize("typed, canonical", CANONICAL, ids=[c for _, c in CANONICAL])
def test_canonical_text_reparses_to_the_same_spec(typed, canonical):
    spec = parse_scheduler_spec(typed)
    assert spec.text == str(spec) == canonical
    assert parse_scheduler_spec(canonical) == spec
    with pytest.raises(AttributeError):
        spec.name = "other"  # frozen


def test_parsed_values_have_their_types():
    spec = parse_scheduler_spec("multiplicative:factor=1;at=5,6-10/2")
    assert spec == SchedulerSpec("multiplicative", (("factor", 1.0), ("at", (IntRange(5, 5), IntRange(6, 10, 2)))))
    assert isinstance(spec.kwargs["factor"], float)
    assert [n for n in range(12) if any(n in r for r in spec.kwargs["at"])] == [5, 6, 8, 10]


def test_multiplicative_range_is_the_articles_lambda():
    # The article's lambda, verbatim: 0.8 if 6 <= t <= 24 and t even.
    article = torch.optim.lr_scheduler.MultiplicativeLR
    param = torch.nn.Parameter(torch.zeros(()))
    optimizer = torch.optim.Adam([param], lr=0.12)
    reference = article(optimizer, lr_lambda=lambda t: 0.8 if (6 <= t <= 24 and t % 2 == 0) else 1.0)
    expected = []
    for _ in range(40):
        expected.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        reference.step()
    assert _lrs("multiplicative:factor=0.8;at=6-24/2", 40) == expected
    five = _lrs("multiplicative:factor=0.5;at=5,10,15,20", 25)
    assert five[:5] == [0.12] * 5 and five[5] == 0.06 and five[-1] == 0.12 / 16


def test_multiplicative_without_at_applies_every_step():
    assert _lrs("multiplicative:factor=0.5", 4, lr=1.0) == [1.0, 0.5, 0.25, 0.125]


@pytest.mark.parametrize(
    "spec, torch_class, kwargs",
    [
        ("step:step_size=4;gamma=0.9", "StepLR", {"step_size": 4, "gamma": 0.9}),
        ("multistep:milestones=4,8;gamma=0.8", "MultiStepLR", {"milestones": [4, 8], "gamma": 0.8}),
        ("exponential:gamma=0.9", "ExponentialLR", {"gamma": 0.9}),
        ("linear:start_factor=0.5;total_iters=4", "LinearLR", {"start_factor": 0.5, "total_iters": 4}),
        ("cosine:T_max=10;eta_min=0.001", "CosineAnnealingLR", {"T_max": 10, "eta_min": 0.001}),
        ("cosine-restarts:T_0=5;T_mult=2", "CosineAnnealingWarmRestarts", {"T_0": 5, "T_mult": 2}),
        ("polynomial:total_iters=8;power=2", "PolynomialLR", {"total_iters": 8, "power": 2.0}),
        ("constant:factor=0.5;total_iters=3", "ConstantLR", {"factor": 0.5, "total_iters": 3}),
        ("onecycle:max_lr=0.1;total_steps=30", "OneCycleLR", {"max_lr": 0.1, "total_steps": 30}),
        ("cyclic:base_lr=0.01;max_lr=0.1;step_size_up=5;mode=triangular2", "CyclicLR",
         {"base_lr": 0.01, "max_lr": 0.1, "step_size_up": 5, "mode": "triangular2"}),
    ],
)
def test_spec_builds_the_same_schedule_as_torch(spec, torch_class, kwargs):
    param = torch.nn.Parameter(torch.zeros(()))
    optimizer = torch.optim.SGD([param], lr=0.12, momentum=0.9)
    reference = getattr(torch.optim.lr_scheduler, torch_class)(optimizer, **kwargs)
    expected = []
    for _ in range(30):
        expected.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        reference.step()
    assert _lrs(spec, 30, optimizer_class=lambda p, lr: torch.optim.SGD(p, lr=lr, momentum=0.9)) == expected


def test_no_spec_no_scheduler():
    param = torch.nn.Parameter(torch.zeros(()))
    assert build_scheduler(torch.optim.SGD([param], lr=0.1), None) is None


ERRORS = [
    # (spec, message regex)
    ("", r"empty scheduler spec ''; expected NAME\[:KEY=VALUE;...\]"),
    ("plateau:patience=3", r"unknown scheduler 'plateau' .*expected one of: step, multistep, exponential"),
    ("step", r"scheduler 'step' needs step_size"),
    ("step:gama=0.9;step_size=4", r"unknown key 'gama' for scheduler 'step'; valid keys: step_size, gamma"),
    ("step:step_size=4.5", r"bad value '4.5' for step:step_size; expected an integer"),
    ("exponential:gamma=fast", r"bad value 'fast' for exponential:gamma; expected a number"),
    ("multistep:milestones=4;8", r"bad argument '8' .*expected KEY=VALUE"),
    ("multistep:milestones=a,b", r"expected a comma-separated list of integers"),
    ("multiplicative:factor=0.5;at=10-5", r"bad value '10-5' for multiplicative:at; expected .*START <= STOP"),
    ("multiplicative:factor=0.5;at=6-24/0", r"STRIDE >= 1"),
    ("multiplicative:factor=0.5;at=7/2", r"bad value '7/2' for multiplicative:at"),
    ("onecycle:max_lr=0.1;three_phase=maybe", r"expected true or false"),
    ("cyclic:base_lr=0.01;max_lr=0.1;mode=sine", r"expected one of triangular, triangular2, exp_range"),
    ("step:step_size=4;step_size=5", r"key 'step_size' given twice"),
    ("onecycle:max_lr=0.1", r"cannot build scheduler 'onecycle:max_lr=0.1': You must define either total_steps"),
    # Values the scheduler would misbehave on (torch accepts some of them: T_max=-5 climbs back up).
    ("cosine:T_max=-5", r"bad value '-5' for cosine:T_max; expected an integer >= 1$"),
    ("cosine:T_max=10;eta_min=-0.1", r"bad value '-0.1' for cosine:eta_min; expected a number >= 0$"),
    ("step:step_size=0", r"bad value '0' for step:step_size; expected an integer >= 1$"),
    ("exponential:gamma=0", r"bad value '0' for exponential:gamma; expected a number > 0$"),
    ("linear:start_factor=0", r"bad value '0' for linear:start_factor; expected a number > 0 and <= 1$"),
    ("constant:factor=1.5", r"bad value '1.5' for constant:factor; expected a number >= 0 and <= 1$"),
    ("multistep:milestones=0,4", r"expected a comma-separated list of integers, each >= 1$"),
    ("multiplicative:factor=0.5;at=0,5", r"expected a comma-separated list of counts .*, each >= 1$"),
    ("multiplicative:factor=-0.5", r"bad value '-0.5' for multiplicative:factor; expected a number > 0$"),
    ("onecycle:max_lr=0.1;total_steps=10;pct_start=1.5", r"onecycle:pct_start; expected a number >= 0 and <= 1$"),
    ("cosine-restarts:T_0=5;T_mult=0", r"cosine-restarts:T_mult; expected an integer >= 1$"),
]


@pytest.mark.parametrize("spec, message", ERRORS, ids=[s or "empty" for s, _ in ERRORS])
def test_invalid_specs_say_what_was_expected(spec, message):
    param = torch.nn.Parameter(torch.zeros(()))
    with pytest.raises(TracerError, match=message):
        build_scheduler(torch.optim.Adam([param], lr=0.1), spec)


def test_every_scheduler_name_is_documented_in_the_module():
    import tracer.schedulers as module

    assert set(SCHEDULER_NAMES) >= {"step", "multistep", "exponential", "linear", "cosine", "onecycle",
                                    "multiplicative"}
    for example in ("multistep:milestones=4,8,10;gamma=0.8", "multiplicative:factor=0.8;at=6-24/2"):
        assert example in module.__doc__


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_counts = st.lists(
    st.one_of(
        st.integers(1, 500).map(str),
        st.tuples(st.integers(1, 100), st.integers(1, 100), st.integers(1, 9)).map(
            lambda t: f"{min(t[:2])}-{max(t[:2])}/{t[2]}"
        ),
    ),
    min_size=1,
    max_size=5,
)


@pytest.mark.parametrize(("typed", "canonical"), [
    ("multiplicative:factor=0.5;at=1-1/2", "multiplicative:factor=0.5;at=1"),  # found by hypothesis (as 0-0/2)
    ("multiplicative:factor=0.5;at=3-4/2", "multiplicative:factor=0.5;at=3"),
    ("multiplicative:factor=0.5;at=6-25/2", "multiplicative:factor=0.5;at=6-24/2"),
])
def test_ranges_are_written_in_canonical_form(typed, canonical):
    assert parse_scheduler_spec(typed).text == canonical
    assert parse_scheduler_spec(canonical) == parse_scheduler_spec(typed)


@settings(max_examples=60, deadline=None)
@given(
    factor=st.floats(0.01, 2.0, allow_nan=False),
    counts=_counts,
    milestones=st.lists(st.integers(1, 1000), min_size=1, max_size=6),
    gamma=st.floats(0.01, 1.0),
)
def test_canonical_text_round_trips_for_any_valid_spec(factor, counts, milestones, gamma):
    for typed in (
        f"multiplicative:factor={factor!r};at={','.join(counts)}",
        f"multistep:gamma={gamma!r};milestones={','.join(map(str, milestones))}",
    ):
        spec = parse_scheduler_spec(typed)
        assert parse_scheduler_spec(spec.text) == spec
        assert parse_scheduler_spec(spec.text).text == spec.text
