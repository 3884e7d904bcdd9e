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

Under ZeRO and FSDP2 coordinates traced in full are read by their owner
(``tracer.recording.distributed_full``), with one more all-gather per update.

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
import hashlib
import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor

from tracer.errors import TracerError

STRATEGIES = ("single", "ddp", "zero", "fsdp2")
LOSSES = ("rank", "mean")
WRITING_RANK = 0


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


def _is_dtensor(tensor: Tensor) -> bool:
    try:
        from torch.distributed.tensor import DTensor
    except ImportError:  # a torch built without distributed
        return False
    return isinstance(tensor, DTensor)


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
    if any(_is_dtensor(p) for group in optimizer.param_groups for p in group["params"]):
        return "fsdp2"
    return "ddp"


def _mesh(strategy: str, parameters: Sequence[Tensor], world_size: int) -> dict[str, Any]:
    """The device mesh as metadata: its shape, dimension names and the parameters' placements."""
    if strategy != "fsdp2":
        return {"shape": [world_size], "dim_names": None, "placements": ["Replicate()"]}
    dtensors = [p for p in parameters if _is_dtensor(p)]
    mesh = dtensors[0].device_mesh
    placements = sorted({str(tuple(p.placements)) for p in dtensors})
    names = mesh.mesh_dim_names
    return {"shape": list(mesh.shape), "dim_names": list(names) if names else None, "placements": placements}


# Reduction slots (tracer.recording.summary.REDUCTIONS) and how their partials combine across ranks.
_MIN_SLOTS: tuple[str, ...] = ()
_MAX_SLOTS = ("delta_abs_max",)
_STATE_SLOTS = ("v_sq", "s_sq")


class Sharding:
    """What one rank reduces of each traced tensor, and how the ranks' partial reductions combine.

    The summary reducer asks ``piece`` for the part of a parameter (or of
    its gradient or state tensor) this rank reduces (None: nothing), and
    ``state`` for a parameter's optimizer state held here (None: held
    elsewhere); ``read`` turns the results buffers into the whole tensors'
    numbers. This base is a single process: everything whole and local.
    """


    def piece(self, tensor: Tensor) -> Tensor | None:
        return tensor

    def state(self, optimizer: torch.optim.Optimizer, parameter: Tensor) -> Mapping[str, Any] | None:
        return optimizer.state[parameter]

    def local_indices(self, parameter: Tensor, flat_indices: Sequence[int]) -> list[int | None]:
        """Each flat index of the whole tensor as a flat index into what this rank owns of it (None: another rank)."""
        return list(flat_indices)

    def read(self, results: Mapping[Any, Tensor], reductions: Sequence[str]) -> dict[Any, list[float]]:
        """Each results buffer as floats (one device-to-host read each)."""
        return {key: buffer.reshape(-1).tolist() for key, buffer in results.items()}


WHOLE = Sharding()


class _Gathered(Sharding):
    """Partials combined across ranks by one all-gather of every results buffer, batched in float64."""

    combine_state_only = False  # ZeRO: only v and s are combined; theta, delta and g are each rank's own

    def __init__(self, group: Any, rank: int, world_size: int, device: torch.device) -> None:
        self.group, self.rank, self.world_size, self.device = group, rank, world_size, device
        self._masks: dict[int, tuple[Tensor, Tensor, Tensor]] = {}

    def _slot_masks(self, size: int, reductions: Sequence[str]) -> tuple[Tensor, Tensor, Tensor]:
        """Boolean masks over a flat vector of ``size`` slots: minimised, maximised, kept local (the rest is summed)."""
        if size not in self._masks:
            names = [reductions[i % len(reductions)] for i in range(size)]
            kept = [self.combine_state_only and name not in _STATE_SLOTS for name in names]
            low = [name in _MIN_SLOTS and not k for name, k in zip(names, kept)]
            high = [name in _MAX_SLOTS and not k for name, k in zip(names, kept)]
            self._masks[size] = tuple(torch.tensor(m, dtype=torch.bool) for m in (low, high, kept))
        return self._masks[size]

    def read(self, results: Mapping[Any, Tensor], reductions: Sequence[str]) -> dict[Any, list[float]]:
        keys = list(results)
        flat = torch.cat([results[key].reshape(-1).to(self.device, torch.float64) for key in keys]) if keys else None
        if flat is None:
            return {}
        gathered = [torch.empty_like(flat) for _ in range(self.world_size)]
        _collective("all-gather the summaries' partial reductions", dist.all_gather, gathered, flat, group=self.group)
        stacked = torch.stack(gathered).cpu()  # [rank, slot]
        low_mask, high_mask, kept_mask = self._slot_masks(flat.numel(), reductions)
        combined = stacked[0].clone()
        for row in stacked[1:]:  # rank order: every rank adds in the same order and gets the same floats
            combined += row
        combined = torch.where(low_mask, stacked.amin(0), combined)
        combined = torch.where(high_mask, stacked.amax(0), combined)
        combined = torch.where(kept_mask, stacked[self.rank], combined)
        numbers = combined.tolist()
        out: dict[Any, list[float]] = {}
        offset = 0
        for key in keys:
            size = results[key].numel()
            out[key] = numbers[offset : offset + size]
            offset += size
        return out


