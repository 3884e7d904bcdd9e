"""What tracing costs: traced against untraced training, interleaved rounds.

Run from the repository root::

    .venv/bin/python benchmarks/bench_recorder.py            # both benchmarks
    .venv/bin/python benchmarks/bench_recorder.py --quick    # fewer rounds

1. Summary granularity on a 10M-parameter model (100 tensors of 100k float32)
   with torch.optim.Adam(fused=True): median time of optimizer.step() traced
   over untraced. Goal: <= 1.5x.
2. Full granularity on the 2-parameter orbit problem (tracer.problems, batch
   64) with torch.optim.Adam: updates per second (forward, backward, step)
   traced over untraced. Goal: >= 0.7.

The traced and the untraced run are two copies of the same model and
optimizer; rounds alternate between them so that a busy machine slows both
alike. Medians over rounds are printed with the ratio.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from tracer import Recorder


def _interleave(untraced, traced, rounds: int) -> tuple[float, float]:
    """Median seconds of one call of each, alternating which goes first."""
    times: dict[str, list[float]] = {"untraced": [], "traced": []}
    untraced(), traced()  # warm-up: lazy state, first allocation
    for round_index in range(rounds):
        order = [("untraced", untraced), ("traced", traced)]
        for name, run in order if round_index % 2 == 0 else order[::-1]:
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return statistics.median(times["untraced"]), statistics.median(times["traced"])


def bench_summary_large(directory: Path, rounds: int) -> float:
    tensors, size = 100, 100_000
    generator = torch.Generator().manual_seed(0)
    initial = [torch.randn(size, generator=generator) for _ in range(tensors)]
    grads = [torch.randn(size, generator=generator) for _ in range(tensors)]

    def setup():
        params = [t.clone().requires_grad_(True) for t in initial]
        for p, g in zip(params, grads):
            p.grad = g.clone()
        return params, torch.optim.Adam(params, lr=1e-3, fused=True)

    plain_params, plain = setup()
    traced_params, traced = setup()
    names = [(f"layer{i}.weight", p) for i, p in enumerate(traced_params)]
    with Recorder(traced, directory / "summary.trace.csv", named_parameters=names, granularity="summary"):
        untraced_s, traced_s = _interleave(plain.step, traced.step, rounds)
    ratio = traced_s / untraced_s
    print(f"[1] 10M parameters ({tensors} x {size}), Adam(fused=True), summary granularity, {rounds} rounds")
    print(f"    optimizer.step() median: untraced {untraced_s * 1e3:.2f} ms, traced {traced_s * 1e3:.2f} ms")
    print(f"    traced / untraced = {ratio:.2f}x   (goal <= 1.5x)")
    return ratio


def bench_full_orbit(directory: Path, rounds: int, epochs_per_round: int) -> float:
    from tracer.problems import get_problem

    problem = get_problem("orbit")

    def setup():
        torch.manual_seed(0)
        model = problem.build_model()
        return model, torch.optim.Adam(model.parameters(), lr=0.01, foreach=False)

    def epochs(model, optimizer, recorder=None):
        def run():
            for epoch in range(epochs_per_round):
                for batch_index, batch in problem.batches(epoch):
                    loss = problem.loss(model, batch)
                    optimizer.zero_grad()
                    loss.backward()
                    if recorder is not None:
                        recorder.note(loss=loss.item(), epoch=epoch, batch=batch_index)
                    optimizer.step()
        return run

    plain_model, plain = setup()
    traced_model, traced = setup()
    with Recorder(traced, directory / "orbit.trace.csv", named_parameters=traced_model.named_parameters()) as rec:
        untraced_s, traced_s = _interleave(epochs(plain_model, plain), epochs(traced_model, traced, rec), rounds)
    updates = epochs_per_round * 512 // problem.batch_size
    untraced_rate, traced_rate = updates / untraced_s, updates / traced_s
    ratio = traced_rate / untraced_rate
    print(f"[2] orbit (2 parameters, batch {problem.batch_size}), Adam, full granularity, {rounds} rounds of {updates} updates")
    print(f"    updates/s median: untraced {untraced_rate:.0f}, traced {traced_rate:.0f}")
    print(f"    traced / untraced = {ratio:.2f}   (goal >= 0.7)")
    return ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    args = parser.parse_args()
    rounds = 5 if args.quick else 15
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    with tempfile.TemporaryDirectory() as directory:
        bench_summary_large(Path(directory), rounds)
        bench_full_orbit(Path(directory), rounds, epochs_per_round=5)


if __name__ == "__main__":
    main()
