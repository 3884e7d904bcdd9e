"""Parameter snapshots: the whole model every k updates, for drawing the run on its loss landscape.

A snapshot at update u holds, over every parameter the recorder traces
(flattened in optimizer order and joined into one vector):

- ``theta``: the parameters before update u (the point where g was taken),
- ``g``: the gradient the optimizer used (negated when maximizing, plus
  coupled weight decay, as the trace's g),
- ``v``: the family's first moment after the update (absent when the
  family keeps none),
- ``d``: the update direction, ``theta_next = theta - lr * d``, measured
  as ``(theta - theta_next) / lr`` in float64 (NaN where lr = 0),
- ``step``: ``theta_next - theta`` (= ``-lr * d`` with each group's lr).

Snapshots are taken at updates 1, 1 + k, 1 + 2k, ... and once more at the
end (``theta`` only: the final point). The number kept is bounded by
``SnapshotPolicy.limit`` (the final point included): when the bound is
reached, every other snapshot is dropped and k doubles, so the kept
snapshots always span the whole run evenly. They are kept in host memory,
5 vectors per snapshot: 20 bytes per parameter per snapshot in float32 (40
in float64), and written as one numpy ``.npz`` file beside the trace when
the recorder closes (complete, diverged or interrupted); a process killed
outright loses its snapshots, not its trace rows.
"""

from __future__ import annotations

import json
import os
import pathlib
import tempfile
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from tracer.errors import TracerError
from tracer.families import Family
from tracer.probes import option_value, state_tensor, used_gradient
from tracer.recording.selection import TracedParameter

SNAPSHOT_FORMAT = "tracer-snapshots"
SNAPSHOT_VERSION = 1
QUANTITIES = ("theta", "g", "v", "d", "step")
BYTES_PER_PARAMETER = len(QUANTITIES) * 4  # per snapshot, float32 parameters


