"""How fast the paths animation is written, against the plain matplotlib way.

    MPLBACKEND=Agg .venv/bin/python benchmarks/bench_render.py [--repeats 5] [--plain-repeats 3]

The case: a 400-frame, 500x400-pixel GIF of four paths on the orbit loss
contour. "tracer" is `render_figure("paths", ...)` (static parts drawn once,
blitted moving artists, one global palette). "plain" redraws the axes every
frame (ax.clear + contourf + plot) under FuncAnimation saved with
PillowWriter, on the same precomputed loss grid. Prints the median seconds of
each, frames per second and the ratio.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tracer.problems.orbit import ORBIT_A, ORBIT_B, ORBIT_START  # noqa: E402
from tracer.render import render_figure  # noqa: E402
from tracer.render.contour import contour_levels, loss_grid  # noqa: E402
from tracer.trace import load_trace, write_trace  # noqa: E402

FRAMES = 400
SIZE = (500, 400)
XLIM, YLIM = (0.0, 2.5), (0.0, 2.5)
COLORS = ["#e6b800", "#d62728", "#1f77b4", "#2ca02c"]  # the article's SGD, Momentum, RMSprop, Adam


def synthetic_traces(folder: Path) -> list:
    """Four 400-update orbit traces spiralling from the start to the minimum."""
    traces = []
    columns = ["update", "epoch", "batch", "lr", "loss", "Wa.theta", "Wb.theta", "step_size"]
    t = np.linspace(0.0, 1.0, FRAMES)
    for index in range(4):
        decay = np.exp(-(3 + index) * t)
        angle = (4 + 2 * index) * np.pi * t
        wa = ORBIT_A + (ORBIT_START[0] - ORBIT_A) * decay * np.cos(angle)
        wb = ORBIT_B + (ORBIT_START[1] - ORBIT_B) * decay * np.cos(angle) + 0.3 * decay * np.sin(angle)
        rows = [{"update": u + 1, "epoch": u // 8, "batch": u % 8, "lr": 0.01, "loss": float(decay[u]),
                 "Wa.theta": float(wa[u]), "Wb.theta": float(wb[u]), "step_size": 0.01}
                for u in range(FRAMES)]
        meta = {"label": f"path {index}", "problem": {"name": "orbit"}, "coordinates": ["Wa", "Wb"],
                "granularity": "full"}
        path = write_trace(folder / f"path{index}.trace.csv", meta, columns, rows)
        traces.append(load_trace(path))
    return traces


def tracer_way(traces: list, out: Path) -> None:
    render_figure("paths", traces, out, frames=FRAMES, size=SIZE, xlim=XLIM, ylim=YLIM, colors=COLORS, fps=20)


def plain_way(traces: list, out: Path) -> None:
    """The usual FuncAnimation loop: clear and redraw everything every frame."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.animation import FuncAnimation, PillowWriter

    xs, ys, loss = loss_grid(traces[0].meta["problem"], XLIM, YLIM)
    levels = contour_levels(loss)
    paths = [(t["Wa.theta"], t["Wb.theta"]) for t in traces]
    figure, ax = plt.subplots(figsize=(SIZE[0] / 100, SIZE[1] / 100), dpi=100)

    def draw(frame: int):
        ax.clear()
        ax.contourf(xs, ys, loss, levels=levels)
        for (wa, wb), color in zip(paths, COLORS):
            ax.plot(wa[: frame + 1], wb[: frame + 1], color=color)
            ax.plot(wa[frame], wb[frame], "o", color=color)
        ax.set_title(f"update {frame + 1}")
        return []

    FuncAnimation(figure, draw, frames=FRAMES).save(out, writer=PillowWriter(fps=20))
    plt.close(figure)


def timed(function, *args) -> float:
    start = time.perf_counter()
    function(*args)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="runs of the tracer way (median)")
    parser.add_argument("--plain-repeats", type=int, default=3, help="runs of the plain way (median)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        traces = synthetic_traces(folder)
        loss_grid(traces[0].meta["problem"], XLIM, YLIM)  # both ways share the cached grid
        tracer_times = [timed(tracer_way, traces, folder / "tracer.gif") for _ in range(args.repeats)]
        plain_times = [timed(plain_way, traces, folder / "plain.gif") for _ in range(args.plain_repeats)]
        tracer_size = (folder / "tracer.gif").stat().st_size
        plain_size = (folder / "plain.gif").stat().st_size
    fast, slow = statistics.median(tracer_times), statistics.median(plain_times)
    print(f"case: {FRAMES} frames, {SIZE[0]}x{SIZE[1]} px, 4 paths, GIF")
    print(f"tracer  median {fast:7.3f} s  ({FRAMES / fast:6.1f} frames/s, {tracer_size / 1e6:.2f} MB)  "
          f"runs: {', '.join(f'{t:.3f}' for t in tracer_times)}")
    print(f"plain   median {slow:7.3f} s  ({FRAMES / slow:6.1f} frames/s, {plain_size / 1e6:.2f} MB)  "
          f"runs: {', '.join(f'{t:.3f}' for t in plain_times)}")
    print(f"speed-up: {slow / fast:.1f}x")


if __name__ == "__main__":
    main()