class ZeroSharding(_Gathered):
    """ZeroRedundancyOptimizer: theta and g replicated on every rank, v and s on the parameter's owner only."""

    combine_state_only = True

    def __init__(self, optimizer: Any, group: Any, rank: int, world_size: int, device: torch.device) -> None:
        super().__init__(group, rank, world_size, device)
        self._zero = optimizer

    def state(self, optimizer: torch.optim.Optimizer, parameter: Tensor) -> Mapping[str, Any] | None:
        local = self._zero.optim.state
        return local[parameter] if parameter in local else None

    def local_indices(self, parameter: Tensor, flat_indices: Sequence[int]) -> list[int | None]:
        # The owner computes a parameter's full values: it alone holds the state its probe reads.
        owner = self._zero._param_to_rank[parameter]
        return list(flat_indices) if owner == self.rank else [None] * len(flat_indices)


class ShardSharding(_Gathered):
    """FSDP2 / DTensor: every rank reduces its local shard; plain tensors are reduced by rank 0 alone."""

    def piece(self, tensor: Tensor) -> Tensor | None:
        if not _is_dtensor(tensor):
            return tensor if self.rank == WRITING_RANK else None
        from torch.distributed.tensor import Replicate, Shard

        mesh = tensor.device_mesh
        for dim, placement in enumerate(tensor.placements):
            # A replicated mesh dimension holds copies: only its first coordinate contributes.
            if isinstance(placement, Replicate) and mesh.get_local_rank(dim) != 0:
                return None
            if not isinstance(placement, (Replicate, Shard)):
                raise TracerError(f"cannot trace a DTensor with placement {placement}; accepted: Shard and Replicate")
        local = tensor.to_local()
        return local if local.numel() else None

    def state(self, optimizer: torch.optim.Optimizer, parameter: Tensor) -> Mapping[str, Any] | None:
        return optimizer.state[parameter]

    def local_indices(self, parameter: Tensor, flat_indices: Sequence[int]) -> list[int | None]:
        if not _is_dtensor(parameter):
            return list(flat_indices) if self.rank == WRITING_RANK else [None] * len(flat_indices)
        if self.piece(parameter) is None:
            return [None] * len(flat_indices)
        from torch.distributed.tensor._utils import compute_local_shape_and_global_offset

        shape = tuple(parameter.shape)
        local_shape, offset = compute_local_shape_and_global_offset(shape, parameter.device_mesh, parameter.placements)
        out: list[int | None] = []
        for flat in flat_indices:
            index = np.unravel_index(flat, shape) if shape else ()
            inside = all(o <= i < o + n for i, o, n in zip(index, offset, local_shape))
            local = [i - o for i, o in zip(index, offset)]
            out.append(int(np.ravel_multi_index(local, local_shape)) if inside and shape else (0 if inside else None))
        return out


def local_tensor(tensor: Any) -> Any:
    """A DTensor's local shard; anything else as it is."""
    return tensor.to_local() if _is_dtensor(tensor) else tensor


def _collective(what: str, function: Any, *args: Any, **kwargs: Any) -> Any:
    """A collective of the Recorder's group; its failure (a timeout, a rank gone) as a one-line TracerError."""
    try:
        return function(*args, **kwargs)
    except TracerError:
        raise
    except Exception as error:  # gloo/nccl raise RuntimeError or DistError subclasses
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise TracerError(
            f"the Recorder could not {what} across ranks ({type(error).__name__}: {first[:300]}); every rank must "
            f"construct the Recorder and step the optimizer the same number of times"
        ) from error


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
        _collective("compare the ranks' Recorders", dist.all_gather_object, everyone, mine, group=self.group)
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

    def full_reader(self, parameters: Sequence[Any], groups: int) -> Any:
        """The reader of coordinates traced in full where they are spread over ranks (ZeRO, FSDP2); None otherwise."""
        if not isinstance(self.sharding, _Gathered):
            return None
        from tracer.recording.distributed_full import ShardedFullReader

        return ShardedFullReader(parameters, groups, self.sharding)

    # -- per update -------------------------------------------------------------------------

    def loss(self, value: float | None) -> float | None:
        """The loss for the row: this rank's own, or the mean over the ranks that noted one (one all-reduce)."""
        if not self.averages_loss:
            return value
        pair = torch.tensor([0.0 if value is None else value, 0.0 if value is None else 1.0], dtype=torch.float64)
        pair = pair.to(self.device)
        _collective("average the loss", dist.all_reduce, pair, group=self.group)
        total, count = pair.tolist()
        return total / count if count else None

    def check(self, update: int, columns: Sequence[str], cells: Sequence[Any]) -> str | None:
        """Check mode: compare this update's rows across ranks; the first difference as a message, or None."""
        compared = [i for i, column in enumerate(columns) if not (column == "loss" and not self.averages_loss)]
        row = torch.tensor([math.nan if cells[i] is None else float(cells[i]) for i in compared], dtype=torch.float64)
        row = row.to(self.device)
        rows = [torch.empty_like(row) for _ in range(self.world_size)]
        _collective("compare the ranks' rows (check mode)", dist.all_gather, rows, row, group=self.group)
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
