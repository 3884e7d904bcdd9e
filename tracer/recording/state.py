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
with one ``_foreach_norm`` per device and dtype, and read back with the row;
a one-element CPU tensor's norm (a step count) is ``|x|``, read by ``item()``.
The norm of a summarised parameter's v or s key is the summary's own
``v_norm`` or ``s_norm`` cell (no second pass over it; empty, as that cell,
at an update where the optimizer skipped the parameter).
"""

from __future__ import annotations

from dataclasses import dataclass, field
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


@dataclass(eq=False)
class _KeyColumns:
    """The columns of one parameter's one state key: what one lookup of ``optimizer.state`` feeds."""

    parameter: TracedParameter
    key: str
    whole: int | None  # the position of its norm (or number) column; None: none
    positions: tuple[int, ...]  # the positions of its per-coordinate columns
    flats: tuple[int, ...]  # their flat indices in the state tensor
    in_order: bool = field(init=False)  # flats are 0, 1, ..., in order: the whole tensor, no indexing needed
    largest: int = field(init=False)  # the largest flat index (-1: none)
    index: Tensor | None = None  # flats as a tensor on the state's device, made at the first read that needs it

    def __post_init__(self) -> None:
        self.in_order = self.flats == tuple(range(len(self.flats)))
        self.largest = max(self.flats, default=-1)


class StateReader:
    """Reads the state columns' values after each recorded update.

    Per update and state tensor, on a CPU: a one-element tensor's norm is
    ``|x|`` read by ``item()`` (exact; a ``_foreach_norm`` launch per scalar
    cost about 1 us each, the Python-bound part of a step of a model of many
    small tensors); larger ones take one ``_foreach_norm`` per dtype, and the
    per-coordinate columns of a tensor one indexing and ``tolist``. On an
    accelerator every value goes to one device tensor per device, copied to
    the host without waiting, and is read with the row.
    """

    def __init__(self, columns: Sequence[StateColumn]) -> None:
        self.columns = list(columns)
        # Each column's place, fixed with the columns: summary cells are taken from the row's summaries; the
        # others are grouped by (parameter, key), one state lookup each.
        self._from_summary = [(i, c.parameter.index, c.summary) for i, c in enumerate(self.columns) if c.summary]
        groups: dict[tuple[int, str], dict[str, Any]] = {}
        for i, column in enumerate(self.columns):
            if column.summary:
                continue
            group = groups.setdefault((column.parameter.index, column.key),
                                      {"parameter": column.parameter, "whole": None, "positions": [], "flats": []})
            if column.flat is None:
                group["whole"] = i
            else:
                group["positions"].append(i)
                group["flats"].append(column.flat)
        self._groups = [_KeyColumns(g["parameter"], key, g["whole"], tuple(g["positions"]), tuple(g["flats"]))
                        for (_, key), g in groups.items()]
        self._lookups = [(g.parameter.tensor, g.key, g.whole, g) for g in self._groups]

    def read(self, optimizer: torch.optim.Optimizer) -> "StateValues":
        """The state columns' values at the update just made (None: the key is gone, or not a number)."""
        cells: list[float | None] = [None] * len(self.columns)
        on_device: dict[torch.device, list[tuple[Sequence[int], Tensor]]] = {}  # positions and their values
        norms: dict[tuple[torch.device, torch.dtype], list[tuple[int, Tensor]]] = {}
        state_of = optimizer.state
        for tensor, key, whole, group in self._lookups:
            value = (state_of.get(tensor) or {}).get(key)
            if not isinstance(value, Tensor):
                if whole is not None and _is_number(value):
                    cells[whole] = float(value)
                continue
            # The hooks run with autograd off: no detach needed to read a state tensor.
            if value.is_cpu and value.numel() == 1:  # a step count, a scalar parameter's moment: one item()
                number = float(value.item())
                if group.positions and group.flats[0] == 0:
                    cells[group.positions[0]] = number
                if whole is not None:
                    cells[whole] = abs(number)
                continue
            if group.positions:
                self._pick(group, value, cells, on_device)
            if whole is not None:
                as_float = value if value.is_floating_point() else value.double()
                norms.setdefault((value.device, as_float.dtype), []).append((whole, as_float))
        for (device, dtype), items in norms.items():
            # One launch per dtype, no copy of the tensors; 16-bit ones accumulate and round in float32.
            wide = torch.float32 if dtype in (torch.float16, torch.bfloat16) else None
            results = torch.stack(torch._foreach_norm([t for _, t in items], 2, dtype=wide)).double()
            positions = [i for i, _ in items]
            if device.type == "cpu":
                for i, number in zip(positions, results.tolist()):
                    cells[i] = number
            else:
                on_device.setdefault(device, []).append((positions, results))
        copies = []
        for pieces in on_device.values():
            joined = torch.cat([values for _, values in pieces])
            copies.append(([i for positions, _ in pieces for i in positions], joined.to("cpu", non_blocking=True)))
        return StateValues(cells, copies, self._from_summary)

    def _pick(self, group: _KeyColumns, value: Tensor, cells: list, on_device: dict) -> None:
        """The per-coordinate values of ``value`` into ``cells`` (CPU) or ``on_device`` (an accelerator)."""
        flat = value.reshape(-1)
        size = flat.numel()
        positions, flats = group.positions, group.flats
        if group.largest >= size:  # a state tensor smaller than the parameter: the coordinates it has
            kept = [k for k, f in enumerate(flats) if f < size]
            positions, flats = [positions[k] for k in kept], [flats[k] for k in kept]
            picked = flat[torch.tensor(flats, dtype=torch.long, device=value.device)]
        elif group.in_order and len(flats) == size:
            picked = flat  # every coordinate, in order (the tensor traced whole)
        else:
            if group.index is None or group.index.device != value.device:
                group.index = torch.tensor(flats, dtype=torch.long, device=value.device)
            picked = flat[group.index]
        if not picked.is_floating_point():
            picked = picked.double()
        if value.is_cpu:
            for i, number in zip(positions, picked.tolist()):
                cells[i] = number
        else:
            on_device.setdefault(value.device, []).append((positions, picked.double()))


@dataclass
class StateValues:
    """One update's state values: floats in place, device values on their way to the host, summary cells to fill."""

    cells: list[float | None]
    copies: list[tuple[list[int], Tensor]]  # positions, and their values being copied to the host
    from_summary: list[tuple[int, int, str]]  # position, parameter index, summary cell ("v_norm" or "s_norm")

    def read(self, summaries: Mapping[int, Any]) -> list[float | None]:
        """The cells as floats, in column order (after the device copy is done); ``summaries``: the row's, by index."""
        cells = self.cells
        for positions, host in self.copies:
            for i, number in zip(positions, host.tolist()):
                cells[i] = number
        for i, index, name in self.from_summary:
            cells[i] = getattr(summaries[index], name)
        return cells
