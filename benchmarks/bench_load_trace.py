"""Reading large traces: load_trace speed and file size, CSV against the binary form.

Run from the repository root::

    .venv/bin/python benchmarks/bench_load_trace.py            # 50k updates
    .venv/bin/python benchmarks/bench_load_trace.py --quick    # 10k updates

The trace is a summary trace of the shape a real run writes: 50k updates,
61 columns (update, epoch, batch, lr, loss, 6 tensors x 9 summaries,
step_size, displacement), summary cells the float64 of a float32 reduction
as the recorder writes them, a few empty cells (cos_d_prev on the first
update). Both forms are written through tracer.trace.TraceWriter and read by
tracer.trace.load_trace; the median of the reads is printed with the goal.

Goal: >= 10M cells per second and <= 12 bytes per cell.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from tracer.trace import TraceWriter, load_trace

SUMMARIES = ("theta_norm", "g_norm", "v_norm", "s_norm", "d_norm", "displacement", "d_max", "cos_d_prev", "cos_g_d")


def write(path: Path, updates: int) -> list[str]:
    columns = ["update", "epoch", "batch", "lr", "loss"]
    columns += [f"layer{i}.{q}" for i in range(6) for q in SUMMARIES] + ["step_size", "displacement"]
    rng = np.random.default_rng(0)
    # float32 reductions, widened and square-rooted in float64 as the recorder does: full-length reprs.
    values = np.sqrt(rng.random((updates, len(columns) - 3)).astype(np.float32).astype(np.float64))
    with TraceWriter(path, {"label": "bench"}, columns) as writer:
        for i in range(updates):
            cells = [i + 1, i // 100, i % 100, *values[i].tolist()]
            if i == 0:
                for j, name in enumerate(columns):
                    if name.endswith("cos_d_prev"):
                        cells[j] = None
            writer.write_cells(cells)
    return columns


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10k updates, 3 reads")
    args = parser.parse_args()
    updates, reads = (10_000, 3) if args.quick else (50_000, 5)
    with tempfile.TemporaryDirectory() as directory:
        results = {}
        for suffix in (".csv", ".bin"):
            path = Path(directory) / f"summary.trace{suffix}"
            columns = write(path, updates)
            cells = updates * len(columns)
            times = []
            for _ in range(reads):
                start = time.perf_counter()
                trace = load_trace(path)
                times.append(time.perf_counter() - start)
            assert len(trace) == updates and trace.status == "complete"
            results[suffix] = trace
            seconds = statistics.median(times)
            size = path.stat().st_size
            print(f"{suffix[1:]:>4}: {updates} updates x {len(columns)} columns, {size / 1e6:.1f} MB, "
                  f"load_trace median {seconds * 1e3:.0f} ms of {reads}")
            print(f"      {cells / seconds / 1e6:.1f}M cells/s (goal >= 10M), "
                  f"{size / cells:.2f} bytes/cell (goal <= 12)")
        same = all(
            np.array_equal(results[".csv"][c], results[".bin"][c], equal_nan=True) for c in results[".csv"].columns
        )
        print(f"the two forms read back equal, cell for cell: {same}")


if __name__ == "__main__":
    main()
