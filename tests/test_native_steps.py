"""tracer.optim's Adam, AdamW, SGD and RMSprop with fused=True: one native pass per step (tracer/native/steps.c), traced inside it.

Speed is measured in benchmarks/bench_recorder.py, not here.
"""

from __future__ import annotations

import functools
import platform

import numpy as np
import pytest
import torch

from tracer import Recorder, load_trace, native
from tracer.info import summarize
from tracer.native.steps import (
    AdamScalars,
    NativeOutputs,
    RmspropScalars,
    SgdScalars,
    adam_native,
    count_steps,
    rmsprop_native,
    sgd_native,
)
from tracer.optim import SGD, Adam, AdamW, RMSprop
from tracer.recording.summary import InStepSummaries, SummaryReducer
from tracer.summaries.eager import SummaryInput
from tracer.summaries.native import NativeReducer
from tracer.testing import assert_optimizers_match

# The native pass rounds every operation once; torch's kernels fuse some
# multiply-adds (which ones depends on the CPU), so the two differ in the last
# bits and the differences carry over from step to step. Measured over the
# configurations below, 25 updates (ulps of the reference value in float32,
# tracer.ulps): Adam and AdamW at most 784 and 2400 against torch's for-loop
# and fused versions; SGD at most 891 against the for-loop one and 784
# against torch's fused SGD; RMSprop (torch has no fused one) at most 629
# against the for-loop one; under ATEN_CPU_CAPABILITY=default at most 640.
# The largest are elements near zero, where a last-bit difference of the
# operands is hundreds of ulps of the result. The tolerance leaves a margin
# of ~7 for other machines' kernels.
FUSED_ULPS = 16384
CONFIGS = [
    {"lr": 0.01},
    {"lr": 0.01, "weight_decay": 0.1},
    {"lr": 0.01, "amsgrad": True},
    {"lr": 0.01, "maximize": True},
    {"lr": 0.3, "betas": (0.6, 0.9), "eps": 1e-3},
]
RMSPROP_CONFIGS = [
    {"lr": 0.01},
    {"lr": 0.01, "centered": True},
    {"lr": 0.01, "momentum": 0.9, "weight_decay": 0.1},
    {"lr": 0.01, "centered": True, "momentum": 0.5, "maximize": True, "alpha": 0.9},
]
SGD_CONFIGS = [
    {"lr": 0.01},
    {"lr": 0.01, "momentum": 0.9},
    {"lr": 0.01, "momentum": 0.9, "dampening": 0.3, "weight_decay": 0.1},
    {"lr": 0.05, "momentum": 0.9, "nesterov": True, "maximize": True},
]


# Each of ours against torch's for-loop version, and against torch's fused one where torch has one.
AGAINST_TORCH = [
    pytest.param(ours, theirs, configs, torch_fused, id=f"{name}-{'torch-fused' if torch_fused else 'torch-for-loop'}")
    for name, ours, theirs, configs in [
        ("adam", Adam, torch.optim.Adam, CONFIGS),
        ("adamw", AdamW, torch.optim.AdamW, CONFIGS),
        ("sgd", SGD, torch.optim.SGD, SGD_CONFIGS),
        ("rmsprop", RMSprop, torch.optim.RMSprop, RMSPROP_CONFIGS),
    ]
    for torch_fused in ((True, None) if name != "rmsprop" else (None,))
]


@pytest.mark.parametrize("ours, theirs, configs, torch_fused", AGAINST_TORCH)
def test_fused_optimizers_agree_with_torch_within_tolerance(ours, theirs, configs, torch_fused):
    assert_optimizers_match(
        functools.partial(ours, fused=True),
        functools.partial(theirs, **({} if torch_fused is None else {"fused": torch_fused})),
        configs=configs,
        dtypes=(torch.float32,),
        ulps=FUSED_ULPS,
    )


