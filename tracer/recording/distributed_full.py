"""Full granularity when each coordinate's values live on one rank (ZeRO, FSDP2): its owner reads them.

Every rank runs the family's probe (``tracer.families.read_group``) on what
it owns: its local shards under FSDP2, the parameters whose optimizer state
it holds under ZeRO. It writes the traced coordinates it owns (theta, g, v,
s, d, theta_next) into one float64 vector, NaN elsewhere; one all-gather per
update gives every rank every coordinate, each taken from its owner. The
owner of each slot is fixed once, at construction, by one all-gather of the
ranks' ownership masks. Which quantities exist (g without a gradient, v and
s by the family and its options, d measured only while lr > 0) is decided
from what every rank knows alike, never from the owner's values.
"""

from __future__ import annotations

import math
from typing import Callable, Mapping, Sequence

import torch
import torch.distributed as dist
from torch import Tensor

from tracer.errors import TracerError
from tracer.families import Family, group_lr, read_group
from tracer.recording.sharding import GatheredSharding, collective, local_tensor
from tracer.recording.full import FullValues
from tracer.recording.selection import TracedParameter

_COLUMNS = ("theta", "g", "v", "s", "d", "theta_next")


class ShardedFullReader:
    """Reads the fully traced parameters of a Recorder whose parameters or state are spread over ranks.

    The same interface as ``tracer.recording.full.FullReader``: ``snapshot``
    before the step, ``read`` after it.
    """

    def __init__(
        self, parameters: Sequence[TracedParameter], groups: int, sharding: GatheredSharding,
        summary_snapshots: Callable[[], Mapping[int, Tensor]] | None = None,
    ) -> None:
        self.parameters = [p for p in parameters if p.full]
        self._summary_snapshots = summary_snapshots
        self._by_group = [[p for p in self.parameters if p.group == g] for g in range(groups)]
        self._sharding = sharding
        self._base: dict[int, int] = {}  # each parameter's first slot in the update's vector
        self._owned: dict[int, tuple[Tensor, Tensor]] = {}  # (positions among its coordinates, local flat indices)
        size = 0
        for p in self.parameters:
            self._base[p.index] = size
            flat = p.full_index.tolist() if p.full_index is not None else list(range(p.tensor.numel()))
            local = sharding.local_indices(p.tensor, flat)
            owned = [(k, i) for k, i in enumerate(local) if i is not None]
            if owned:
                positions, indices = zip(*owned)
                self._owned[p.index] = (torch.tensor(positions), torch.tensor(indices))
            size += len(_COLUMNS) * len(p.coordinates)
        self._size = size
        mask = torch.zeros(size, dtype=torch.float64)
        for index, (positions, _) in self._owned.items():
            count = len(next(p for p in self.parameters if p.index == index).coordinates)
            for column in range(len(_COLUMNS)):
                mask[self._base[index] + column * count + positions] = 1.0
        masks = self._gather(mask)
        if size and not bool((masks.amax(0) > 0).all()):
            raise TracerError("some coordinates traced in full are owned by no rank; trace them in summary instead")
        self._owner = masks.argmax(0)  # the first rank that owns each slot
        whole = [p for p in self.parameters if not p.summarized and p.index in self._owned]
        self._snapshots = {
            p.index: torch.empty_like(local_tensor(p.tensor), memory_format=torch.contiguous_format) for p in whole
        }
        self._whole = whole

    def _gather(self, vector: Tensor) -> Tensor:
        """Every rank's vector, stacked by rank (on the CPU)."""
        sharding = self._sharding
        vector = vector.to(sharding.device)
        gathered = [torch.empty_like(vector) for _ in range(sharding.world_size)]
        collective("all-gather the coordinates traced in full", dist.all_gather, gathered, vector, group=sharding.group)
        return torch.stack(gathered).cpu()

    def snapshot(self) -> None:
        """Copy theta before the step of the owned parameters traced whole in full (the pre-step hook)."""
        for p in self._whole:
            self._snapshots[p.index].copy_(local_tensor(p.tensor))

    def read(self, optimizer: torch.optim.Optimizer, family: Family) -> tuple[dict[int, FullValues], bool]:
        """Per fully traced parameter (by index), its values at the update just made; and whether all are finite.

        Call it before the summary reducer's ``reduce`` (its snapshots are theta before the step until then)."""
        if not self.parameters:
            return {}, True
        before = {**self._snapshots, **(self._summary_snapshots() if self._summary_snapshots else {})}
        vector = torch.full((self._size,), math.nan, dtype=torch.float64)
        presence: dict[int, tuple[bool, bool, bool, bool]] = {}
        for group, members in zip(optimizer.param_groups, self._by_group):
            v_key, s_key = family.moment_keys(group)
            measurable = family.probe is not None or (group_lr(group) or 0.0) > 0
            for p in members:
                has_grad = p.tensor.grad is not None
                presence[p.index] = (has_grad, has_grad and v_key is not None, has_grad and s_key is not None,
                                     has_grad and measurable)
            mine = [p for p in members if p.index in self._owned and p.tensor.grad is not None]
            result = None
            if mine:
                states = []
                for p in mine:
                    state = self._sharding.state(optimizer, p.tensor)
                    states.append({key: local_tensor(value) for key, value in state.items()})
                result = read_group(
                    family,
                    [local_tensor(p.tensor.grad) for p in mine],
                    states,
                    group,
                    [before[p.index] for p in mine],
                    [local_tensor(p.tensor) for p in mine],
                )
            for p in members:
                if p.index not in self._owned:
                    continue
                columns: dict[int, Tensor] = {0: before[p.index], 5: local_tensor(p.tensor)}
                if result is not None and p in mine:
                    k = mine.index(p)
                    for column, values in ((1, result.g), (2, result.v), (3, result.s), (4, result.d)):
                        if values is not None:
                            columns[column] = values[k]
                positions, indices = self._owned[p.index]
                count = len(p.coordinates)
                for column, tensor in columns.items():
                    slots = self._base[p.index] + column * count + positions
                    vector[slots] = tensor.reshape(-1)[indices].to(torch.float64)
        gathered = self._gather(vector)
        numbers = gathered[self._owner, torch.arange(self._size)].tolist()
        values: dict[int, FullValues] = {}
        finite = True
        for p in self.parameters:
            count, base = len(p.coordinates), self._base[p.index]
            has_grad, has_v, has_s, has_d = presence[p.index]
            present = (True, has_grad, has_v, has_s, has_d, True)
            columns = [
                numbers[base + column * count : base + (column + 1) * count] if here else None
                for column, here in enumerate(present)
            ]
            values[p.index] = item = FullValues(*columns)
            finite = finite and item.finite()
        return values, finite
