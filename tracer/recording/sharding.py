"""What one rank reduces of each traced tensor under torch.distributed, and how the ranks' partials combine.

``Sharding`` is the single-process case (everything whole and local,
``WHOLE``); ``ZeroSharding`` (ZeroRedundancyOptimizer: state on the
parameter's owner) and ``ShardSharding`` (FSDP2 / DTensor: every rank its
shard) combine the ranks' partial reductions with one all-gather per update
(``GatheredSharding.read``). The summary reducer (``tracer.recording.summary``)
and the full reader of spread parameters (``tracer.recording.distributed_full``)
use them; ``tracer.recording.distributed`` picks one for a Recorder.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor

from tracer.errors import TracerError
from tracer.summaries import REDUCTION_TABLE

WRITING_RANK = 0
"""The rank that writes the trace file (and reduces a plain tensor next to DTensors)."""


def is_dtensor(tensor: Tensor) -> bool:
    try:
        from torch.distributed.tensor import DTensor
    except ImportError:  # a torch built without distributed
        return False
    return isinstance(tensor, DTensor)



# How the ranks' partial reductions combine, as tracer.summaries declares each reduction.
_MAX_SLOTS = tuple(r.name for r in REDUCTION_TABLE if r.combine == "max")
_STATE_SLOTS = tuple(r.name for r in REDUCTION_TABLE if r.reads_state)


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


class GatheredSharding(Sharding):
    """Partials combined across ranks by one all-gather of every results buffer, batched in float64."""

    combine_state_only = False  # ZeRO: only v and s are combined; theta, delta and g are each rank's own

    def __init__(self, group: Any, rank: int, world_size: int, device: torch.device) -> None:
        self.group, self.rank, self.world_size, self.device = group, rank, world_size, device
        self._masks: dict[int, tuple[Tensor, Tensor]] = {}

    def _slot_masks(self, size: int, reductions: Sequence[str]) -> tuple[Tensor, Tensor]:
        """Boolean masks over a flat vector of ``size`` slots: maximised, kept local (the rest is summed)."""
        if size not in self._masks:
            names = [reductions[i % len(reductions)] for i in range(size)]
            kept = [self.combine_state_only and name not in _STATE_SLOTS for name in names]
            high = [name in _MAX_SLOTS and not k for name, k in zip(names, kept)]
            self._masks[size] = tuple(torch.tensor(m, dtype=torch.bool) for m in (high, kept))
        return self._masks[size]

    def read(self, results: Mapping[Any, Tensor], reductions: Sequence[str]) -> dict[Any, list[float]]:
        keys = list(results)
        flat = torch.cat([results[key].reshape(-1).to(self.device, torch.float64) for key in keys]) if keys else None
        if flat is None:
            return {}
        gathered = [torch.empty_like(flat) for _ in range(self.world_size)]
        collective("all-gather the summaries' partial reductions", dist.all_gather, gathered, flat, group=self.group)
        stacked = torch.stack(gathered).cpu()  # [rank, slot]
        high_mask, kept_mask = self._slot_masks(flat.numel(), reductions)
        combined = stacked[0].clone()
        for row in stacked[1:]:  # rank order: every rank adds in the same order and gets the same floats
            combined += row
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


class ZeroSharding(GatheredSharding):
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


class ShardSharding(GatheredSharding):
    """FSDP2 / DTensor: every rank reduces its local shard; plain tensors are reduced by rank 0 alone."""

    def piece(self, tensor: Tensor) -> Tensor | None:
        if not is_dtensor(tensor):
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
        if not is_dtensor(parameter):
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
    return tensor.to_local() if is_dtensor(tensor) else tensor


def collective(what: str, function: Any, *args: Any, **kwargs: Any) -> Any:
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