def _train(make, shapes, steps, *, seed=0, no_grad_every=0, zero_lr_at=(), path=None, recorder_options=None):
    """Seeded gradients into an optimizer over fresh parameters; the parameters after ``steps`` updates.

    ``zero_lr_at``: the updates (counted from 0) made with lr = 0 in every group.
    """
    generator = torch.Generator().manual_seed(seed)
    params = [torch.randn(shape, generator=generator).requires_grad_() for shape in shapes]
    optimizer = make(params)
    lrs = [group["lr"] for group in optimizer.param_groups]
    recorder = Recorder(optimizer, path, **(recorder_options or {})) if path is not None else None
    if recorder is not None:
        recorder.start()
    for update in range(steps):
        for group, lr in zip(optimizer.param_groups, lrs):
            group["lr"] = 0.0 if update in zero_lr_at else lr
        for i, p in enumerate(params):
            skip = no_grad_every and i == len(params) - 1 and update % no_grad_every == 0
            p.grad = None if skip else torch.randn(p.shape, generator=generator)
        optimizer.step()
    if recorder is not None:
        recorder.close()
    return [p.detach() for p in params]


@pytest.mark.parametrize(
    "make",
    [
        lambda params: Adam(params, lr=0.01, weight_decay=0.1, fused=True),
        lambda params: SGD(params, lr=0.01, momentum=0.9, fused=True),
        lambda params: RMSprop(params, lr=0.01, centered=True, momentum=0.9, fused=True),
    ],
    ids=["adam", "momentum", "rmsprop"],
)
def test_the_pass_does_not_depend_on_the_thread_count(make):
    shapes = [(3 * 65536 + 7,), (5, 3)]
    threads = torch.get_num_threads()
    try:
        results = []
        for count in (1, 2, 3):
            torch.set_num_threads(count)
            results.append(_train(make, shapes, 5))
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(a, b) for other in results[1:] for a, b in zip(results[0], other))


def test_tensors_the_native_pass_does_not_take_get_the_for_loop_arithmetic():
    generator = torch.Generator().manual_seed(3)
    double = [torch.randn(6, dtype=torch.float64, generator=generator).requires_grad_() for _ in range(2)]
    copies = [p.detach().clone().requires_grad_() for p in double]
    fused, plain = Adam(double, lr=0.1, fused=True), Adam(copies, lr=0.1)
    for _ in range(4):
        for a, b in zip(double, copies):
            a.grad = torch.randn(6, dtype=torch.float64, generator=generator)
            b.grad = a.grad.clone()
        fused.step(), plain.step()
    assert all(torch.equal(a, b) for a, b in zip(double, copies))


SHAPES = [(300, 7), (70_000,), (40,), (5,)]
SUMMARY = {"granularity": "summary"}


def _without_in_step(monkeypatch):
    monkeypatch.setattr(SummaryReducer, "_ask_in_step", lambda self, optimizer, lrs: None)


@pytest.mark.parametrize(
    "make",
    [
        lambda params: Adam(params, lr=0.01, fused=True),
        lambda params: AdamW(params, lr=0.01, weight_decay=0.1, fused=True, amsgrad=True),
        lambda params: Adam(params, lr=0.01, weight_decay=0.1, fused=True, maximize=True),
        lambda params: SGD(params, lr=0.01, momentum=0.9, fused=True),
        lambda params: SGD(params, lr=0.01, momentum=0.9, nesterov=True, weight_decay=0.1, fused=True),
        lambda params: SGD(params, lr=0.01, fused=True),
        lambda params: RMSprop(params, lr=0.01, fused=True),
        lambda params: RMSprop(params, lr=0.01, centered=True, momentum=0.5, weight_decay=0.1, fused=True),
    ],
    ids=["adam", "adamw amsgrad", "adam l2 maximize", "momentum", "nesterov l2", "sgd", "rmsprop", "rmsprop centered momentum l2"],
)
@pytest.mark.parametrize("options", [SUMMARY, {**SUMMARY, "every": 3}, {"full": ["p2"]}], ids=["every update", "every 3rd", "one tensor full"])
def test_summaries_inside_the_step_equal_the_native_pass_after_it_bit_for_bit(tmp_path, monkeypatch, make, options):
    untraced = _train(make, SHAPES, 12, no_grad_every=3)
    inside = _train(make, SHAPES, 12, no_grad_every=3, path=tmp_path / "inside.trace.csv", recorder_options=options)
    _without_in_step(monkeypatch)
    after = _train(make, SHAPES, 12, no_grad_every=3, path=tmp_path / "after.trace.csv", recorder_options=options)
    assert all(torch.equal(a, b) and torch.equal(a, c) for a, b, c in zip(untraced, inside, after))  # tracing only reads
    a, b = load_trace(tmp_path / "inside.trace.csv"), load_trace(tmp_path / "after.trace.csv")
    assert a.meta["summary_pass"] == b.meta["summary_pass"] == "native" and a.columns == b.columns and len(a) == len(b)
    for column in a.columns:
        assert np.array_equal(a[column], b[column], equal_nan=True), column


