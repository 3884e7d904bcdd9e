"""The figures of a lecture on momentum and adaptive methods, made from nothing.

Run:  .venv/bin/python scripts/lecture_quadratic.py [--out figures/lecture] [--no-gif]

Part 1, an ill-conditioned quadratic f(x, y) = x**2 + 10*y**2 (curvatures 2
and 20: condition number 10), every optimizer from (-4, 1.5) for 60 updates:

- SGD at lr 0.09, close to the stability limit 2/20 = 0.1 of the steep axis:
  it zig-zags across the valley (y flips sign each update, |1 - 0.09*20| = 0.8)
  while creeping along it (x shrinks by 1 - 0.09*2 = 0.82 per update);
- Momentum (0.9) at lr 0.02: the velocity builds up and overshoots the minimum;
- Adam at lr 0.3: each coordinate's step is rescaled by its own sqrt(s), so it
  heads for the minimum at the same pace along both axes, the curvatures
  notwithstanding.

Part 2, the same three on Rosenbrock's valley from (-1.5, 2), 1000 updates, at
the learning rates of the reference figure (the largest that do not diverge).

Figures (PNG, and one GIF): <out>/quadratic_paths.png, quadratic_paths.gif,
quadratic_internals.png (the three side by side at update 6), quadratic_loss.png,
rosenbrock_paths.png, rosenbrock_internals.png (at update 40), rosenbrock_loss.png.
The traces go to a temporary directory; nothing else is written.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import tempfile

from tracer.render import render_figure
from tracer.run import RunConfig, run_experiment, trace_function

QUADRATIC = "x**2 + 10*y**2"
QUADRATIC_START = (-4.0, 1.5)
QUADRATIC_STEPS = 60
QUADRATIC_RUNS = (("sgd", 0.09), ("momentum", 0.02), ("adam", 0.3))
ROSENBROCK_STEPS = 1000
ROSENBROCK_RUNS = (("sgd", 0.0015), ("momentum", 0.0003), ("adam", 0.06))
COLORS = ("#1f77b4", "#9467bd", "#2ca02c")  # SGD, Momentum, Adam in both parts (red and orange are -g and -v)


def quadratic_traces(logs: pathlib.Path) -> list[pathlib.Path]:
    return [trace_function(QUADRATIC, QUADRATIC_START, optimizer=name, lr=lr, steps=QUADRATIC_STEPS,
                           out=logs / f"quadratic-{name}.trace.csv") for name, lr in QUADRATIC_RUNS]


def rosenbrock_traces(logs: pathlib.Path) -> list[pathlib.Path]:
    return [run_experiment(RunConfig(problem="rosenbrock", optimizer=name, lr=lr, epochs=ROSENBROCK_STEPS,
                                     out=logs / f"rosenbrock-{name}.trace.csv")) for name, lr in ROSENBROCK_RUNS]


def make_lecture(out: pathlib.Path, gif: bool = True) -> list[pathlib.Path]:
    """Trace both parts and render every figure into `out`; returns the figures written."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    with tempfile.TemporaryDirectory() as logs:
        quadratic = quadratic_traces(pathlib.Path(logs))
        rosenbrock = rosenbrock_traces(pathlib.Path(logs))
        style = {"colors": COLORS}
        figures = [
            ("paths", quadratic, "quadratic_paths.png", {"title": "x² + 10y²: SGD zig-zags, Momentum overshoots, "
                                                                  "Adam rescales"}),
            ("internals", quadratic, "quadratic_internals.png", {"updates": (1, 6)}),
            ("loss", quadratic, "quadratic_loss.png", {"title": "x² + 10y²: loss and learning rate"}),
            ("paths", rosenbrock, "rosenbrock_paths.png", {"title": "Rosenbrock's valley, 1000 updates"}),
            ("internals", rosenbrock, "rosenbrock_internals.png", {"updates": (1, 40)}),
            ("loss", rosenbrock, "rosenbrock_loss.png", {"title": "Rosenbrock: loss and learning rate"}),
        ]
        if gif:
            figures.insert(1, ("paths", quadratic, "quadratic_paths.gif", {}))
        for kind, traces, name, options in figures:
            written.append(render_figure(kind, traces, out / name, **style, **options))
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("figures/lecture"),
                        help="directory for the figures (created; default figures/lecture)")
    parser.add_argument("--no-gif", action="store_true", help="stills only")
    args = parser.parse_args(argv)
    for path in make_lecture(args.out, gif=not args.no_gif):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
