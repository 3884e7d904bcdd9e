"""Trace the optimizer you are writing: a 20-line Lion beside torch's AdamW.

Run:  .venv/bin/python scripts/trace_lion.py [--out DIR] [--figures DIR] [--epochs N]

Trains the same small regression network twice, from the same start, once
with the Lion below (Chen et al., 2023: the sign of an interpolated
momentum) and once with torch's AdamW, each traced per tensor by a Recorder.
Lion is in no table of the toolkit: its d is measured from the displacement,
and ``state_keys`` names its momentum as v. Then prints both traces
(tracer info), and draws them side by side: DIR/lion_vs_adamw_dashboard.png
(per-tensor norms and cosines) and DIR/lion_vs_adamw_state.png (every state
tensor by its key). DIR defaults to a new temporary folder; ``--figures``
puts the two figures in another folder than the traces (``make reproduce``
draws them into figures/).
"""

from __future__ import annotations

import argparse
import pathlib
import tempfile

import torch

from tracer import Recorder, load_trace
from tracer.info import format_summary, summarize
from tracer.render import render_figure


class Lion(torch.optim.Optimizer):
    """Lion: theta -= lr * (sign(beta1 * m + (1 - beta1) * g) + wd * theta); m = beta2 * m + (1 - beta2) * g."""

    def __init__(self, params, lr: float = 1e-4, betas: tuple[float, float] = (0.9, 0.99), weight_decay: float = 0.0):
        super().__init__(params, dict(lr=lr, betas=betas, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["exp_avg"] = torch.zeros_like(p)
                exp_avg = state["exp_avg"]
                update = exp_avg.mul(beta1).add_(p.grad, alpha=1 - beta1).sign_()
                p.mul_(1 - group["lr"] * group["weight_decay"])
                p.add_(update, alpha=-group["lr"])
                exp_avg.mul_(beta2).add_(p.grad, alpha=1 - beta2)
        return loss


def train(out: pathlib.Path, name: str, epochs: int) -> pathlib.Path:
    """One run of the regression network with optimizer ``name`` ("lion" or "adamw"), traced per tensor."""
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(256, 4, generator=generator)
    targets = torch.sin(features.sum(dim=1, keepdim=True)) + 0.05 * torch.randn(256, 1, generator=generator)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    if name == "lion":  # Lion wants a learning rate 3-10x smaller than AdamW's, and a larger decay
        optimizer = Lion(model.parameters(), lr=0.003, weight_decay=0.1)
        options = {"state_keys": {"v": "exp_avg"}, "meta": {"label": "Lion lr=0.003"}}
    else:
        optimizer = torch.optim.AdamW(model.parameters(), lr=0.02, weight_decay=0.01)
        options = {"meta": {"label": "AdamW lr=0.02"}}
    path = out / f"{name}.trace.csv"
    with Recorder(optimizer, path, named_parameters=model.named_parameters(), granularity="summary",
                  if_exists="overwrite", **options) as recorder:
        for epoch in range(epochs):
            order = torch.randperm(256, generator=generator)
            for batch, start in enumerate(range(0, 256, 32)):
                chosen = order[start : start + 32]
                loss = torch.nn.functional.mse_loss(model(features[chosen]), targets[chosen])
                optimizer.zero_grad()
                loss.backward()
                recorder.note(loss=loss.item(), epoch=epoch, batch=batch)
                optimizer.step()
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=pathlib.Path, default=None, help="output folder (default: a new temporary one)")
    parser.add_argument("--figures", type=pathlib.Path, default=None, help="folder of the figures (default: --out)")
    parser.add_argument("--epochs", type=int, default=30, help="epochs of 8 updates (default 30)")
    args = parser.parse_args()
    out = args.out or pathlib.Path(tempfile.mkdtemp(prefix="tracer-lion-"))
    out.mkdir(parents=True, exist_ok=True)
    paths = [train(out, name, args.epochs) for name in ("lion", "adamw")]
    for path in paths:
        print(format_summary(summarize(load_trace(path))))
    figures = args.figures or out
    figures.mkdir(parents=True, exist_ok=True)
    print(render_figure("dashboard", paths, figures / "lion_vs_adamw_dashboard.png"))
    print(render_figure("state", paths, figures / "lion_vs_adamw_state.png"))


if __name__ == "__main__":
    main()
