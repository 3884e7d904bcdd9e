"""Your own model's optimizer paths on its own loss landscape: a small CNN, SGD with momentum and Adam.

Run:  .venv/bin/python scripts/trace_landscape.py [--out DIR] [--epochs N] [--grid N] [--normalize filter]

Writes into DIR (default: a new temporary folder) the two traces with their
snapshot files, cnn.surface.npz and cnn_landscape.png / .gif. The lines marked
"tracer" are all a training loop needs; the landscape is the Python API of
`tracer landscape` (a model and a loss closure), and the figures are
`tracer render paths --surface`.
"""

from __future__ import annotations

import argparse
import pathlib
import tempfile

import torch

from tracer import Recorder
from tracer.landscape import landscape
from tracer.recording.snapshots import SnapshotPolicy
from tracer.render import render_figure


def data() -> tuple[torch.Tensor, torch.Tensor]:
    """512 noisy 8x8 images of a horizontal or a vertical bar (class 0 or 1)."""
    generator = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 2, (512,), generator=generator)
    images = 0.3 * torch.randn(512, 1, 8, 8, generator=generator)
    where = torch.randint(1, 7, (512,), generator=generator)
    for index, (label, position) in enumerate(zip(labels.tolist(), where.tolist())):
        if label:
            images[index, 0, :, position] += 1.0
        else:
            images[index, 0, position, :] += 1.0
    return images, labels


def make_model() -> torch.nn.Module:
    torch.manual_seed(1)  # one start for both runs: they share one plane
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 6, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(6, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Flatten(), torch.nn.Linear(8 * 2 * 2, 2),
    )


def train(out: pathlib.Path, name: str, epochs: int) -> pathlib.Path:
    images, labels = data()
    model = make_model()
    optimizer = (torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9) if name == "momentum"
                 else torch.optim.Adam(model.parameters(), lr=0.01))
    path = out / f"cnn-{name}.trace.csv"
    order_generator = torch.Generator().manual_seed(2)
    # tracer: per-tensor summaries, and a snapshot of the whole model every 5 updates.
    with Recorder(optimizer, path, named_parameters=model.named_parameters(), granularity="summary",
                  meta={"label": name}, snapshots=SnapshotPolicy(every=5, limit=200)) as recorder:
        for epoch in range(epochs):
            order = torch.randperm(512, generator=order_generator)
            for batch, start in enumerate(range(0, 512, 64)):
                chosen = order[start:start + 64]
                loss = torch.nn.functional.cross_entropy(model(images[chosen]), labels[chosen])
                optimizer.zero_grad()
                loss.backward()
                recorder.note(loss=loss.item(), epoch=epoch, batch=batch)  # tracer (optional)
                optimizer.step()
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=pathlib.Path, default=None, help="output folder (default: a new temporary one)")
    parser.add_argument("--epochs", type=int, default=15, help="epochs of 8 updates (default 15)")
    parser.add_argument("--grid", type=int, default=31, help="grid points a side (default 31)")
    parser.add_argument("--normalize", choices=("none", "filter"), default="none", help="filter-wise normalisation")
    args = parser.parse_args()
    out = args.out or pathlib.Path(tempfile.mkdtemp(prefix="tracer-landscape-"))
    out.mkdir(parents=True, exist_ok=True)
    traces = [train(out, name, args.epochs) for name in ("adam", "momentum")]
    images, labels = data()
    surface = landscape(traces, make_model(), lambda model: torch.nn.functional.cross_entropy(model(images), labels),
                        out / "cnn.surface.npz", grid=(args.grid, args.grid), normalization=args.normalize,
                        loss_name="cross-entropy, 512 images")
    for name in ("cnn_landscape.png", "cnn_landscape.gif"):
        print(render_figure("paths", traces, out / name, surface=str(surface), frames=60))


if __name__ == "__main__":
    main()
