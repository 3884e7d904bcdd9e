"""Every optimizer state tensor under its own key: the trace's state columns.

v and s are the two state tensors the article names; an optimizer keeps
others (Adam's ``step``, AMSGrad's ``max_exp_avg_sq``, Adafactor's factors
``row_var`` and ``col_var``, a schedule-free optimizer's extra iterates, a
user's own). Each is recorded after the update, under its key:

- ``<c>.state:<key>``: per fully traced coordinate ``c``, where the state
  tensor has the parameter's shape (its value at that coordinate);
- ``<p>.state_norm:<key>``: the L2 norm of the whole state tensor of
  parameter ``p``, where ``p`` is summarised or the tensor has another shape
  (a factor, a scalar step count). A state value that is a Python number (an
  iteration count) is recorded as ``<p>.state:<key>``, its value.

The columns are those of the state the optimizer has at the first recorded
update (state appears at the first ``step()``); the metadata's ``state``
lists, per parameter, every key seen then with its shape (or the type of a
value that is not recorded, e.g. LBFGS's lists of tensors). Keys that appear
later are named in the trailer's ``state_unrecorded``. The values are read
after the step, as they are (a parameter the optimizer skipped keeps its
state); norms are computed in the tensor's dtype (float32 for 16-bit ones)
with one ``_foreach_norm`` per device and dtype, and read back with the row.
The norm of a summarised parameter's v or s key is the summary's own
``v_norm`` or ``s_norm`` cell (no second pass over it; empty, as that cell,
at an update where the optimizer skipped the parameter).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch
from torch import Tensor

from tracer.families import Family
from tracer.recording.selection import TracedParameter

VALUE = "state:"
NORM = "state_norm:"
_BAD_NAME = (",", '"', "\n", ".")


@dataclass(frozen=True)
class StateColumn:
    """One state column: parameter, state key, and what of the value is recorded."""

    name: str
    parameter: TracedParameter
    key: str
    flat: int | None  # the flat index of a per-coordinate column; None: the whole value (norm, or a number)
    # "v_norm" or "s_norm": the norm is the summary's own cell of that name (the key is the family's v or s), not
    # computed a second time.
    summary: str | None = None


def is_state_column(column: str) -> bool:
    """The column is a state column (``.state:`` or ``.state_norm:``)."""
    return f".{VALUE}" in column or f".{NORM}" in column


def describe(value: Any) -> Any:
    """What the metadata says of one state value: a tensor's shape, else the name of its type."""
    return list(value.shape) if isinstance(value, Tensor) else type(value).__name__


def _recordable_key(key: Any) -> bool:
    return isinstance(key, str) and bool(key) and not any(bad in key for bad in _BAD_NAME)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def discover(
    parameters: Sequence[TracedParameter], optimizer: torch.optim.Optimizer, family: Family
) -> tuple[list[StateColumn], dict]:
    """The state columns of the optimizer's state now, and the metadata's ``state`` (every key per parameter)."""
    columns: list[StateColumn] = []
    meta: dict[str, dict[str, Any]] = {}
    for p in parameters:
        state = optimizer.state.get(p.tensor) or {}
        if state:
            meta[p.name] = {str(key): describe(value) for key, value in state.items()}
        for key, value in state.items():
            if not _recordable_key(key):
                continue
            if isinstance(value, Tensor) and not value.is_complex():
                if p.full and tuple(value.shape) == tuple(p.tensor.shape):
                    flats = range(p.tensor.numel()) if p.full_index is None else p.full_index.tolist()
                    columns += [StateColumn(f"{c}.{VALUE}{key}", p, key, i) for c, i in zip(p.coordinates, flats)]
                    if not p.summarized:
                        continue
                summary = _summary_cell(p, key, value, optimizer, family)
                columns.append(StateColumn(f"{p.name}.{NORM}{key}", p, key, None, summary))
            elif _is_number(value):
                columns.append(StateColumn(f"{p.name}.{VALUE}{key}", p, key, None))
    return columns, meta


def _summary_cell(p: TracedParameter, key: str, value: Any, optimizer: torch.optim.Optimizer, family: Family) -> str | None:
    """"v_norm" or "s_norm" where the norm of state ``key`` is that summary cell (p summarised, key its v or s)."""
    if not p.summarized:
        return None
    if isinstance(value, Tensor):
        if tuple(value.shape) != tuple(p.tensor.shape):
            return None
    elif family.moments_optional:  # no state to tell its shape: a factor cannot be ruled out
        return None
    v_key, s_key = family.moment_keys(optimizer.param_groups[p.group])
    return "v_norm" if key == v_key else "s_norm" if key == s_key else None


