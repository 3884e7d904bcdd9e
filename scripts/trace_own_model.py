"""Trace your own training loop: a plain PyTorch model, torch's own AdamW and a
cosine schedule, with tracer.Recorder as the only addition. Then look at the
trace (tracer info), render the per-tensor dashboard and the path of two
chosen coordinates.

Run:  .venv/bin/python scripts/trace_own_model.py [--out DIR] [--epochs N]

Writes DIR/own_model.trace.csv, DIR/own_model_dashboard.png and
DIR/own_model_paths.gif (DIR defaults to a new temporary folder). The model
is a small regression network on synthetic data; the same lines trace any
model: pass its named_parameters() and choose the granularity.
"""

from __future__ import annotations

import argparse
import pathlib
import tempfile

import torch

from tracer import Recorder, load_trace
from tracer.info import format_summary, summarize
from tracer.render import render_figure


def train(out: pathlib.Path, epochs: int) -> pathlib.Path:
    """An ordinary training loop; the three lines marked "tracer" are all it takes."""
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(256, 4, generator=generator)
    targets = torch.sin(features.sum(dim=1, keepdim=True)) + 0.05 * torch.randn(256, 1, generator=generator)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.02, weight_decay=0.01)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs * 8)
    path = out / "own_model.trace.csv"
    # tracer: the output layer's bias and two of its weights in full (their
    # paths can be drawn), every tensor also summarised.
    with Recorder(optimizer, path, named_parameters=model.named_parameters(),
                  granularity="summary", full=["2.bias", "2.weight[0]", "2.weight[1]"],
                  meta={"label": "AdamW + cosine"}, if_exists="overwrite") as recorder:
        for epoch in range(epochs):
            order = torch.randperm(256, generator=generator)
            for batch, start in enumerate(range(0, 256, 32)):
                chosen = order[start : start + 32]
                loss = torch.nn.functional.mse_loss(model(features[chosen]), targets[chosen])
                optimizer.zero_grad()
                loss.backward()
                recorder.note(loss=loss.item(), epoch=epoch, batch=batch)  # tracer (optional)
                optimizer.step()
                scheduler.step()
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=pathlib.Path, default=None, help="output folder (default: a new temporary one)")
    parser.add_argument("--epochs", type=int, default=40, help="epochs of 8 updates (default 40)")
    args = parser.parse_args()
    out = args.out or pathlib.Path(tempfile.mkdtemp(prefix="tracer-own-model-"))
    out.mkdir(parents=True, exist_ok=True)
    path = train(out, args.epochs)
    print(format_summary(summarize(load_trace(path))))
    print(render_figure("dashboard", [path], out / "own_model_dashboard.png"))
    print(render_figure("paths", [path], out / "own_model_paths.gif", coordinates=("2.weight[0]", "2.bias[0]")))


if __name__ == "__main__":
    main()
