"""Which parameters a Recorder traces, and how: the traced parameters as records.

Everything here costs O(number of tensors), never O(number of coordinates),
except the names of the coordinates traced in full, which are columns of the
trace: a summary-granularity Recorder of a 124M-parameter model builds no
per-coordinate string. ``full=`` entries are parsed (``name`` or
``name[i]``) and looked up by name, not matched against every coordinate.

Names are the model's, as a user reads them: the wrappers' prefixes are
dropped, ``_orig_mod.`` (``torch.compile``'s OptimizedModule, wherever it
wraps a module) and a ``module.`` that every name starts with
(DistributedDataParallel's, DataParallel's), in the trace and in ``full=``
alike (``full=["weight[0]"]`` and ``full=["_orig_mod.weight[0]"]`` select the
same coordinate).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Sequence

import torch
from torch import Tensor

from tracer.errors import TracerError
from tracer.trace import parameter_columns

COMPILE_PREFIX = "_orig_mod."  # torch.compile's OptimizedModule keeps the model under this attribute
DATA_PARALLEL_PREFIX = "module."  # DistributedDataParallel and DataParallel keep the model under this one
_COORDINATE = re.compile(r"(?P<name>.+)\[(?P<index>[0-9]+)\]")


@dataclass(frozen=True, eq=False)
class TracedParameter:
    """One parameter tensor under trace.

    ``coordinates`` are the names of its fully traced coordinates (``w`` for a
    0-dim tensor, ``w[i]`` for coordinate i of the flattened tensor; empty
    when none); ``full_index`` their flat indices, or None when every
    coordinate is (or none is) traced in full. ``summarized``: the tensor has
    summary columns (every tensor not traced whole in full has).
    """

    index: int  # position among the recorder's traced parameters (optimizer order)
    name: str
    tensor: Tensor
    group: int
    coordinates: tuple[str, ...]
    full_index: Tensor | None
    summarized: bool

    @property
    def full(self) -> bool:
        """Some coordinates of this tensor are traced in full."""
        return bool(self.coordinates)

    def columns(self) -> list[str]:
        """This tensor's trace columns, in file order."""
        return parameter_columns(self.coordinates, self.name if self.summarized else None)


def coordinate_names(name: str, tensor: Tensor, indices: Iterable[int] | None = None) -> list[str]:
    """Coordinate names of a tensor: ``name`` for a 0-dim tensor, else ``name[i]`` for each flat index i
    (every index, or ``indices``)."""
    if tensor.dim() == 0:
        return [name]
    return [f"{name}[{i}]" for i in (range(tensor.numel()) if indices is None else indices)]


def model_names(names: Sequence[str]) -> list[str]:
    """Parameter names without the wrappers' prefixes: every ``_orig_mod.`` and a ``module.`` common to all.

    Where dropping them would give two parameters one name, the names are kept as they are.
    """
    stripped = [name.replace(COMPILE_PREFIX, "") for name in names]
    if stripped and all(name.startswith(DATA_PARALLEL_PREFIX) for name in stripped):
        stripped = [name[len(DATA_PARALLEL_PREFIX):] for name in stripped]
    return stripped if len(set(stripped)) == len(set(names)) else list(names)


def _request_name(entry: str, data_parallel: bool) -> str:
    """A ``full=`` entry in the trace's naming: the prefixes the parameters' names lost, dropped."""
    entry = entry.replace(COMPILE_PREFIX, "")
    if data_parallel and entry.startswith(DATA_PARALLEL_PREFIX):
        entry = entry[len(DATA_PARALLEL_PREFIX):]
    return entry


def _requested_indices(
    full: Sequence[str], tensors: dict[str, Tensor], data_parallel: bool
) -> tuple[dict[str, set[int] | None], list[str]]:
    """Per parameter name, the flat indices ``full`` asks for (None: the whole tensor); and the entries naming nothing.

    An entry is a parameter's name (the whole tensor) or ``name[i]`` with
    ``0 <= i < numel`` (one coordinate of a tensor of at least one dimension).
    """
    wanted: dict[str, set[int] | None] = {}
    unknown: list[str] = []
    for entry in full:
        name = _request_name(str(entry), data_parallel)
        if name in tensors:
            wanted[name] = None
            continue
        match = _COORDINATE.fullmatch(name)
        tensor = tensors.get(match["name"]) if match else None
        if tensor is None or tensor.dim() == 0 or int(match["index"]) >= tensor.numel():
            unknown.append(entry)
            continue
        indices = wanted.setdefault(match["name"], set())
        if indices is not None:  # not already asked for whole
            indices.add(int(match["index"]))
    return wanted, unknown


def select_parameters(
    optimizer: torch.optim.Optimizer,
    named_parameters: Iterable[tuple[str, Tensor]] | None,
    granularity: str,
    full: Sequence[str] | None,
) -> list[TracedParameter]:
    """Every parameter of the optimizer's groups as a TracedParameter, in optimizer order.

    Unnamed parameters are called p0, p1, ... by their position; named ones
    by ``model_names``. With ``full`` given, the parameters and coordinates
    it names are traced in full and every other tensor is summarised;
    otherwise ``granularity`` ("full" or "summary") applies to all.
    """
    given = {id(tensor): name for name, tensor in (named_parameters or ())}
    placed = [(group_index, tensor) for group_index, group in enumerate(optimizer.param_groups) for tensor in group["params"]]
    raw = [given.get(id(tensor), f"p{position}") for position, (_, tensor) in enumerate(placed)]
    names = model_names(raw)
    data_parallel = names != raw and all(name.startswith(DATA_PARALLEL_PREFIX) for name in raw)
    if len(set(names)) != len(names):
        raise TracerError("two parameters have the same name; pass distinct named_parameters")
    for name, (_, tensor) in zip(names, placed):
        if tensor.is_complex():
            raise TracerError(
                f"cannot trace complex parameter {name!r} ({tensor.dtype}); the recorder accepts real "
                f"floating-point parameters only (optimize torch.view_as_real of it instead)"
            )
    wanted: dict[str, set[int] | None] = {}
    if full is not None:
        wanted, unknown = _requested_indices(full, dict(zip(names, (t for _, t in placed))), data_parallel)
        if unknown:
            raise TracerError(
                f"full= names no parameter or coordinate: {unknown}; parameters are {sorted(names)} "
                f"(a coordinate is name[i], i a flat index below the tensor's number of elements)"
            )
    traced: list[TracedParameter] = []
    for position, (name, (group_index, tensor)) in enumerate(zip(names, placed)):
        if full is None:  # an empty tensor has no coordinates to summarise: "whole" in full, as ever
            whole, indices = granularity == "full" or tensor.numel() == 0, None
        else:
            indices = wanted.get(name, set())
            whole = indices is None or len(indices) == tensor.numel()
        if whole:
            coordinates, index = tuple(coordinate_names(name, tensor)), None
        elif indices:
            ordered = sorted(indices)
            coordinates = tuple(coordinate_names(name, tensor, ordered))
            index = torch.tensor(ordered, device=tensor.device)
        else:
            coordinates, index = (), None
        traced.append(TracedParameter(position, name, tensor, group_index, coordinates, index, not whole))
    return traced
