"""One rank of a distributed test run (tests/test_distributed.py starts one process per rank).

    RANK=0 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=29500 python tests/distributed_worker.py OUT SCENARIO...

Scenarios, run in the order given: ``ddp``, ``zero``, ``fsdp2`` (each: an
untraced run, the same run traced, and a check-mode run with rank 1
perturbed at update 3), ``death`` (rank 1 exits after 2 updates), ``partial``
(only rank 0 constructs a Recorder; must come last). Every rank writes what
it saw under OUT as JSON (SCENARIO.rankR.json) and its parameters as tensors.
"""

from __future__ import annotations

import json
import os
import sys
import time

import torch
import torch.distributed as dist

from tracer import Recorder
from tracer.errors import TracerError
from tracer.recording.distributed import DistributedOptions, RanksDifferError

UPDATES = 4
PERTURBED_UPDATE = 3
GLOBAL_BATCH = 16
LR = 0.05


def make_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))


def global_batch() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return torch.randn(GLOBAL_BATCH, 4, generator=generator), torch.randn(GLOBAL_BATCH, 2, generator=generator)


def wrap(strategy: str, model: torch.nn.Module):
    """The model as the strategy trains it, and its optimizer."""
    if strategy == "ddp":
        wrapped = torch.nn.parallel.DistributedDataParallel(model)
        return wrapped, torch.optim.Adam(wrapped.parameters(), lr=LR)
    if strategy == "zero":
        from torch.distributed.optim import ZeroRedundancyOptimizer

        wrapped = torch.nn.parallel.DistributedDataParallel(model)
        return wrapped, ZeroRedundancyOptimizer(wrapped.parameters(), optimizer_class=torch.optim.Adam, lr=LR)
    from torch.distributed.fsdp import fully_shard

    for layer in model:
        if isinstance(layer, torch.nn.Linear):
            fully_shard(layer)
    fully_shard(model)
    return model, torch.optim.Adam(model.parameters(), lr=LR)


def local_parameters(model: torch.nn.Module) -> list[torch.Tensor]:
    return [p.to_local().detach().clone() if hasattr(p, "to_local") else p.detach().clone() for p in model.parameters()]


# What the traced runs record: coordinates in full (under FSDP2 on both ranks' shards), every tensor summarised.
TRACED = {"full": ["2.bias", "0.weight[0]", "0.weight[31]", "2.weight[9]"]}


def train(strategy: str, out: str, label: str, recorder_options: dict | None, perturb: bool = False) -> dict:
    """Train UPDATES steps on this rank's slice of the global batch, traced when recorder_options is given."""
    rank, world = dist.get_rank(), dist.get_world_size()
    model = make_model()
    names = [name for name, _ in model.named_parameters()]
    wrapped, optimizer = wrap(strategy, model)
    x, y = global_batch()
    x, y = x[rank::world], y[rank::world]
    seen: dict = {"rank": rank}
    recorder = None
    if recorder_options is not None:
        recorder = Recorder(
            optimizer,
            os.path.join(out, f"{strategy}.{label}.trace.csv"),
            named_parameters=zip(names, wrapped.parameters()),
            **TRACED,
            **recorder_options,
        ).start()
    try:
        for update in range(1, UPDATES + 1):
            loss = torch.nn.functional.mse_loss(wrapped(x), y)
            optimizer.zero_grad()
            loss.backward()
            if perturb and rank == 1 and update == PERTURBED_UPDATE:
                if strategy == "fsdp2":  # a rank whose schedule drifted: its own learning rate
                    optimizer.param_groups[0]["lr"] = LR * 1.5
                else:  # a rank whose replica drifted
                    with torch.no_grad():
                        next(wrapped.parameters()).add_(1e-3)
            if recorder is not None:
                recorder.note(loss=loss.item())
            optimizer.step()
    except RanksDifferError as error:
        seen["error"] = str(error)
    finally:
        if recorder is not None:
            recorder.close()
    torch.save(local_parameters(wrapped), os.path.join(out, f"{strategy}.{label}.rank{rank}.pt"))
    return seen


def scenario_strategy(strategy: str, out: str) -> dict:
    return {
        "untraced": train(strategy, out, "untraced", None),
        "traced": train(strategy, out, "traced", {"distributed": DistributedOptions(loss="mean")}),
        "check": train(strategy, out, "check", {"distributed": DistributedOptions(check=True)}, perturb=True),
    }


def scenario_death(out: str) -> dict:
    """Rank 1 dies before update 3: rank 0's trace keeps the 2 rows written."""
    rank = dist.get_rank()
    model = make_model()
    wrapped, optimizer = wrap("ddp", model)
    x, y = global_batch()
    with Recorder(optimizer, os.path.join(out, "death.trace.csv"), granularity="summary") as recorder:
        for update in range(1, UPDATES + 1):
            if rank == 1 and update == 3:
                os._exit(3)
            loss = torch.nn.functional.mse_loss(wrapped(x), y)
            optimizer.zero_grad()
            try:
                loss.backward()
            except Exception as error:  # the peer is gone: DDP's all-reduce fails
                with open(os.path.join(out, "death.rank0.txt"), "w") as file:
                    file.write(f"{type(error).__name__}: {error}")
                raise
            recorder.note(loss=loss.item())
            optimizer.step()
    return {}


def scenario_partial(out: str) -> dict:
    """Only rank 0 constructs a Recorder; it must fail after its timeout, not hang."""
    rank = dist.get_rank()
    if rank != 0:  # stays alive, without a Recorder, until rank 0 has given up on it
        deadline = time.monotonic() + 30
        while not os.path.exists(os.path.join(out, "partial.rank0.json")) and time.monotonic() < deadline:
            time.sleep(0.1)
        return {}
    model = make_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    started = time.monotonic()
    try:
        Recorder(optimizer, os.path.join(out, "partial.trace.csv"), distributed=DistributedOptions(timeout=2))
        return {"error": None}
    except TracerError as error:
        return {"error": str(error), "seconds": time.monotonic() - started}


def main() -> None:
    out, scenarios = sys.argv[1], sys.argv[2:]
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    for scenario in scenarios:
        if scenario == "death":
            seen = scenario_death(out)
        elif scenario == "partial":
            seen = scenario_partial(out)
        else:
            seen = scenario_strategy(scenario, out)
        with open(os.path.join(out, f"{scenario}.rank{rank}.json"), "w") as file:
            json.dump(seen, file)
    if "partial" in scenarios:
        os._exit(0)  # rank 1 never joined the Recorder's group: skip the teardown that would wait for it
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