@pytest.mark.parametrize(
    "make",
    [
        lambda params: AdamW(params, lr=0.01, weight_decay=0.1, fused=True),
        lambda params: SGD(params, lr=0.01, momentum=0.9, fused=True),
        lambda params: RMSprop(params, lr=0.01, momentum=0.5, fused=True),
    ],
    ids=["adamw", "momentum", "rmsprop momentum"],
)
def test_an_update_with_lr_0_leaves_the_previous_delta_for_the_next_cosine_inside_the_step_too(tmp_path, monkeypatch, make):
    """With lr > 0 the pass writes delta over the previous one; with lr = 0 it must not (d is not measured then)."""
    zero_lr_at = (3, 4, 8)
    untraced = _train(make, SHAPES, 10, no_grad_every=3, zero_lr_at=zero_lr_at)
    inside = _train(make, SHAPES, 10, no_grad_every=3, zero_lr_at=zero_lr_at, path=tmp_path / "inside.trace.csv", recorder_options=SUMMARY)
    _without_in_step(monkeypatch)
    after = _train(make, SHAPES, 10, no_grad_every=3, zero_lr_at=zero_lr_at, path=tmp_path / "after.trace.csv", recorder_options=SUMMARY)
    assert all(torch.equal(a, b) and torch.equal(a, c) for a, b, c in zip(untraced, inside, after))
    a, b = load_trace(tmp_path / "inside.trace.csv"), load_trace(tmp_path / "after.trace.csv")
    for column in a.columns:
        assert np.array_equal(a[column], b[column], equal_nan=True), column
    # Updates 4, 5 and 9 (counted from 1) have lr = 0: no d. The update after each compares with the last one that moved.
    cosines = a["p0.cos_d_prev"]
    assert np.isnan(cosines[[3, 4, 8]]).all() and np.isfinite(cosines[[5, 9]]).all()


def test_the_traced_pass_may_write_delta_over_the_previous_delta():
    """In place (the recorder's way where lr > 0) or into a third buffer: the same update, delta and reductions."""
    sizes = [1, 255, 257, 65536 + 300]
    outcomes = []
    for in_place in (False, True):
        generator = torch.Generator().manual_seed(3)
        params = [torch.randn(n, generator=generator) for n in sizes]
        state = [[torch.rand(n, generator=generator) for n in sizes] for _ in range(3)]
        previous = [torch.randn(n, generator=generator) for n in sizes]
        deltas = previous if in_place else [torch.full((n,), float("nan")) for n in sizes]
        grads = [torch.randn(n, generator=generator) for n in sizes]
        rows = np.zeros((len(sizes), 9))
        reductions = []
        for run in (
            lambda request: adam_native(params, grads, state[0], state[1], [None] * len(sizes),
                                        [AdamScalars(0.01, 0.9, 0.999, 1e-8, 0.0, False, False, 3.0)] * len(sizes), request),
            lambda request: sgd_native(params, grads, state[2], [False] * len(sizes),
                                       [SgdScalars(0.01, 0.9, 0.0, 0.0, True, False)] * len(sizes), request),
            lambda request: rmsprop_native(params, grads, state[1], [None] * len(sizes), state[2],
                                           [RmspropScalars(0.01, 0.99, 1e-8, 0.0, 0.5, False)] * len(sizes), request),
        ):
            run(InStepSummaries({id(p): NativeOutputs(d, q, 0.0, r.ctypes.data) for p, d, q, r in zip(params, deltas, previous, rows)}, {}))
            reductions.append(rows.tolist())
            if not in_place:  # the recorder's swap: this delta is the next pass's previous one
                previous, deltas = deltas, previous
        outcomes.append((params, state, previous, reductions))
    (a_params, a_state, a_previous, a_reductions), (b_params, b_state, b_previous, b_reductions) = outcomes
    assert all(torch.equal(x, y) for x, y in zip(a_params + a_previous, b_params + b_previous))
    assert all(torch.equal(x, y) for xs, ys in zip(a_state, b_state) for x, y in zip(xs, ys))
    assert a_reductions == b_reductions and np.isfinite(a_reductions).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_step_counters_count_as_torch_counts_them(dtype):
    """+1 in the counter's dtype (2**24 + 1 rounds back to 2**24 in float32), the new values as step.item() gives them."""
    starts = [0.0, 1.0, 41.0, 2.0**24, 2.0**53, 0.5]
    ours, theirs = ([torch.tensor(x, dtype=dtype) for x in starts] for _ in range(2))
    counted = count_steps(ours)
    torch._foreach_add_(theirs, 1)
    assert counted == [t.item() for t in theirs] and all(torch.equal(a, b) for a, b in zip(ours, theirs))
    assert [t._version for t in ours] == [t._version for t in theirs] == [1] * len(starts)  # marked changed, as torch's add
    assert (counted[3] == 2.0**24) == (dtype is torch.float32)


