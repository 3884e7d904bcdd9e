"""Tracing over torch.distributed: DDP, ZeroRedundancyOptimizer and FSDP2, one trace written by rank 0.

The strategy is read from the optimizer and its parameters; the user
constructs the Recorder on every rank exactly as in one process:

- ``ddp``: a process group of several ranks and plain tensor parameters.
  Under DistributedDataParallel every rank holds the same parameters and,
  after DDP's all-reduce, the same gradients and optimizer state, so rank 0
  records and writes alone; the other ranks attach no hooks and do nothing
  per update (with ``loss="mean"`` they join one all-reduce of two numbers).
- ``zero``: a ``torch.distributed.optim.ZeroRedundancyOptimizer``.
  Parameters and gradients are replicated; each parameter's optimizer state
  lives on its owner rank only. Every rank reduces theta, delta and g of
  every parameter from its own replica, and v, s of the parameters it owns;
  the update's one all-gather adds the squared norms of v and s from their
  owners.
- ``fsdp2``: DTensor parameters (``torch.distributed.fsdp.fully_shard``, or
  ``distribute_tensor``); optimizer state is sharded alike. Every rank
  reduces its own shard of every tensor; the update's one all-gather (all
  tensors batched in one float64 vector) brings every rank's partials, and
  each rank combines them: squared norms and dot products added in rank
  order in float64, the extremes of delta by min and max. So every rank holds
  the same whole-tensor summaries (and the same divergence verdict); rank 0
  writes. A plain tensor parameter next to DTensors is reduced by rank 0 only.

What each rank reduces and how the partials combine is
``tracer.recording.sharding``. Under ZeRO and FSDP2 coordinates traced in
full are read by their owner (``tracer.recording.distributed_full``), with
one more all-gather per update.

Check mode (``DistributedOptions(check=True)``): every rank records, rank 0
writes, and after each update the ranks' rows (each computed from the rank's
own tensors, the loss column left out unless it is the all-reduced mean) are
all-gathered and compared bit for bit. At the first update where a rank's
row differs from rank 0's, every rank raises ``RanksDifferError`` from
``optimizer.step()``, naming the update, the column and the values; rank 0's
trace keeps that update's row (rank 0's view) and ends with status
``interrupted``. Under DDP this compares everything; under ZeRO the
replicas of theta and g; under FSDP2 what every rank must agree on (the
learning rates, the loss when averaged, the combined summaries).

Collectives run in a process group of the Recorder's own, created when the
Recorder is constructed (so its collectives never interleave with DDP's or
FSDP's) with a timeout (``DistributedOptions.timeout``, 60 s by default):
a Recorder constructed on only some ranks, or a rank that stops answering,
raises a TracerError after that time instead of hanging.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import math
from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.distributed as dist
from torch import Tensor

from tracer.errors import TracerError
from tracer.recording.distributed_full import ShardedFullReader
from tracer.recording.sharding import (
    WHOLE,
    WRITING_RANK,
    GatheredSharding,
    Sharding,
    ShardSharding,
    ZeroSharding,
    collective,
    is_dtensor,
)

STRATEGIES = ("single", "ddp", "zero", "fsdp2")
LOSSES = ("rank", "mean")


class RanksDifferError(TracerError):
    """Check mode: one update's rows differ between ranks, whose replicas should agree bit for bit."""


@dataclass(frozen=True)
class DistributedOptions:
    """How a Recorder behaves under torch.distributed (ignored in a single process).

    ``check``: every rank records and the ranks' rows are compared after each
    update (``RanksDifferError`` at the first difference). ``loss``: the loss
    column holds rank 0's own noted loss ("rank") or the mean over the ranks
    that noted one ("mean", one all-reduce per update). ``timeout``: seconds
    the Recorder's collectives wait for the other ranks before failing.
    """

    check: bool = False
    loss: str = "rank"
    timeout: float = 60.0

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise TracerError(f"invalid distributed loss {self.loss!r}; accepted: {', '.join(LOSSES)}")
        if not (isinstance(self.timeout, (int, float)) and self.timeout > 0 and math.isfinite(self.timeout)):
            raise TracerError(f"invalid distributed timeout {self.timeout!r}; accepted: a positive number of seconds")


@functools.cache  # looked up at every recorded update: an import statement there costs a microsecond each time
def _zero_class() -> type | None:
    try:
        from torch.distributed.optim import ZeroRedundancyOptimizer
    except ImportError:
        return None
    return ZeroRedundancyOptimizer


