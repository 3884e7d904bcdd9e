"""Time one step of each hand-written optimizer against torch.optim's.

Run from the repository root:

    .venv/bin/python benchmarks/bench_optimizers.py             # 10M float32 parameters, 15 rounds
    .venv/bin/python benchmarks/bench_optimizers.py --quick  # 1M parameters, 5 rounds: smoke test
    .venv/bin/python benchmarks/bench_optimizers.py --rounds 30 --optimizers adam adamw --threads 1

For each optimizer (SGD, Momentum, RMSprop, Adam, AdamW) and each layout of
the parameters (one tensor of N elements, or 100 tensors of N/100), it times
`step()` of ours and of torch's for-loop (foreach=False), foreach and fused
(where torch offers them on the CPU) implementations. Every implementation
gets its own copy of the parameters, gradients and state. The implementations
are timed interleaved, one step each per round in a rotating order, so that
noise from other processes on the machine falls on all of them alike; the
table gives the median over the rounds and the ratio of ours to torch's
for-loop, the implementation ours reproduces bit for bit (the goal is <= 1.1),
by median and by best round (on a busy machine, noise only adds time, so the
best rounds are the steadier comparison).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable

import torch

import tracer.optim

# name -> (our class, torch's class, keyword arguments); lr small so that
# thousands of steps keep the parameters finite.
OPTIMIZERS: dict[str, tuple[type, type, dict]] = {
    "sgd": (tracer.optim.SGD, torch.optim.SGD, {"lr": 1e-3}),
    "momentum": (tracer.optim.SGD, torch.optim.SGD, {"lr": 1e-3, "momentum": 0.9}),
    "rmsprop": (tracer.optim.RMSprop, torch.optim.RMSprop, {"lr": 1e-4}),
    "adam": (tracer.optim.Adam, torch.optim.Adam, {"lr": 1e-4}),
    "adamw": (tracer.optim.AdamW, torch.optim.AdamW, {"lr": 1e-4}),
}
HAS_FUSED_ON_CPU = {"sgd", "momentum", "adam", "adamw"}  # torch.optim.RMSprop has no fused
IMPLEMENTATIONS = ("ours", "for-loop", "foreach", "fused")
WARMUP_STEPS = 2


def make_optimizer(
    name: str, impl: str, shapes: list[tuple[int, ...]]
) -> torch.optim.Optimizer | None:
    """An optimizer of `impl` over fresh parameters with fixed gradients; None if torch lacks it."""
    ours, theirs, kwargs = OPTIMIZERS[name]
    if impl == "fused" and name not in HAS_FUSED_ON_CPU:
        return None
    generator = torch.Generator().manual_seed(0)
    params = []
    for shape in shapes:
        param = torch.randn(shape, generator=generator).requires_grad_()
        param.grad = torch.randn(shape, generator=generator)
        params.append(param)
    if impl == "ours":
        return ours(params, **kwargs)
    flags = {
        "for-loop": {"foreach": False},
        "foreach": {"foreach": True},
        "fused": {"fused": True},
    }[impl]
    return theirs(params, **kwargs, **flags)


def time_step(step: Callable[[], object]) -> float:
    start = time.perf_counter()
    step()
    return time.perf_counter() - start


def bench(name: str, shapes: list[tuple[int, ...]], rounds: int) -> dict[str, list[float]]:
    """Seconds per step of each implementation, one per round, timed interleaved."""
    optimizers = {impl: make_optimizer(name, impl, shapes) for impl in IMPLEMENTATIONS}
    optimizers = {impl: opt for impl, opt in optimizers.items() if opt is not None}
    for optimizer in optimizers.values():
        for _ in range(WARMUP_STEPS):  # builds the state and warms the allocator
            optimizer.step()
    times: dict[str, list[float]] = {impl: [] for impl in optimizers}
    order = list(optimizers)
    for round_index in range(rounds):
        rotation = round_index % len(order)  # who goes first changes every round
        for impl in order[rotation:] + order[:rotation]:
            times[impl].append(time_step(optimizers[impl].step))
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--rounds", type=int, default=15, help="timed steps per implementation (default: 15)"
    )
    parser.add_argument(
        "--numel", type=int, default=10_000_000, help="parameters in total (default: 10M)"
    )
    parser.add_argument(
        "--tensors", type=int, default=100, help="tensors of the many-tensor layout (default: 100)"
    )
    parser.add_argument("--quick", action="store_true", help="1M parameters and 5 rounds")
    parser.add_argument(
        "--optimizers", nargs="+", choices=list(OPTIMIZERS), default=list(OPTIMIZERS)
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads (default: torch's own); 1 suffers least from a shared CPU",
    )
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quick:
        args.numel, args.rounds = 1_000_000, 5

    layouts = {
        f"1 x {args.numel:,}": [(args.numel,)],
        f"{args.tensors} x {args.numel // args.tensors:,}": [(args.numel // args.tensors,)]
        * args.tensors,
    }
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, float32, "
        f"median of {args.rounds} interleaved rounds, ms per step; ratios of ours to the\n"
        "for-loop by median and by best round (noise from other processes only adds time)"
    )
    header = (
        f"{'optimizer':<10} {'layout':<16}"
        + "".join(f"{impl:>10}" for impl in IMPLEMENTATIONS)
        + f"{'ours/loop':>11}{'(best)':>8}"
    )
    print(header)
    print("-" * len(header))
    for name in args.optimizers:
        for layout, shapes in layouts.items():
            times = bench(name, shapes, args.rounds)
            medians = {impl: statistics.median(values) for impl, values in times.items()}
            cells = "".join(
                f"{medians[impl] * 1e3:>10.2f}" if impl in medians else f"{'-':>10}"
                for impl in IMPLEMENTATIONS
            )
            ratio = medians["ours"] / medians["for-loop"]
            best_ratio = min(times["ours"]) / min(times["for-loop"])
            print(f"{name:<10} {layout:<16}{cells}{ratio:>11.3f}{best_ratio:>8.3f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