def test_step_counters_native_code_does_not_take_are_counted_by_torch():
    """A float16 counter among them (not the native code's): torch's _foreach_add_ counts them all, the same values."""
    mixed = [torch.tensor(3.0), torch.tensor(7.0, dtype=torch.float16), torch.tensor([2.0])]
    assert count_steps(mixed) == [4.0, 8.0, 3.0]
    assert [t.item() for t in mixed] == [4.0, 8.0, 3.0] and mixed[1].dtype is torch.float16


def test_the_step_computes_the_summaries_itself(tmp_path, monkeypatch):
    """No snapshot of the tensors it reduces, and their reductions come from the step's request."""
    stored: list[int] = []
    original = SummaryReducer._store_in_step
    monkeypatch.setattr(
        SummaryReducer, "_store_in_step", lambda self, rows: (stored.append(sum(map(len, rows.values()))), original(self, rows))[1]
    )
    _train(lambda params: Adam(params, lr=0.01, fused=True), SHAPES, 6, no_grad_every=3, path=tmp_path / "t.trace.csv", recorder_options=SUMMARY)
    # Four tensors; the last has no gradient at updates 1 and 4 and is then reduced after the step.
    assert stored == [3, 4, 4, 3, 4, 4]
    facts = summarize(load_trace(tmp_path / "t.trace.csv"))
    assert facts["summary_pass"] == "native"


def test_a_request_lasts_one_step_even_when_the_closure_fails(tmp_path):
    params = [torch.randn(20).requires_grad_()]
    params[0].grad = torch.randn(20)
    optimizer = Adam(params, lr=0.01, fused=True)
    with pytest.raises(RuntimeError, match="closure failed"):
        with Recorder(optimizer, tmp_path / "t.trace.csv", granularity="summary"):

            def closure():
                raise RuntimeError("closure failed")

            optimizer.step(closure)
    assert optimizer.step_tap is None


@pytest.mark.parametrize("cls", [Adam, AdamW, SGD, RMSprop])
def test_fused_is_refused_where_the_native_kernels_cannot_be_built(monkeypatch, cls):
    monkeypatch.setenv("TRACER_NATIVE", "0")
    native.library.cache_clear()
    try:
        with pytest.raises(RuntimeError, match=r"fused=True needs the native kernels, which cannot be built here \(TRACER_NATIVE=0\); use fused=False"):
            cls([torch.zeros(3, requires_grad=True)], lr=0.1, fused=True)
    finally:
        native.library.cache_clear()