def inner_optimizer(optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
    """The optimizer that does the arithmetic: ZeroRedundancyOptimizer's local one, else the optimizer itself."""
    zero = _zero_class()
    if zero is not None and isinstance(optimizer, zero):
        return optimizer.optim
    return optimizer


def detect_strategy(optimizer: torch.optim.Optimizer) -> str:
    """"single" without an initialised process group, else "zero", "fsdp2" (DTensor parameters) or "ddp"."""
    if not (dist.is_available() and dist.is_initialized()):
        return "single"
    zero = _zero_class()
    if zero is not None and isinstance(optimizer, zero):
        return "zero"
    if any(is_dtensor(p) for group in optimizer.param_groups for p in group["params"]):
        return "fsdp2"
    return "ddp"


def _mesh(strategy: str, parameters: Sequence[Tensor], world_size: int) -> dict[str, Any]:
    """The device mesh as metadata: its shape, dimension names and the parameters' placements."""
    if strategy != "fsdp2":
        return {"shape": [world_size], "dim_names": None, "placements": ["Replicate()"]}
    dtensors = [p for p in parameters if is_dtensor(p)]
    mesh = dtensors[0].device_mesh
    placements = sorted({str(tuple(p.placements)) for p in dtensors})
    names = mesh.mesh_dim_names
    return {"shape": list(mesh.shape), "dim_names": list(names) if names else None, "placements": placements}


class Distributed:
    """A Recorder's place in a distributed run: strategy, rank, its own process group and collectives."""

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        options: DistributedOptions,
        fingerprint: str,
        granularity: str,
    ) -> None:
        self.options = options
        self.strategy = detect_strategy(optimizer)
        self.group: Any = None
        if self.strategy == "single":
            self.rank, self.world_size = 0, 1
            self.sharding: Sharding = WHOLE
            return
        self.rank, self.world_size = dist.get_rank(), dist.get_world_size()
        self.backend = str(dist.get_backend())
        self.device = torch.device("cpu") if self.backend == "gloo" else torch.device("cuda", torch.cuda.current_device())
        parameters = [p for group in optimizer.param_groups for p in group["params"]]
        self.mesh = _mesh(self.strategy, parameters, self.world_size)
        timeout = datetime.timedelta(seconds=options.timeout)
        try:
            # Every rank must construct the Recorder: forming this group is the handshake.
            self.group = dist.new_group(backend=self.backend, timeout=timeout)
        except Exception as error:
            raise TracerError(
                f"rank {self.rank}: the Recorder's process group was not formed within {options.timeout:g} s "
                f"({type(error).__name__}); construct the Recorder on every rank of the run (world size "
                f"{self.world_size}), not only on some"
            ) from error
        self._agree(fingerprint)
        if self.strategy == "zero":
            self.sharding = ZeroSharding(optimizer, self.group, self.rank, self.world_size, self.device)
        elif self.strategy == "fsdp2":
            self.sharding = ShardSharding(self.group, self.rank, self.world_size, self.device)
        else:
            self.sharding = WHOLE

    def _agree(self, fingerprint: str) -> None:
        """Every rank built the same recorder (strategy, columns, options), or a TracerError on every rank."""
        mine = hashlib.sha256(f"{self.strategy}|{self.options}|{fingerprint}".encode()).hexdigest()[:16]
        everyone: list[Any] = [None] * self.world_size
        collective("compare the ranks' Recorders", dist.all_gather_object, everyone, mine, group=self.group)
        odd = [rank for rank, theirs in enumerate(everyone) if theirs != everyone[0]]
        if odd:
            raise TracerError(
                f"ranks {odd} constructed a different Recorder from rank 0's (strategy, traced columns or options "
                f"differ); construct it with the same arguments on every rank"
            )

    # -- roles ------------------------------------------------------------------------------

    @property
    def distributed(self) -> bool:
        return self.strategy != "single"

    @property
    def writes(self) -> bool:
        """This rank writes the trace file."""
        return self.rank == WRITING_RANK

    @property
    def records(self) -> bool:
        """This rank attaches the step hooks (under DDP only rank 0 does, unless in check mode)."""
        return self.writes or self.options.check or self.strategy in ("zero", "fsdp2")

    @property
    def averages_loss(self) -> bool:
        return self.distributed and self.options.loss == "mean"

    def meta(self) -> dict[str, Any] | None:
        """The trace's ``distributed`` metadata (None in a single process)."""
        if not self.distributed:
            return None
        return {
            "strategy": self.strategy,
            "world_size": self.world_size,
            "backend": self.backend,
            "mesh": self.mesh,
            "writer_rank": WRITING_RANK,
            "loss": "mean over ranks" if self.options.loss == "mean" else f"rank {WRITING_RANK}'s own",
            "check": self.options.check,
            "collective_timeout_s": self.options.timeout,
        }

    def full_reader(self, parameters: Sequence[Any], groups: int, summary_snapshots: Any = None) -> Any:
        """The reader of coordinates traced in full where they are spread over ranks (ZeRO, FSDP2); None otherwise.
        ``summary_snapshots`` as ``tracer.recording.full.FullReader``'s."""
        if not isinstance(self.sharding, GatheredSharding):
            return None
        return ShardedFullReader(parameters, groups, self.sharding, summary_snapshots)

    # -- per update -------------------------------------------------------------------------

    def loss(self, value: float | None) -> float | None:
        """The loss for the row: this rank's own, or the mean over the ranks that noted one (one all-reduce)."""
        if not self.averages_loss:
            return value
        pair = torch.tensor([0.0 if value is None else value, 0.0 if value is None else 1.0], dtype=torch.float64)
        pair = pair.to(self.device)
        collective("average the loss", dist.all_reduce, pair, group=self.group)
        total, count = pair.tolist()
        return total / count if count else None

    def check(self, update: int, columns: Sequence[str], cells: Sequence[Any]) -> str | None:
        """Check mode: compare this update's rows across ranks; the first difference as a message, or None."""
        compared = [i for i, column in enumerate(columns) if not (column == "loss" and not self.averages_loss)]
        row = torch.tensor([math.nan if cells[i] is None else float(cells[i]) for i in compared], dtype=torch.float64)
        row = row.to(self.device)
        rows = [torch.empty_like(row) for _ in range(self.world_size)]
        collective("compare the ranks' rows (check mode)", dist.all_gather, rows, row, group=self.group)
        bits = [r.cpu().view(torch.int64) for r in rows]  # bitwise: NaN equals NaN, -0.0 differs from 0.0
        for rank in range(1, self.world_size):
            differ = torch.nonzero(bits[rank] != bits[0]).flatten()
            if differ.numel():
                at = int(differ[0])
                column = columns[compared[at]]
                return (
                    f"ranks drifted apart at update {update}: {column} is {rows[0][at].item()!r} on rank 0 but "
                    f"{rows[rank][at].item()!r} on rank {rank} (check mode compares every rank's row bit for bit)"
                )
        return None
