"""The full-granularity fast paths give the numbers of the general ones, bit for bit.

Scalar parameters (the 2-parameter orbit, the analytic surfaces) take
shortcuts on each traced update: Adam's probe computes d on one stacked tensor
instead of one 0-dim tensor at a time, the FullReader reads CPU scalars with
one item() each instead of torch.stack + tolist, and finiteness is checked by
one sum. Each is compared here with the path it replaces.
"""

from __future__ import annotations

import pytest
import torch

import tracer.optim as ours
from tracer import load_trace
from tracer.families import family_of
from tracer.probes import probe_adam
from tracer.recorder import Recorder
from tracer.recording.full import FullReader
from tracer.recording.selection import select_parameters

ADAM_CONFIGS = [
    pytest.param(torch.optim.Adam, dict(lr=0.01), torch.float32, id="adam"),
    pytest.param(
        torch.optim.Adam, dict(lr=0.01, amsgrad=True, weight_decay=0.1, maximize=True), torch.float32,
        id="adam amsgrad wd maximize",
    ),
    pytest.param(torch.optim.AdamW, dict(lr=0.01, weight_decay=0.1), torch.float32, id="adamw"),
    pytest.param(torch.optim.Adam, dict(lr=0.01, amsgrad=True), torch.float64, id="adam amsgrad float64"),
    pytest.param(ours.Adam, dict(lr=0.01, eps=1e-3), torch.float32, id="ours adam eps"),
]


def _random_magnitudes(generator: torch.Generator, count: int, dtype: torch.dtype, positive: bool) -> torch.Tensor:
    """Values spread over the dtype's exponents, subnormals included (float32: 1e-42 to 1e30)."""
    low, high = (-42, 30) if dtype == torch.float32 else (-310, 300)
    exponents = torch.randint(low, high, (count,), generator=generator).double()
    values = torch.randn(count, generator=generator, dtype=torch.float64) * 10.0**exponents
    return (values.abs() if positive else values).to(dtype)


@pytest.mark.parametrize("make, options, dtype", ADAM_CONFIGS)
def test_stacked_adam_probe_is_the_per_tensor_probe(monkeypatch, make, options, dtype):
    """d, g, v and s of three scalar parameters probed together equal each probed alone, over extreme moments."""
    stacks = []
    stack = torch.stack

    def counted_stack(tensors, *args, **kwargs):
        stacks.append(len(tensors))
        return stack(tensors, *args, **kwargs)

    monkeypatch.setattr(torch, "stack", counted_stack)
    generator = torch.Generator().manual_seed(7)
    params = [torch.tensor(value, dtype=dtype, requires_grad=True) for value in (0.3, -1.7, 2.5)]
    optimizer = make(params, **options)
    (params[0] * params[1] + params[2] ** 2).backward()
    optimizer.step()  # the state exists, one step count for all three
    group = optimizer.param_groups[0]
    states = [optimizer.state[p] for p in params]
    thetas = [p.detach().clone() for p in params]
    grads = [p.grad for p in params]
    for trial in range(200):
        for key, positive in (("exp_avg", False), ("exp_avg_sq", True), ("max_exp_avg_sq", True)):
            if key in states[0]:
                values = _random_magnitudes(generator, 3, dtype, positive)
                for state, value in zip(states, values):
                    state[key].copy_(value)
        stacks.clear()
        together = probe_adam(grads, states, group, thetas)
        assert stacks == [3, 3]  # the stacked path ran: the three moments, then the three first moments
        for k in range(3):
            alone = probe_adam([grads[k]], [states[k]], group, [thetas[k]])
            for quantity in ("g", "v", "s", "d"):
                assert torch.equal(getattr(together, quantity)[k], getattr(alone, quantity)[0]), (trial, k, quantity)


def test_scalars_read_by_item_equal_the_stacked_read_back():
    """Scalars of four dtypes in one group (d measured; stacked, all become float64): the same floats either way."""
    params = [torch.tensor(0.1, dtype=dtype, requires_grad=True)
              for dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64)]
    optimizer = torch.optim.SGD(params, lr=0.05, momentum=0.9)
    traced = select_parameters(optimizer, None, "full", None)
    family = family_of(optimizer)
    by_item, stacked = FullReader(traced, 1), FullReader(traced, 1)
    assert by_item._items
    stacked._items = False  # the path torch.stack + tolist of scalars off the CPU takes
    for step in range(4):
        optimizer.zero_grad()
        sum((k + 1.3) * p.float() ** 2 for k, p in enumerate(params)).backward()
        by_item.snapshot(), stacked.snapshot()
        optimizer.step()
        assert by_item.read(optimizer, family) == stacked.read(optimizer, family)


def test_an_overflowing_sum_is_not_a_divergence(tmp_path):
    """Finite float64 values whose sum overflows are checked one by one: the run goes on."""
    params = [torch.tensor(1.5e308, dtype=torch.float64, requires_grad=True) for _ in range(2)]
    optimizer = torch.optim.SGD(params, lr=0.01)
    path = tmp_path / "huge.trace.csv"
    with Recorder(optimizer, path, named_parameters=zip(("a", "b"), params)) as recorder:
        for batch in range(3):
            loss = params[0] * 1e-300 + params[1] * 1e-300
            optimizer.zero_grad()
            loss.backward()
            recorder.note(loss=loss, epoch=0, batch=batch)
            optimizer.step()
    trace = load_trace(path)
    assert trace.status == "complete" and trace.diverged_at is None and len(trace) == 3
    assert trace["a.theta"][0] == 1.5e308
