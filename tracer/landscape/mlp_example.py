"""The project's landscape example: the mlp problem (two spirals, 1,185 parameters), Momentum and Adam on one plane.

    python -m tracer.landscape.mlp_example [--logs logs/landscape] [--figures figures]

Trains the catalogue's two mlp runs (lr 0.01, 60 epochs of 16 batches, the
same start) with snapshots every 10 updates, finds their shared plane, evaluates
the loss of the whole data set on a 41 x 41 grid over it, and renders the
still (figures/mlp_landscape.png) and the animation (figures/mlp_landscape.gif)
with `tracer render paths --surface`.
"""

from __future__ import annotations

import argparse
import pathlib
from typing import Sequence

SNAPSHOT_EVERY = 10
GRID = (41, 41)
# (optimizer, lr, label); the first run's final point is the plane's origin.
RUNS = (("adam", 0.01, "Adam lr=0.01"), ("momentum", 0.01, "Momentum lr=0.01"))
EPOCHS = 60


def trace_run(optimizer_name: str, lr: float, label: str, out: pathlib.Path, epochs: int = EPOCHS) -> pathlib.Path:
    """One mlp run with snapshots, traced per tensor (summary) into `out`."""
    from tracer.optim import build_optimizer
    from tracer.problems.mlp import MLPProblem
    from tracer.recorder import Recorder
    from tracer.recording.snapshots import SnapshotPolicy

    problem = MLPProblem()
    model = problem.build_model()
    optimizer = build_optimizer(optimizer_name, model.parameters(), lr=lr)
    meta = {"label": label, "problem": problem.meta, "epochs": epochs, "batch_size": problem.batch_size,
            "seed": problem.seed}
    with Recorder(optimizer, out, named_parameters=model.named_parameters(), granularity="summary", meta=meta,
                  snapshots=SnapshotPolicy(every=SNAPSHOT_EVERY, limit=200),
                  # tracer.optim's v and s are all the state the figures read, as in tracer reproduce's runs.
                  record_state=False,
                  if_exists="overwrite") as recorder:  # the example regenerates its own traces by design
        problem.train(model, optimizer, epochs, recorder)
    return out


def _trace_and_settle(optimizer_name: str, lr: float, label: str, logs: pathlib.Path) -> pathlib.Path:
    """`trace_run` beside `logs`, then into it: a trace repeating the committed one's numbers keeps that file."""
    import os
    import tempfile

    from tracer.recording.snapshots import snapshot_file_for
    from tracer.regenerate import settle

    out = logs / f"mlp-{optimizer_name}.trace.csv"
    with tempfile.TemporaryDirectory(dir=logs, prefix=".fresh-") as fresh:
        trace = trace_run(optimizer_name, lr, label, pathlib.Path(fresh) / out.name)
        settle(trace, out)
        os.replace(snapshot_file_for(trace), snapshot_file_for(out))  # not committed: always the fresh one
    return out


def reproduce(logs: pathlib.Path = pathlib.Path("logs/landscape"), figures: pathlib.Path = pathlib.Path("figures"),
              *, progress: bool = False) -> list[pathlib.Path]:
    """Traces, surface file and figures of the example; returns the paths written."""
    import torch.nn.functional as functional

    from tracer.landscape.surface import landscape
    from tracer.problems.mlp import landscape_data, landscape_model
    from tracer.render import render_figure

    logs.mkdir(parents=True, exist_ok=True)
    traces = [_trace_and_settle(name, lr, label, logs) for name, lr, label in RUNS]
    features, labels = landscape_data()
    surface = landscape(traces, landscape_model(), lambda model: functional.binary_cross_entropy_with_logits(
        model(features), labels), logs / "mlp.surface.npz", grid=GRID, progress=progress,
        loss_name="BCE, all 512 points")
    written = [*traces, surface]
    figures.mkdir(parents=True, exist_ok=True)
    for name in ("mlp_landscape.png", "mlp_landscape.gif"):
        written.append(render_figure("paths", traces, figures / name, surface=str(surface), frames=120, fps=12))
    written.append(render_figure("internals", traces[:1], figures / "mlp_landscape_adam.png", surface=str(surface)))
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--logs", type=pathlib.Path, default=pathlib.Path("logs/landscape"))
    parser.add_argument("--figures", type=pathlib.Path, default=pathlib.Path("figures"))
    args = parser.parse_args(argv)
    for path in reproduce(args.logs, args.figures, progress=True):
        print(path)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
