"""The recorder: one trace row per ``optimizer.step()``, through step hooks.

Usage, with no other change to a training loop::

    with Recorder(optimizer, "logs/run.trace.csv", named_parameters=model.named_parameters()) as rec:
        for epoch in range(epochs):
            for batch, (x, y) in enumerate(loader):
                loss = loss_fn(model(x), y)
                optimizer.zero_grad()
                loss.backward()
                rec.note(loss=loss.item(), epoch=epoch, batch=batch)  # optional
                optimizer.step()

A step pre-hook copies the parameters; the post-hook runs the family's probe
(``tracer.probes``) on (gradient, state after the step, group options,
parameters before), and appends one row to the trace file. The recorder only
reads: a traced run's parameters equal an untraced run's bit for bit.
"""

from __future__ import annotations

import math
import os
import pathlib
import platform
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from tracer.errors import DivergenceError, TracerError
from tracer.probes import family_of, optimizer_name, probe_group
from tracer.trace import TraceWriter

GRANULARITIES = ("full", "summary")
ON_DIVERGENCE = ("stop", "continue")
FULL_QUANTITIES = ("theta", "g", "v", "s", "d", "u")
SUMMARY_QUANTITIES = (
    "theta_norm",
    "g_norm",
    "v_norm",
    "s_norm",
    "d_norm",
    "displacement",
    "d_max",
    "cos_d_prev",
    "cos_g_d",
)
# Elements per block of summarised parameters (16 MB of float32): the probe's
# temporaries (d, denominators, theta_next - theta) exist for one block at a
# time, not for the whole model. Smaller blocks (cache-sized) measured no faster.
SUMMARY_BLOCK = 1 << 22
# Metadata keys the recorder owns; a caller's ``meta`` may not set them.
_OWN_META_KEYS = ("format", "schema_version", "parameters", "granularity", "coordinates", "summarized", "param_groups")


@dataclass
class _Traced:
    """One parameter tensor under trace."""

    name: str
    tensor: Tensor
    group: int
    full_index: Tensor | None  # flat indices traced in full; None: every coordinate (when full)
    coordinates: list[str]  # fully traced coordinate names
    summarized: bool
    previous_d: Tensor | None = None
    previous_d_norm: float | None = None

    @property
    def full(self) -> bool:
        return bool(self.coordinates)


def _coordinate_names(name: str, tensor: Tensor) -> list[str]:
    return [name] if tensor.dim() == 0 else [f"{name}[{i}]" for i in range(tensor.numel())]


