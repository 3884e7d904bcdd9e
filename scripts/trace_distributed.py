"""Trace a small transformer trained with FSDP2 (or DDP) over torch.distributed, then render its dashboard.

Run:  torchrun --nproc_per_node 2 scripts/trace_distributed.py [--strategy fsdp2|ddp] [--out DIR] [--updates N]
 or:  .venv/bin/python scripts/trace_distributed.py [...]   (starts 2 local processes itself)

Every rank runs this same file; the Recorder is constructed on every rank
exactly as in one process, rank 0 writes DIR/distributed.trace.csv and then
renders DIR/distributed_dashboard.png (DIR defaults to
distributed-trace/). FSDP2 (torch.distributed.fsdp.fully_shard) runs on CPU
with the gloo backend in torch 2.13: each rank holds a shard of every
parameter and of Adam's state, and the trace's summaries are of the whole
tensors. The task: predict the next token of random repeating sequences.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from tracer import Recorder, load_trace
from tracer.info import format_summary, summarize
from tracer.recording.distributed import DistributedOptions
from tracer.render import render_figure

VOCABULARY = 16
CONTEXT = 12
GLOBAL_BATCH = 32


class TinyTransformer(torch.nn.Module):
    """Token embedding, two encoder layers with a causal mask, a linear head."""

    def __init__(self, width: int = 32, heads: int = 4, layers: int = 2) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(VOCABULARY, width)
        self.position = torch.nn.Parameter(torch.randn(CONTEXT, width) * 0.02)
        self.layers = torch.nn.ModuleList(
            torch.nn.TransformerEncoderLayer(width, heads, 2 * width, dropout=0.0, batch_first=True) for _ in range(layers)
        )
        self.head = torch.nn.Linear(width, VOCABULARY)
        self.register_buffer("mask", torch.nn.Transformer.generate_square_subsequent_mask(CONTEXT), persistent=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embed(tokens) + self.position
        for layer in self.layers:
            x = layer(x, src_mask=self.mask, is_causal=True)
        return self.head(x)


def batches(rank: int, world: int, updates: int, seed: int = 0):
    """This rank's share of each global batch: sequences that repeat a random pattern of length 3 to 5."""
    generator = torch.Generator().manual_seed(seed)
    for _ in range(updates):
        sequences = []
        for _ in range(GLOBAL_BATCH):
            period = int(torch.randint(3, 6, (1,), generator=generator))
            pattern = torch.randint(0, VOCABULARY, (period,), generator=generator)
            sequences.append(pattern.repeat(CONTEXT // period + 2)[: CONTEXT + 1])
        tokens = torch.stack(sequences)[rank::world]
        yield tokens[:, :-1], tokens[:, 1:]


def distribute(model: torch.nn.Module, strategy: str) -> torch.nn.Module:
    if strategy == "ddp":
        return torch.nn.parallel.DistributedDataParallel(model)
    from torch.distributed.fsdp import fully_shard

    for layer in model.layers:
        fully_shard(layer)
    fully_shard(model)
    return model


def run(args: argparse.Namespace) -> None:
    """One rank's training; torchrun's environment (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT) says which."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(0)  # the same initial parameters on every rank
    model = TinyTransformer()
    names = [name for name, _ in model.named_parameters()]
    trained = distribute(model, args.strategy)
    optimizer = torch.optim.AdamW(trained.parameters(), lr=3e-3, weight_decay=0.01)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=3e-3, total_steps=args.updates)
    path = args.out / "distributed.trace.csv"
    # tracer: the one addition, the same line on every rank; rank 0 writes the file.
    with Recorder(optimizer, path, named_parameters=zip(names, trained.parameters()), granularity="summary",
                  meta={"label": f"tiny transformer, {args.strategy} on {world} ranks"},
                  distributed=DistributedOptions(loss="mean")) as recorder:
        for batch, (tokens, targets) in enumerate(batches(rank, world, args.updates)):
            logits = trained(tokens)
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, VOCABULARY), targets.reshape(-1))
            optimizer.zero_grad()
            loss.backward()
            recorder.note(loss=loss.item(), epoch=0, batch=batch)  # tracer (optional): averaged over ranks
            optimizer.step()
            scheduler.step()
    if rank == 0:
        print(format_summary(summarize(load_trace(path))))
        print(render_figure("dashboard", [path], args.out / "distributed_dashboard.png"))
    dist.destroy_process_group()


def _spawned(rank: int, world: int, args: argparse.Namespace) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world))
    run(args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strategy", choices=("fsdp2", "ddp"), default="fsdp2")
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("distributed-trace"))
    parser.add_argument("--updates", type=int, default=150)
    args = parser.parse_args()
    if "RANK" in os.environ:  # started by torchrun
        run(args)
        return
    with socket.socket() as probe:  # a free port on loopback for the 2 local processes
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    mp.spawn(_spawned, args=(2, args), nprocs=2)


if __name__ == "__main__":
    main()
