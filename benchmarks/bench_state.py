"""What recording every optimizer state tensor by key costs: Recorder(record_state=True) against False.

Run from the repository root::

    .venv/bin/python benchmarks/bench_state.py            # both sizes
    .venv/bin/python benchmarks/bench_state.py --quick    # fewer rounds

torch.optim.Adam (foreach) on 100 tensors, summary granularity, every
update: the median time of optimizer.step() with its hooks, untraced, traced
without the state columns and traced with them, in interleaved rounds. Two
sizes: 100 floats per tensor (the Python per tensor: three state keys each,
of which exp_avg and exp_avg_sq reuse the summary's v_norm and s_norm and
``step`` is one more norm) and 10k per tensor (1M parameters: the memory
traffic). Also the peak of the process's resident memory after each, and the
trace's bytes per update.
"""

from __future__ import annotations

import argparse
import pathlib
import resource
import statistics
import tempfile
import time

import torch

from tracer import Recorder


def _model(size: int) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return [torch.randn(size, generator=generator).requires_grad_(True) for _ in range(100)]


def _steps(mode: str, size: int, rounds: int, steps: int, folder: pathlib.Path) -> tuple[list[float], int]:
    params = _model(size)
    for p in params:
        p.grad = torch.randn_like(p) * 1e-3
    optimizer = torch.optim.Adam(params, lr=1e-3)
    path = folder / f"{mode}-{size}.trace.bin"
    recorder = None
    if mode != "untraced":
        recorder = Recorder(optimizer, path, granularity="summary", if_exists="overwrite",
                            record_state=mode == "state")
        recorder.start()
    optimizer.step()  # the state exists from here on (the state columns are made at the first update)
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(steps):
            optimizer.step()
        times.append((time.perf_counter() - start) / steps)
    if recorder is not None:
        recorder.close()
    row_bytes = path.stat().st_size // (rounds * steps + 1) if recorder is not None else 0
    return times, row_bytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    args = parser.parse_args()
    torch.set_num_threads(1)
    folder = pathlib.Path(tempfile.mkdtemp(prefix="tracer-bench-state-"))
    for size, steps in ((100, 50), (10_000, 10)):
        rounds = 5 if args.quick else 15
        medians: dict[str, list[float]] = {"untraced": [], "no state": [], "state": []}
        row_bytes = {}
        for _ in range(3):  # interleaved: each mode in turn, thrice
            for mode, key in (("untraced", "untraced"), ("nostate", "no state"), ("state", "state")):
                times, row_bytes[key] = _steps(mode, size, rounds, steps, folder)
                medians[key] += times
        m = {key: statistics.median(values) for key, values in medians.items()}
        print(f"100 tensors x {size} floats, Adam, summary every update (median of {3 * rounds} rounds of {steps} steps):")
        for key in medians:
            print(f"  {key:<10} {m[key] * 1e3:9.3f} ms/step   {m[key] / m['untraced']:.2f}x untraced"
                  + (f"   {row_bytes[key]} bytes/row" if row_bytes[key] else ""))
        print(f"  state / no state: {m['state'] / m['no state']:.3f}x")
    print(f"peak resident memory of the process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