@dataclass(frozen=True)
class SnapshotPolicy:
    """How often the recorder keeps a snapshot of the whole model, and how many at most.

    ``every``: k, a snapshot at updates 1, 1 + k, 1 + 2k, ...; ``limit``:
    the most snapshots kept, the final point included (at least 2); memory
    is ``limit * 20`` bytes per float32 parameter.
    """

    every: int = 10
    limit: int = 200

    def __post_init__(self) -> None:
        for name, low in (("every", 1), ("limit", 2)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise TracerError(f"invalid snapshot {name} {value!r}; expected an integer >= {low}")


def check_memory(parameters: Sequence[TracedParameter], policy: SnapshotPolicy) -> None:
    """TracerError when ``policy.limit`` snapshots of these parameters could not fit in this machine's memory."""
    count = sum(p.tensor.numel() for p in parameters)
    width = 8 if any(p.tensor.dtype == torch.float64 for p in parameters) else 4
    needed = policy.limit * len(QUANTITIES) * width * count
    physical = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    if needed > physical:
        raise TracerError(
            f"snapshot limit {policy.limit} needs {needed / 2**30:.3g} GiB for {count} parameters "
            f"({len(QUANTITIES) * width} bytes per parameter per snapshot), more than this machine's "
            f"{physical / 2**30:.3g} GiB; lower the limit"
        )


def snapshot_file_for(trace_path: str | os.PathLike) -> pathlib.Path:
    """The snapshot file beside a trace: ``run.trace.csv`` -> ``run.snapshots.npz``."""
    path = pathlib.Path(trace_path)
    name = path.name
    stem = name[: -len(".trace.csv")] if name.endswith(".trace.csv") else path.stem
    return path.with_name(stem + ".snapshots.npz")


class SnapshotKeeper:
    """Keeps the snapshots of one Recorder's run; ``write`` saves them.

    ``before_step`` and ``after_step`` are called by the recorder's hooks
    with the number of the update being made (1-based); they copy anything
    only at snapshot updates, so the other updates cost one comparison.
    """

    def __init__(self, parameters: Sequence[TracedParameter], policy: SnapshotPolicy, path: pathlib.Path) -> None:
        self.parameters = list(parameters)
        self.policy = policy
        self.path = path
        self.every = policy.every
        wide = any(p.tensor.dtype == torch.float64 for p in self.parameters)
        self.dtype = torch.float64 if wide else torch.float32
        self._kept: list[dict[str, np.ndarray]] = []
        self._updates: list[int] = []
        self._before: torch.Tensor | None = None
        self._has_v = False

    def _due(self, update: int) -> bool:
        return (update - 1) % self.every == 0

    def _flat(self, tensors: Sequence[torch.Tensor]) -> torch.Tensor:
        return torch.cat([t.detach().reshape(-1).to(self.dtype) for t in tensors])

    def before_step(self, update: int) -> None:
        """Copy theta before the step when ``update`` is a snapshot update."""
        if len(self._updates) == self.policy.limit - 1 and self._due(update):
            # Full: keep every other snapshot and take half as many from now on.
            self._kept, self._updates = self._kept[::2], self._updates[::2]
            self.every *= 2
        self._before = self._flat([p.tensor for p in self.parameters]).cpu() if self._due(update) else None

    def after_step(self, optimizer: torch.optim.Optimizer, family: Family, lrs: Sequence[float], update: int) -> None:
        """Keep g, v, d and the step of a snapshot update (theta was copied by ``before_step``)."""
        if self._before is None:
            return
        theta = self._before
        after = self._flat([p.tensor for p in self.parameters]).cpu()
        pieces: dict[str, list[torch.Tensor]] = {"g": [], "v": [], "lr": []}
        for parameter in self.parameters:
            tensor = parameter.tensor
            group = optimizer.param_groups[parameter.group]
            missing = torch.full((tensor.numel(),), float("nan"), dtype=self.dtype)
            if tensor.grad is None:  # the optimizer skipped this parameter
                pieces["g"].append(missing)
                pieces["v"].append(missing)
            else:
                (g,) = used_gradient([tensor.grad], [tensor.detach()], family.gradient_options(group))
                pieces["g"].append(g.detach().reshape(-1).to(self.dtype).cpu())
                v_key, _ = family.moment_keys(group)
                v = None if v_key is None else optimizer.state[tensor].get(v_key)
                if v_key is not None and not family.moments_optional:
                    v = state_tensor(optimizer.state[tensor], v_key)
                if not isinstance(v, torch.Tensor) or v.shape != tensor.shape:  # none, or a factor of another shape
                    pieces["v"].append(missing)
                else:
                    self._has_v = True
                    pieces["v"].append(v.detach().reshape(-1).to(self.dtype).cpu())
            pieces["lr"].append(torch.full((tensor.numel(),), option_value(lrs[parameter.group]), dtype=torch.float64))
        lr = torch.cat(pieces["lr"])
        step = after.double() - theta.double()
        d = torch.where(lr > 0, -step / lr, torch.full_like(step, float("nan")))
        self._kept.append({
            "theta": theta.numpy(),
            "g": torch.cat(pieces["g"]).numpy(),
            "v": torch.cat(pieces["v"]).numpy(),
            "d": d.to(self.dtype).numpy(),
            "step": step.to(self.dtype).numpy(),
        })
        self._updates.append(update)
        self._before = None

    def write(self, updates_done: int, status: str) -> pathlib.Path:
        """Write the kept snapshots and the final point as one .npz, atomically (temporary file, then rename)."""
        final = self._flat([p.tensor for p in self.parameters]).cpu().numpy()
        meta = {
            "format": SNAPSHOT_FORMAT,
            "version": SNAPSHOT_VERSION,
            "every": self.every,
            "limit": self.policy.limit,
            "updates_done": updates_done,
            "status": status,
            "dtype": str(self.dtype).replace("torch.", ""),
            "has_v": self._has_v,
            "parameters": [{"name": p.name, "shape": list(p.tensor.shape)} for p in self.parameters],
        }
        count = len(self._kept)
        size = final.size
        arrays: dict[str, Any] = {"meta": np.array(json.dumps(meta)), "updates": np.array(self._updates, dtype=np.int64),
                                  "final": final}
        for quantity in QUANTITIES:
            if quantity == "v" and not self._has_v:
                continue
            stacked = np.stack([kept[quantity] for kept in self._kept]) if count else np.empty((0, size), final.dtype)
            arrays[quantity] = stacked
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".npz")
        os.close(handle)
        try:
            np.savez(name, **arrays)
            os.chmod(name, 0o644)
            os.replace(name, self.path)
        finally:
            if os.path.exists(name):
                os.unlink(name)
        return self.path
