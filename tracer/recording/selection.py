"""Which parameters a Recorder traces, and how: the traced parameters as records."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import torch
from torch import Tensor

from tracer.errors import TracerError
from tracer.trace import parameter_columns


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


def coordinate_names(name: str, tensor: Tensor) -> list[str]:
    """The coordinate names of a tensor: ``name`` for a 0-dim tensor, else ``name[i]`` in flat order."""
    return [name] if tensor.dim() == 0 else [f"{name}[{i}]" for i in range(tensor.numel())]


def select_parameters(
    optimizer: torch.optim.Optimizer,
    named_parameters: Iterable[tuple[str, Tensor]] | None,
    granularity: str,
    full: Sequence[str] | None,
) -> list[TracedParameter]:
    """Every parameter of the optimizer's groups as a TracedParameter, in optimizer order.

    Unnamed parameters are called p0, p1, ... by their position. With
    ``full`` given, the parameters and coordinates it names are traced in
    full and every other tensor is summarised; otherwise ``granularity``
    ("full" or "summary") applies to all.
    """
    names = {id(tensor): name for name, tensor in (named_parameters or ())}
    requested = list(full or ())
    traced: list[TracedParameter] = []
    for group_index, group in enumerate(optimizer.param_groups):
        for tensor in group["params"]:
            position = len(traced)
            name = names.get(id(tensor), f"p{position}")
            if tensor.is_complex():
                raise TracerError(
                    f"cannot trace complex parameter {name!r} ({tensor.dtype}); the recorder accepts real "
                    f"floating-point parameters only (optimize torch.view_as_real of it instead)"
                )
            coordinates = coordinate_names(name, tensor)
            if full is None:
                chosen = coordinates if granularity == "full" else []
            elif name in requested:
                chosen = coordinates
            else:
                chosen = [c for c in coordinates if c in requested]
            whole = len(chosen) == len(coordinates)
            index = None
            if chosen and not whole:
                index = torch.tensor([coordinates.index(c) for c in chosen], device=tensor.device)
            traced.append(TracedParameter(position, name, tensor, group_index, tuple(chosen), index, not whole))
    known = {t.name for t in traced} | {c for t in traced for c in coordinate_names(t.name, t.tensor)}
    unknown = [name for name in requested if name not in known]
    if unknown:
        shown = sorted(t.name for t in traced)
        raise TracerError(f"full= names no parameter or coordinate: {unknown}; parameters are {shown}")
    if len({t.name for t in traced}) != len(traced):
        raise TracerError("two parameters have the same name; pass distinct named_parameters")
    return traced
