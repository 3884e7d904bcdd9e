"""What tracing costs over torch.distributed: traced/untraced training step, DDP and FSDP2 on 2 processes vs 1.

Run from the repository root::

    .venv/bin/python benchmarks/bench_distributed.py            # 40 rounds
    .venv/bin/python benchmarks/bench_distributed.py --quick    # 10 rounds

A training step (forward, backward, Adam step) of an MLP of 8 layers of
256x256 (0.5M parameters, batch 64 per process) at summary granularity, the
Recorder's default distributed options (loss of rank 0, no check mode). The
traced and the untraced run are two copies of the same model and optimizer in
the same processes; rounds alternate between them so that a busy machine
slows both alike. Each process runs on one thread (gloo on loopback). Prints
the median step time of each and their ratio, measured on rank 0.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from tracer import Recorder

WIDTH, DEPTH, BATCH = 256, 8, 64


def make_model() -> torch.nn.Module:
    torch.manual_seed(0)
    layers: list[torch.nn.Module] = []
    for _ in range(DEPTH):
        layers += [torch.nn.Linear(WIDTH, WIDTH), torch.nn.Tanh()]
    return torch.nn.Sequential(*layers)


def distribute(model: torch.nn.Module, strategy: str) -> torch.nn.Module:
    if strategy == "ddp":
        return torch.nn.parallel.DistributedDataParallel(model)
    if strategy == "fsdp2":
        from torch.distributed.fsdp import fully_shard

        for layer in model:
            if isinstance(layer, torch.nn.Linear):
                fully_shard(layer)
        fully_shard(model)
    return model


def measure(strategy: str, rounds: int, directory: Path) -> tuple[float, float]:
    """Median seconds of one untraced and one traced training step, rounds interleaved."""
    x = torch.randn(BATCH, WIDTH, generator=torch.Generator().manual_seed(1))
    runs = {}
    for name in ("untraced", "traced"):
        model = distribute(make_model(), strategy)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
        recorder = None
        if name == "traced":
            recorder = Recorder(optimizer, directory / f"{strategy}.trace.csv", granularity="summary").start()

        def step(model=model, optimizer=optimizer):
            loss = model(x).square().mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

        runs[name] = (step, recorder)
    times: dict[str, list[float]] = {"untraced": [], "traced": []}
    for name in runs:  # warm-up: lazy state, first allocations
        runs[name][0]()
    for round_index in range(rounds):
        order = ["untraced", "traced"] if round_index % 2 == 0 else ["traced", "untraced"]
        for name in order:
            start = time.perf_counter()
            runs[name][0]()
            times[name].append(time.perf_counter() - start)
    runs["traced"][1].close()
    return statistics.median(times["untraced"]), statistics.median(times["traced"])


def _worker(rank: int, world: int, port: int, strategy: str, rounds: int, directory: str, results) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    untraced, traced = measure(strategy, rounds, Path(directory))
    if rank == 0:
        results.put((untraced, traced))
    dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 rounds instead of 40")
    args = parser.parse_args()
    rounds = 10 if args.quick else 40
    torch.set_num_threads(1)
    print(f"MLP {DEPTH}x{WIDTH}x{WIDTH}, batch {BATCH} per process, Adam, summary granularity, {rounds} rounds")
    print(f"{'run':<22}{'untraced ms':>12}{'traced ms':>12}{'ratio':>8}")
    with tempfile.TemporaryDirectory() as directory:
        untraced, traced = measure("single", rounds, Path(directory))
        print(f"{'single process':<22}{untraced * 1e3:>12.2f}{traced * 1e3:>12.2f}{traced / untraced:>8.2f}")
        context = mp.get_context("spawn")
        for strategy in ("ddp", "fsdp2"):
            results = context.SimpleQueue()
            mp.spawn(_worker, args=(2, _free_port(), strategy, rounds, directory, results), nprocs=2)
            untraced, traced = results.get()
            print(f"{strategy + ', 2 processes':<22}{untraced * 1e3:>12.2f}{traced * 1e3:>12.2f}{traced / untraced:>8.2f}")


if __name__ == "__main__":
    main()