def test_the_same_bits_without_vector_instructions_or_hardware_fma(tmp_path, monkeypatch):
    """Built for plain x86-64 (SSE2, software fmaf) the kernels give this CPU's build's bits: reductions, Adam, SGD, RMSprop."""
    if platform.machine() not in ("x86_64", "AMD64"):
        pytest.skip("the baseline build is x86-64's")
    monkeypatch.setenv("TRACER_CACHE_DIR", str(tmp_path))
    baseline = native.load("x86-64")
    sizes = [1, 17, 255, 256, 257, 65536 + 300]
    results = []
    for library in (native.library(), baseline):
        generator = torch.Generator().manual_seed(7)
        params = [torch.randn(n, generator=generator) for n in sizes]
        state = [[torch.zeros(n) for n in sizes] for _ in range(3)]  # exp_avg, exp_avg_sq, max_exp_avg_sq
        deltas = [torch.zeros(n) for n in sizes]
        rmsprop_state = [[torch.zeros(n) for n in sizes] for _ in range(3)]  # square_avg, grad_avg, momentum_buffer
        previous = [torch.randn(n, generator=generator) for n in sizes]
        reductions = []
        rows = np.zeros((len(sizes), 9))
        for step in range(1, 4):
            grads = [torch.randn(n, generator=generator) for n in sizes]
            request = InStepSummaries({id(p): NativeOutputs(d, q, -0.01, r.ctypes.data) for p, d, q, r in zip(params, deltas, previous, rows)}, {})
            scalars = [AdamScalars(0.01, 0.9, 0.999, 1e-8, 0.01, False, False, float(step))] * len(sizes)
            adam_native(params, grads, *state, scalars, request, library=library)
            assert request.reduced == set(map(id, params))
            reductions.append(rows.tolist())
            # and SGD with Nesterov momentum over the same tensors (its buffer: max_exp_avg_sq's place)
            request = InStepSummaries({id(p): NativeOutputs(d, q, 0.0, r.ctypes.data) for p, d, q, r in zip(params, deltas, previous, rows)}, {})
            momentum = [SgdScalars(0.01, 0.9, 0.0, 0.01, True, False)] * len(sizes)
            sgd_native(params, grads, state[2], [step == 1] * len(sizes), momentum, request, library=library)
            reductions.append(rows.tolist())
            # and centered RMSprop with momentum (square_avg, grad_avg, buffer: three fresh buffers' places)
            request = InStepSummaries({id(p): NativeOutputs(d, q, 0.0, r.ctypes.data) for p, d, q, r in zip(params, deltas, previous, rows)}, {})
            rms = [RmspropScalars(0.01, 0.99, 1e-8, 0.01, 0.5, False)] * len(sizes)
            rmsprop_native(params, grads, *rmsprop_state, rms, request, library=library)
            reductions.append(rows.tolist())
        outside = torch.zeros(len(sizes), 9, dtype=torch.float64)
        snapshots = [p + 1 for p in params]
        NativeReducer(library)(
            [(i, SummaryInput(s, p, g, 0.1, v, w, q)) for i, (s, p, g, v, w, q) in enumerate(zip(snapshots, params, grads, state[0], state[1], previous))],
            outside,
        )
        results.append((params, state, deltas, reductions, outside, snapshots, rmsprop_state))
    (a_params, a_state, a_deltas, a_reductions, a_outside, a_snapshots, a_rms), (b_params, b_state, b_deltas, b_reductions, b_outside, b_snapshots, b_rms) = results
    assert all(torch.equal(x, y) for x, y in zip(a_params + a_deltas + a_snapshots, b_params + b_deltas + b_snapshots))
    assert all(torch.equal(x, y) for xs, ys in zip(a_state, b_state) for x, y in zip(xs, ys))
    assert all(torch.equal(x, y) for xs, ys in zip(a_rms, b_rms) for x, y in zip(xs, ys))
    assert a_reductions == b_reductions and torch.equal(a_outside, b_outside)


def test_a_tensor_the_native_pass_does_not_take_is_kept_by_the_step_and_reduced_after_it(tmp_path, monkeypatch):
    """A float64 tensor in a fused group: the step copies its theta before the for-loop update; the trace is the same."""

    def train(path):
        generator = torch.Generator().manual_seed(2)
        params = [torch.randn(300, generator=generator).requires_grad_(), torch.randn(40, generator=generator, dtype=torch.float64).requires_grad_()]
        optimizer = Adam(params, lr=0.01, fused=True)
        with Recorder(optimizer, path, granularity="summary"):
            for _ in range(5):
                for p in params:
                    p.grad = torch.randn(p.shape, generator=generator, dtype=p.dtype)
                optimizer.step()
        return [p.detach() for p in params]

    kept: list[set[int]] = []
    original = SummaryReducer._taken_in_step

    def spy(self, parameter, buffers):
        kept.append(set(self._request.copied) if self._request is not None else set())
        return original(self, parameter, buffers)

    monkeypatch.setattr(SummaryReducer, "_taken_in_step", spy)
    inside = train(tmp_path / "inside.trace.csv")
    assert all(len(copied) == 1 for copied in kept) and len(kept) == 10  # the float64 tensor, at every update
    monkeypatch.setattr(SummaryReducer, "_ask_in_step", lambda self, optimizer, lrs: None)
    after = train(tmp_path / "after.trace.csv")
    assert all(torch.equal(a, b) for a, b in zip(inside, after))
    a, b = load_trace(tmp_path / "inside.trace.csv"), load_trace(tmp_path / "after.trace.csv")
    assert all(np.array_equal(a[c], b[c], equal_nan=True) for c in a.columns)
