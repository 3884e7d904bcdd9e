"""What the landscape costs: the surface evaluation, and the recorder's snapshots.

Run from the repository root::

    .venv/bin/python benchmarks/bench_landscape.py            # both
    .venv/bin/python benchmarks/bench_landscape.py --quick    # fewer rounds
    .venv/bin/python benchmarks/bench_landscape.py --only snapshots

1. Surface evaluation of the mlp example (two spirals, 1,185 parameters, the
   loss of all 512 points) on a 41 x 41 grid: time per grid point, against
   one plain forward pass and loss of the same batch (the floor: what a grid
   point cannot cost less than).
2. Snapshots every 10 updates on a 4-layer transformer encoder (3.67M
   parameters in 51 tensors, batch 16 x 64 tokens, AdamW fused; the model of
   benchmarks/bench_recorder.py's transformer): the training step with the
   recorder at summary granularity, with and without snapshots, against the
   untraced step. Rounds of 10 steps alternate between the three so that a
   busy machine slows them alike; medians are printed with the ratios.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from tracer import Recorder
from tracer.recording.snapshots import BYTES_PER_PARAMETER, SnapshotPolicy

# The transformer of the recorder benchmark, so both measure the same model.
from bench_recorder import transformer


def _medians(runs: dict[str, Callable[[], None]], rounds: int) -> dict[str, float]:
    """Median seconds of one call of each, the order rotated every round."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for run in runs.values():
        run()  # warm-up
    names = list(runs)
    for round_index in range(rounds):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            start = time.perf_counter()
            runs[name]()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def bench_surface(directory: Path, rounds: int) -> float:
    from tracer.landscape import evaluate_surface, find_plane, grid_axes
    from tracer.landscape.mlp_example import trace_run
    from tracer.landscape.surface import snapshots_of_trace
    from tracer.problems.mlp import landscape_data, landscape_model

    traces = [trace_run(name, 0.01, name, directory / f"{name}.trace.csv", epochs=5) for name in ("adam", "momentum")]
    runs = [snapshots_of_trace(t)[1] for t in traces]
    plane = find_plane(runs)
    xs, ys = grid_axes([plane.locate(np.vstack([r.theta, r.final[None, :]])) for r in runs], (41, 41))
    features, labels = landscape_data()
    model = landscape_model()

    def loss(m):
        return torch.nn.functional.binary_cross_entropy_with_logits(m(features), labels)

    def forward():
        with torch.no_grad():
            for _ in range(len(xs) * len(ys)):
                float(loss(model))

    medians = _medians({"forward": forward,
                        "surface": lambda: evaluate_surface(model, loss, plane, xs, ys, progress=False)}, rounds)
    points = len(xs) * len(ys)
    per_point, floor = medians["surface"] / points, medians["forward"] / points
    print(f"[1] mlp surface, 41 x 41 = {points} points, 1,185 parameters, loss of 512 points, {rounds} rounds")
    print(f"    per grid point: {per_point * 1e3:.3f} ms (whole grid {medians['surface']:.2f} s); "
          f"plain forward + loss {floor * 1e3:.3f} ms; ratio {per_point / floor:.2f}x")
    return per_point


def bench_snapshots(directory: Path, rounds: int, every: int = 10, limit: int = 6) -> float:
    generator = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, 1000, (16, 64), generator=generator)
    targets = torch.randint(0, 1000, (16, 64), generator=generator)

    def setup():
        model = transformer(0)
        return model, torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)

    def steps(model, optimizer, recorder=None):
        def run():
            for _ in range(every):  # one round holds exactly one snapshot update
                logits = model(tokens)
                loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
                optimizer.zero_grad()
                loss.backward()
                if recorder is not None:
                    recorder.note(loss=loss.item())
                optimizer.step()
        return run

    plain = setup()
    summary = setup()
    snapshots = setup()
    parameters = sum(p.numel() for p in plain[0].parameters())
    with Recorder(summary[1], directory / "summary.trace.csv", named_parameters=summary[0].named_parameters(),
                  granularity="summary") as summary_recorder, \
         Recorder(snapshots[1], directory / "snapshots.trace.csv", named_parameters=snapshots[0].named_parameters(),
                  granularity="summary", snapshots=SnapshotPolicy(every=every, limit=limit)) as snapshot_recorder:
        medians = _medians({"untraced": steps(*plain), "summary": steps(*summary, summary_recorder),
                            "summary + snapshots": steps(*snapshots, snapshot_recorder)}, rounds)
    base = medians["untraced"]
    print(f"[2] transformer encoder ({parameters / 1e6:.2f}M parameters), AdamW(fused=True), snapshots every {every} "
          f"updates (limit {limit}: {limit * BYTES_PER_PARAMETER * parameters / 2**30:.2f} GiB), {rounds} rounds of "
          f"{every} steps")
    for name, seconds in medians.items():
        print(f"    {name:<20} {seconds / every * 1e3:7.1f} ms per step   {seconds / base:.3f}x untraced")
    ratio = medians["summary + snapshots"] / medians["summary"]
    print(f"    snapshots' own cost: summary + snapshots / summary = {ratio:.3f}x")
    return ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    parser.add_argument("--only", choices=("surface", "snapshots"), help="run one of the two")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        if args.only in (None, "surface"):
            bench_surface(Path(directory), 3 if args.quick else 7)
        if args.only in (None, "snapshots"):
            bench_snapshots(Path(directory), 4 if args.quick else 10)


if __name__ == "__main__":
    main()