def from_names(
    parameters: Sequence[TracedParameter], names: Sequence[str], optimizer: torch.optim.Optimizer, family: Family
) -> list[StateColumn]:
    """The state columns of an existing trace (its header), to append to it; names it cannot place are left out."""
    coordinate_of = {}
    for p in parameters:
        flats = range(p.tensor.numel()) if p.full_index is None else p.full_index.tolist()
        coordinate_of.update({c: (p, i) for c, i in zip(p.coordinates, flats)})
    by_name = {p.name: p for p in parameters}
    columns = []
    for name in names:
        for marker in (f".{NORM}", f".{VALUE}"):
            owner, found, key = name.rpartition(marker)
            if not found:
                continue
            if marker == f".{VALUE}" and owner in coordinate_of and owner not in by_name:
                p, flat = coordinate_of[owner]
            elif owner in coordinate_of and by_name.get(owner) is not None and by_name[owner].tensor.dim() == 0:
                p, flat = coordinate_of[owner]  # a 0-dim parameter's coordinate is its name
                flat = flat if marker == f".{VALUE}" else None
            elif owner in by_name:
                p, flat = by_name[owner], None
            else:
                break
            summary = None
            if marker == f".{NORM}":
                summary = _summary_cell(p, key, (optimizer.state.get(p.tensor) or {}).get(key), optimizer, family)
            columns.append(StateColumn(name, p, key, flat, summary))
            break
    return columns


def unrecorded(columns: Sequence[StateColumn], parameters: Sequence[TracedParameter], optimizer: torch.optim.Optimizer) -> dict:
    """Per parameter, the state keys it has now that have no column (appeared after the first recorded update)."""
    recorded = {(c.parameter.index, c.key) for c in columns}
    missing: dict[str, list[str]] = {}
    for p in parameters:
        keys = [str(key) for key in (optimizer.state.get(p.tensor) or {}) if (p.index, key) not in recorded]
        if keys:
            missing[p.name] = keys
    return missing


class StateReader:
    """Reads the state columns' values after each recorded update (one read-back per device)."""

    def __init__(self, columns: Sequence[StateColumn]) -> None:
        self.columns = list(columns)

    def read(self, optimizer: torch.optim.Optimizer) -> list[Any]:
        """The state columns' values at the update just made, in column order (None: the key is gone).

        Values are returned as host tensors or floats; ``cells`` turns them into floats.
        """
        if not self.columns:
            return []
        values: list[Any] = [None] * len(self.columns)
        norms: dict[tuple[torch.device, torch.dtype], list[tuple[int, Tensor]]] = {}
        picks: dict[torch.device, list[tuple[int, Tensor]]] = {}
        for i, column in enumerate(self.columns):
            if column.summary is not None:
                values[i] = (column.parameter.index, column.summary)
                continue
            value = (optimizer.state.get(column.parameter.tensor) or {}).get(column.key)
            if _is_number(value):
                values[i] = float(value)
            elif isinstance(value, Tensor):
                value = value.detach()
                if column.flat is not None:
                    if value.numel() > column.flat:
                        picks.setdefault(value.device, []).append((i, value.reshape(-1)[column.flat]))
                else:
                    as_float = value if value.is_floating_point() else value.double()
                    norms.setdefault((value.device, as_float.dtype), []).append((i, as_float))
        for (device, dtype), items in norms.items():
            # One launch per dtype, no copy of the tensors; 16-bit ones accumulate and round in float32.
            wide = torch.float32 if dtype in (torch.float16, torch.bfloat16) else None
            results = torch._foreach_norm([t for _, t in items], 2, dtype=wide)
            picks.setdefault(device, []).extend(zip([i for i, _ in items], results))
        for device, items in picks.items():
            joined = torch.stack([t.double() for _, t in items])
            host = joined.cpu() if device.type == "cpu" else joined.to("cpu", non_blocking=True)
            for (i, _), k in zip(items, range(len(items))):
                values[i] = (host, k)
        return values

    @staticmethod
    def cells(values: Sequence[Any], summaries: Mapping[int, Any]) -> list[float | None]:
        """The read values as floats (after the device copy is done); ``summaries``: the row's, by parameter index."""
        cache: dict[int, list[float]] = {}
        cells: list[float | None] = []
        for value in values:
            if isinstance(value, tuple):
                source, k = value
                if isinstance(k, str):  # the summary's v_norm or s_norm cell
                    cells.append(getattr(summaries[source], k))
                    continue
                if id(source) not in cache:
                    cache[id(source)] = source.tolist()
                cells.append(cache[id(source)][k])
            else:
                cells.append(value)
        return cells