def _json_option(value: Any) -> Any:
    """A group option as JSON (tensors of one element become floats); raises TypeError if impossible."""
    if isinstance(value, Tensor) and value.numel() == 1:
        return value.item()
    if isinstance(value, (tuple, list)):
        return [_json_option(item) for item in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(type(value).__name__)


def _versions() -> dict[str, str | None]:
    try:
        from importlib.metadata import version

        tracer_version: str | None = version("tracer")
    except Exception:  # not installed as a distribution
        tracer_version = None
    return {
        "tracer": tracer_version,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
    }


def _cosine(dot: float, norm_a: float | None, norm_b: float | None) -> float | None:
    if not norm_a or not norm_b or not math.isfinite(norm_a * norm_b):
        return None
    return dot / (norm_a * norm_b)


class Recorder:
    """Record what an optimizer does at every update into a trace file.

    Args:
        optimizer: a torch.optim.SGD, RMSprop, Adam or AdamW (any flags,
            foreach and fused included) or tracer.optim's.
        path: the trace file to write (tracer.trace format, schema version 1).
        named_parameters: (name, tensor) pairs, e.g. ``model.named_parameters()``;
            parameters not named there are called p0, p1, ... by their
            position in the optimizer's groups.
        granularity: "full" (every coordinate; default) or "summary" (per
            parameter tensor: norms, largest |d|, cosines).
        full: parameter names or coordinates (``"w[3]"``) traced in full while
            everything else is summarised; the file's granularity is "mixed".
        meta: merged into the file's metadata (label, problem, scheduler,
            epochs, batch_size, seed, ...).
        on_divergence: "stop" raises DivergenceError from ``step()`` once the
            loss, g, v, s or theta stops being finite (the row is written and
            the trailer says "diverged"); "continue" keeps recording.

    ``|d|`` (for ``u`` and ``step_size``) is the norm over every traced
    parameter together; with several groups ``step_size`` is the norm of
    ``lr_group * d``. A parameter without a gradient at an update has empty
    g, v, s, d and u cells there (the optimizer skipped it).
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        path: str | os.PathLike,
        *,
        named_parameters: Iterable[tuple[str, Tensor]] | None = None,
        granularity: str = "full",
        full: Sequence[str] | None = None,
        meta: Mapping[str, Any] | None = None,
        on_divergence: str = "stop",
    ) -> None:
        if granularity not in GRANULARITIES:
            raise TracerError(f"invalid granularity {granularity!r}; accepted: {', '.join(GRANULARITIES)}")
        if on_divergence not in ON_DIVERGENCE:
            raise TracerError(f"invalid on_divergence {on_divergence!r}; accepted: {', '.join(ON_DIVERGENCE)}")
        meta = dict(meta or {})
        owned = sorted(key for key in meta if key in _OWN_META_KEYS)
        if owned:
            raise TracerError(f"meta may not set {owned}: the recorder fills them")
        self.optimizer = optimizer
        self.path = pathlib.Path(path)
        self.on_divergence = on_divergence
        self.family = family_of(optimizer)
        self.granularity = granularity if full is None else "mixed"
        self._params = self._collect(optimizer, named_parameters, granularity, full)
        self._group_lists = [
            [i for i, traced in enumerate(self._params) if traced.group == g] for g in range(len(optimizer.param_groups))
        ]
        self._full_only = [i for i, traced in enumerate(self._params) if not traced.summarized]
        self._summary_blocks = self._blocks()
        self.columns = self._make_columns()
        self.meta = self._make_meta(meta)
        self.updates = 0
        self.diverged_at: int | None = None
        self.final: dict[str, float] = {}
        self._writer: TraceWriter | None = None
        self._handles: list[Any] = []
        self._notes: dict[str, Any] = {}
        self._before: list[Tensor] = []
        self._lrs: list[float] = []

    # -- set-up ---------------------------------------------------------------------------

    @staticmethod
    def _collect(optimizer, named_parameters, granularity, full) -> list[_Traced]:
        names = {id(tensor): name for name, tensor in (named_parameters or ())}
        requested = list(full or ())
        traced: list[_Traced] = []
        position = 0
        for group_index, group in enumerate(optimizer.param_groups):
            for tensor in group["params"]:
                name = names.get(id(tensor), f"p{position}")
                position += 1
                coordinates = _coordinate_names(name, tensor)
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
                traced.append(_Traced(name, tensor, group_index, index, chosen, summarized=not whole))
        known = {t.name for t in traced} | {c for t in traced for c in _coordinate_names(t.name, t.tensor)}
        unknown = [name for name in requested if name not in known]
        if unknown:
            shown = sorted(t.name for t in traced)
            raise TracerError(f"full= names no parameter or coordinate: {unknown}; parameters are {shown}")
        if len({t.name for t in traced}) != len(traced):
            raise TracerError("two parameters have the same name; pass distinct named_parameters")
        return traced

    def _blocks(self) -> list[list[int]]:
        """Summarised parameters in blocks of one group and about SUMMARY_BLOCK elements."""
        blocks: list[list[int]] = []
        for members in self._group_lists:
            block: list[int] = []
            size = 0
            for i in members:
                if not self._params[i].summarized:
                    continue
                numel = self._params[i].tensor.numel()
                if block and size + numel > SUMMARY_BLOCK:
                    blocks.append(block)
                    block, size = [], 0
                block.append(i)
                size += numel
            if block:
                blocks.append(block)
        return blocks

    def _lr_columns(self) -> list[str]:
        groups = len(self.optimizer.param_groups)
        return ["lr"] if groups == 1 else [f"lr[{i}]" for i in range(groups)]

    def _make_columns(self) -> list[str]:
        columns = ["update", "epoch", "batch", *self._lr_columns(), "loss"]
        for traced in self._params:
            columns += [f"{c}.{q}" for c in traced.coordinates for q in FULL_QUANTITIES]
            if traced.summarized:
                columns += [f"{traced.name}.{q}" for q in SUMMARY_QUANTITIES]
        return columns + ["step_size", "displacement"]

    def _make_meta(self, caller: dict[str, Any]) -> dict[str, Any]:
        optimizer = self.optimizer
        cls = type(optimizer)
        hyperparameters = {}
        for key, value in optimizer.param_groups[0].items():
            if key == "params":
                continue
            try:
                hyperparameters[key] = _json_option(value)
            except TypeError:
                pass
        optimizer_meta = {
            "name": optimizer_name(optimizer),
            "class": f"{cls.__module__}.{cls.__qualname__}",
            "impl": "tracer" if cls.__module__.startswith("tracer.") else "torch",
            "hyperparameters": hyperparameters,
        }
        optimizer_meta.update(caller.pop("optimizer", None) or {})
        meta = {
            "optimizer": optimizer_meta,
            "parameters": [
                {"name": t.name, "shape": list(t.tensor.shape), "group": t.group} for t in self._params
            ],
            "granularity": self.granularity,
            "coordinates": [c for t in self._params for c in t.coordinates],
            "summarized": [t.name for t in self._params if t.summarized],
            "param_groups": len(optimizer.param_groups),
            "versions": _versions(),
        }
        meta.update(caller)
        return meta

    # -- life cycle -------------------------------------------------------------------------

    def start(self) -> "Recorder":
        """Open the trace file and attach to the optimizer (``with`` does this)."""
        if self._writer is not None:
            raise TracerError("this Recorder has already been started; make a new one per run")
        self._writer = TraceWriter(self.path, self.meta, self.columns)
        self._before = [torch.empty_like(t.tensor, memory_format=torch.contiguous_format) for t in self._params]
        self._handles = [
            self.optimizer.register_step_pre_hook(self._pre_step),
            self.optimizer.register_step_post_hook(self._post_step),
        ]
        return self

    def close(self, status: str | None = None) -> None:
        """Detach and write the trailer: "complete" (or "diverged" if it diverged) unless told otherwise."""
        for handle in self._handles:
            handle.remove()
        self._handles = []
        if self._writer is None or self._writer.closed:
            return
        if status is None:
            status = "complete" if self.diverged_at is None else "diverged"
        self._writer.close(status, final=self.final, diverged_at=self.diverged_at)

    def __enter__(self) -> "Recorder":
        return self.start()

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None or isinstance(exc, DivergenceError):
            self.close()
        else:
            self.close("interrupted")
        return False

    def note(self, *, loss: float | Tensor | None = None, epoch: int | None = None, batch: int | None = None) -> None:
        """Values for the next row only (call before ``step()``); a tensor loss is read with ``.item()``."""
        if loss is not None:
            self._notes["loss"] = float(loss)
        if epoch is not None:
            self._notes["epoch"] = int(epoch)
        if batch is not None:
            self._notes["batch"] = int(batch)

    # -- the hooks ------------------------------------------------------------------------

    @torch.no_grad()
    def _pre_step(self, optimizer, args, kwargs) -> None:
        self._lrs = [float(group["lr"]) for group in optimizer.param_groups]
        torch._foreach_copy_(self._before, [t.tensor.detach() for t in self._params])

    @torch.no_grad()
    def _post_step(self, optimizer, args, kwargs) -> None:
        results: list[tuple[Tensor, Tensor | None, Tensor | None, Tensor] | None] = [None] * len(self._params)
        self._probe_into(results, optimizer, self._full_only)
        # Summarised parameters go in blocks (SUMMARY_BLOCK) so that the
        # temporaries of only one block are alive at a time.
        summaries: dict[int, dict[str, float | None]] = {}
        finite_summary = True
        for block in self._summary_blocks:
            self._probe_into(results, optimizer, block)
            block_summaries, block_finite = self._summaries(block, results)
            summaries.update(block_summaries)
            finite_summary = finite_summary and block_finite
            for i in block:
                if not self._params[i].full:
                    results[i] = None
        self.updates += 1
        notes, self._notes = self._notes, {}
        loss = notes.get("loss")
        lrs = self._lrs
        cells: list[Any] = [self.updates, notes.get("epoch"), notes.get("batch"), *lrs, loss]
        finite = loss is None or math.isfinite(loss)

        full_values, finite_full = self._full_values(results)
        finite = finite and finite_full and finite_summary

        # Norms of d and of the displacement over every traced parameter together.
        d_norms, lr_d_norms, displacements = [], [], []
        for i, traced in enumerate(self._params):
            if traced.summarized:
                d_norm, displacement = summaries[i]["d_norm"], summaries[i]["displacement"]
            else:
                values = full_values[i]
                d_norm = None if values["d"] is None else math.hypot(*values["d"])
                displacement = math.dist(values["after"], values["theta"])
            d_norm = d_norm or 0.0
            d_norms.append(d_norm)
            lr_d_norms.append(lrs[traced.group] * d_norm)
            displacements.append(displacement)
        d_norm_all = math.hypot(*d_norms)

        for i, traced in enumerate(self._params):
            if traced.full:
                values = full_values[i]
                d = values["d"]
                u = [None] * len(traced.coordinates) if d is None or not d_norm_all else [x / d_norm_all for x in d]
                columns = [values["theta"], values["g"], values["v"], values["s"], d, u]
                missing = [None] * len(traced.coordinates)
                for k in range(len(traced.coordinates)):
                    cells += [missing[k] if column is None else column[k] for column in columns]
                for name, value in zip(traced.coordinates, values["after"]):
                    self.final[name] = value
            if traced.summarized:
                cells += [summaries[i][q] for q in SUMMARY_QUANTITIES]
        cells += [math.hypot(*lr_d_norms), math.hypot(*displacements)]
        self._writer.write_cells(cells)

        if not finite and self.diverged_at is None:
            self.diverged_at = self.updates
            if self.on_divergence == "stop":
                self.close("diverged")
                raise DivergenceError(
                    f"the run diverged at update {self.updates}: the loss, g, v, s or theta is no longer finite "
                    f"(loss={loss!r}); the trace {self.path} ends there. Lower the learning rate, or pass "
                    f"on_divergence='continue' to keep recording"
                )

    def _probe_into(self, results, optimizer, indices: list[int]) -> None:
        """Fill results[i] with the (g, v, s, d) tensors of traced parameters ``indices`` (None without a gradient)."""
        chosen = set(indices)
        for group, members in zip(optimizer.param_groups, self._group_lists):
            with_grad = [i for i in members if i in chosen and self._params[i].tensor.grad is not None]
            if not with_grad:
                continue
            result = probe_group(
                self.family,
                [self._params[i].tensor.grad for i in with_grad],
                [optimizer.state[self._params[i].tensor] for i in with_grad],
                group,
                [self._before[i] for i in with_grad],
            )
            for k, i in enumerate(with_grad):
                results[i] = (
                    result.g[k],
                    None if result.v is None else result.v[k],
                    None if result.s is None else result.s[k],
                    result.d[k],
                )

    def _full_values(self, results) -> tuple[dict[int, dict[str, list[float] | None]], bool]:
        """The fully traced coordinates' values as Python floats, from one torch.cat and one tolist()."""
        pieces: list[Tensor] = []
        layout: list[tuple[int, str, int]] = []
        for i, traced in enumerate(self._params):
            if not traced.full:
                continue
            g, v, s, d = results[i] or (None, None, None, None)
            tensors = (
                ("theta", self._before[i]), ("g", g), ("v", v), ("s", s), ("d", d), ("after", traced.tensor.detach())
            )
            for key, tensor in tensors:
                if tensor is None:
                    layout.append((i, key, 0))
                    continue
                if traced.full_index is not None:
                    tensor = tensor.reshape(-1)[traced.full_index]
                pieces.append(tensor)
                layout.append((i, key, tensor.numel()))
        if not pieces:
            return {}, True
        if all(piece.dim() == 0 for piece in pieces):
            joined = torch.stack(pieces)  # scalar parameters: one op instead of one reshape per piece
        else:
            joined = torch.cat([piece.reshape(-1) for piece in pieces])
        # float32 -> Python float is exact; torch.stack/cat promote mixed dtypes.
        flat_values = joined.tolist()
        values: dict[int, dict[str, list[float] | None]] = {}
        offset = 0
        finite = True
        for i, key, count in layout:
            if count == 0:
                values.setdefault(i, {})[key] = None
                continue
            chunk = flat_values[offset : offset + count]
            offset += count
            values.setdefault(i, {})[key] = chunk
            if finite and key in ("theta", "g", "v", "s") and not all(map(math.isfinite, chunk)):
                finite = False
        return values, finite

    def _summaries(self, chosen: list[int], results) -> tuple[dict[int, dict[str, float | None]], bool]:
        """For parameters ``chosen``: norms, largest |d| and cosines, computed on the tensors' device."""
        with_grad = [i for i in chosen if results[i] is not None]
        befores = [self._before[i] for i in chosen]
        afters = [self._params[i].tensor.detach() for i in chosen]
        # One list of 0-dim tensors, read back with a single tolist() (one device sync).
        scalars: list[Tensor] = []
        scalars += torch._foreach_norm(befores)
        scalars += torch._foreach_norm(torch._foreach_sub(afters, befores))
        g_list = [results[i][0] for i in with_grad]
        d_list = [results[i][3] for i in with_grad]
        v_list = [results[i][1] for i in with_grad if results[i][1] is not None]
        s_list = [results[i][2] for i in with_grad if results[i][2] is not None]
        for tensors in (g_list, d_list, v_list, s_list):
            if tensors:
                scalars += torch._foreach_norm(tensors)
        if d_list:
            scalars += torch._foreach_norm(d_list, ord=math.inf)
        for i, g, d in zip(with_grad, g_list, d_list):
            scalars.append(torch.dot(g.reshape(-1), d.reshape(-1)))
            previous = self._params[i].previous_d
            if previous is not None:
                scalars.append(torch.dot(previous.reshape(-1), d.reshape(-1)))
        numbers = torch.stack([s.to(torch.float64) for s in scalars]).tolist() if scalars else []

        taken = iter(numbers)
        out: dict[int, dict[str, float | None]] = {
            i: dict.fromkeys(SUMMARY_QUANTITIES) for i in chosen
        }
        for i in chosen:
            out[i]["theta_norm"] = next(taken)
        for i in chosen:
            out[i]["displacement"] = next(taken)
        for key, present in (
            ("g_norm", with_grad),
            ("d_norm", with_grad),
            ("v_norm", [i for i in with_grad if results[i][1] is not None]),
            ("s_norm", [i for i in with_grad if results[i][2] is not None]),
        ):
            for i in present:
                out[i][key] = next(taken)
        if d_list:
            for i in with_grad:
                out[i]["d_max"] = next(taken)
        finite = True
        for i, d in zip(with_grad, d_list):
            traced = self._params[i]
            summary = out[i]
            summary["cos_g_d"] = _cosine(next(taken), summary["g_norm"], summary["d_norm"])
            if traced.previous_d is not None:
                summary["cos_d_prev"] = _cosine(next(taken), summary["d_norm"], traced.previous_d_norm)
            # d may be the optimizer's momentum buffer or the grad itself, both
            # changed in place later: keep a copy for the next cosine.
            g, v = results[i][0], results[i][1]
            aliased = d is g or d is v or d is traced.tensor.grad
            traced.previous_d = d.clone() if aliased else d
            traced.previous_d_norm = summary["d_norm"]
        for i in chosen:
            if any(
                value is not None and not math.isfinite(value)
                for value in (out[i]["theta_norm"], out[i]["g_norm"], out[i]["v_norm"], out[i]["s_norm"])
            ):
                finite = False
        return out, finite
