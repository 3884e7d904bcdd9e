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

A step pre-hook copies the parameters into buffers allocated once; the
post-hook appends one row to the trace file. Fully traced coordinates go
through the family's probe (``tracer.probes``), which repeats the optimizer's
arithmetic in its own op order on (gradient, state after the step, group
options, parameters before), so that d is the optimizer's own. Summaries
instead measure d from the displacement: the snapshot becomes
``theta - theta_next = lr * d`` in place, a few passes over memory per update
(see ``Recorder._summaries``). The recorder only reads: a traced run's
parameters equal an untraced run's bit for bit.
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
from tracer.probes import family_of, gradient_convention, moment_keys, optimizer_name, probe_group, state_tensor
from tracer.platform import platform_meta
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
    # Summaries: (shaped, flat) views of two buffers: theta before the step,
    # turned into delta = theta - theta_next in place, and the previous
    # update's delta; swapped after each update, never copied.
    delta: tuple[Tensor, Tensor] | None = None
    previous_delta: tuple[Tensor, Tensor] | None = None
    previous_delta_norm: float | None = None
    # 0-dim views into the recorder's results buffer, one per _SLOTS entry.
    slots: tuple[Tensor, ...] = ()

    @property
    def full(self) -> bool:
        return bool(self.coordinates)


# The reductions of one summarised parameter, in their slots of the results buffer.
_SLOTS = ("theta_sq", "delta_sq", "delta_min", "delta_max", "g_dot_delta", "g_sq", "previous_dot_delta", "v_sq", "s_sq")


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


def _result_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype summaries are reduced in: float64 for float64, else float32 (a squared norm overflows float16)."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _dot(a: Tensor, b: Tensor, out: Tensor) -> None:
    """a . b (1-D) into the 0-dim ``out``; a dot product is BLAS, faster than vector_norm."""
    if a.dtype == out.dtype:
        torch.dot(a, b, out=out)
    else:
        out.copy_(torch.dot(a.to(out.dtype), b.to(out.dtype)))


def _aminmax(a: Tensor, low: Tensor, high: Tensor) -> None:
    if a.dtype == low.dtype:
        torch.aminmax(a, out=(low, high))
    else:
        low.copy_(a.min())
        high.copy_(a.max())


def _squared_norm(tensor: Tensor, out: Tensor) -> None:
    """|x|^2 into the 0-dim ``out``."""
    if tensor.is_contiguous():
        flat = tensor if tensor.dim() == 1 else tensor.view(-1)
        _dot(flat, flat, out)
    else:
        out.copy_(torch.linalg.vector_norm(tensor, dtype=out.dtype).square())


def _cosine(dot: float, norm_a: float | None, norm_b: float | None) -> float | None:
    """dot / (|a| |b|), clamped to [-1, 1]: the dot product and the norms are
    reduced separately in the parameters' dtype, so parallel vectors can come
    out a few ulp beyond 1, which no reader should see."""
    if not norm_a or not norm_b or not math.isfinite(norm_a * norm_b):
        return None
    return min(1.0, max(-1.0, dot / (norm_a * norm_b)))


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

    Summaries measure d as (theta - theta_next) / lr (exact up to one
    rounding; empty d cells while lr = 0, as theta does not move); full
    granularity recomputes d with the optimizer's own arithmetic.

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
        self._full_members = [i for i, traced in enumerate(self._params) if traced.full]
        self._summary_members = [
            [i for i in members if self._params[i].summarized] for members in self._group_lists
        ]
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
            "platform": platform_meta(),
        }
        meta.update(caller)
        return meta

    # -- life cycle -------------------------------------------------------------------------

    def start(self) -> "Recorder":
        """Open the trace file and attach to the optimizer (``with`` does this)."""
        if self._writer is not None:
            raise TracerError("this Recorder has already been started; make a new one per run")
        self._writer = TraceWriter(self.path, self.meta, self.columns)
        # theta before the step, one buffer per parameter allocated once; a
        # summarised parameter's buffer becomes theta - theta_next in place.
        self._before = [torch.empty_like(t.tensor, memory_format=torch.contiguous_format) for t in self._params]
        whole = [i for i in self._full_members if not self._params[i].summarized]
        self._copy_targets = [self._before[i] for i in whole]
        self._copy_sources = [self._params[i].tensor for i in whole]
        self._summarized = [i for members in self._summary_members for i in members]
        self._full_by_group = [[i for i in members if self._params[i].full] for members in self._group_lists]
        self._full_scalars = all(
            self._params[i].tensor.dim() == 0 and self._params[i].full_index is None for i in self._full_members
        )
        self._results = self._summary_buffers()
        self._handles = [
            self.optimizer.register_step_pre_hook(self._pre_step),
            self.optimizer.register_step_post_hook(self._post_step),
        ]
        return self

    def _summary_buffers(self) -> dict[tuple[torch.device, torch.dtype], Tensor]:
        """Give each summarised parameter its second buffer and its result slots; returns the results buffers.

        Every reduction writes into a slot (``out=``) of one buffer per device
        and dtype, read back with one tolist(): one device sync per update.
        """
        counts: dict[tuple[torch.device, torch.dtype], int] = {}
        for i in self._summarized:
            tensor = self._params[i].tensor
            key = (tensor.device, _result_dtype(tensor.dtype))
            counts[key] = counts.get(key, 0) + len(_SLOTS)
        results = {key: torch.zeros(count, dtype=key[1], device=key[0]) for key, count in counts.items()}
        slots = {key: iter(buffer.unbind()) for key, buffer in results.items()}
        for i in self._summarized:
            traced = self._params[i]
            snapshot, spare = self._before[i], torch.empty_like(self._before[i])
            traced.delta = (snapshot, snapshot.view(-1))
            traced.previous_delta = (spare, spare.view(-1))
            taken = slots[(traced.tensor.device, _result_dtype(traced.tensor.dtype))]
            traced.slots = tuple(next(taken) for _ in _SLOTS)
        return results

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
        if self._copy_targets:
            torch._foreach_copy_(self._copy_targets, self._copy_sources)
        # |theta| of the snapshot: the theta this update starts from.
        for i in self._summarized:
            traced = self._params[i]
            snapshot, flat = traced.delta
            snapshot.copy_(traced.tensor)
            _dot(flat, flat, traced.slots[0])

    @torch.no_grad()
    def _post_step(self, optimizer, args, kwargs) -> None:
        # Read the full values before the summaries turn the snapshots into displacements.
        full_values, finite_full = self._full_values(optimizer)
        summaries, finite_summary = self._summaries(optimizer) if self._summarized else ({}, True)
        self.updates += 1
        notes, self._notes = self._notes, {}
        loss = notes.get("loss")
        lrs = self._lrs
        cells: list[Any] = [self.updates, notes.get("epoch"), notes.get("batch"), *lrs, loss]
        finite = (loss is None or math.isfinite(loss)) and finite_full and finite_summary

        # Norms of d and of the displacement over every traced parameter together.
        d_norms, lr_d_norms, displacements = [], [], []
        for i, traced in enumerate(self._params):
            if traced.summarized:
                d_norm, displacement = summaries[i]["d_norm"], summaries[i]["displacement"]
            else:
                theta, _, _, _, d, after = full_values[i]
                d_norm = None if d is None else math.hypot(*d)
                displacement = math.dist(after, theta)
            d_norm = d_norm or 0.0
            d_norms.append(d_norm)
            lr_d_norms.append(lrs[traced.group] * d_norm)
            displacements.append(displacement)
        d_norm_all = math.hypot(*d_norms)

        for i, traced in enumerate(self._params):
            if traced.full:
                theta, g, v, s, d, after = full_values[i]
                count = len(traced.coordinates)
                missing = [None] * count
                u = missing if d is None or not d_norm_all else [x / d_norm_all for x in d]
                for row in zip(theta, g or missing, v or missing, s or missing, d or missing, u):
                    cells += row
                self.final.update(zip(traced.coordinates, after))
            if traced.summarized:
                summary = summaries[i]
                cells += [summary[q] for q in SUMMARY_QUANTITIES]
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

    def _full_values(self, optimizer) -> tuple[dict[int, tuple[list[float] | None, ...]], bool]:
        """Per fully traced parameter, (theta, g, v, s, d, theta_next) of its traced coordinates as floats.

        The probe (``tracer.probes``) gives g, v, s, d in the optimizer's own
        op order; every value is read back with one torch.stack (or cat) and
        one tolist(). g, v, s, d are None where the parameter had no gradient
        or the optimizer has no such quantity.
        """
        pieces: list[Tensor] = []
        layout: list[tuple[int, int, bool, bool, bool]] = []  # (index, count, has grad, has v, has s)
        for group, members in zip(optimizer.param_groups, self._full_by_group):
            with_grad = [i for i in members if self._params[i].tensor.grad is not None]
            result = None
            if with_grad:
                result = probe_group(
                    self.family,
                    [self._params[i].tensor.grad for i in with_grad],
                    [optimizer.state[self._params[i].tensor] for i in with_grad],
                    group,
                    [self._before[i] for i in with_grad],
                )
            k = 0
            for i in members:
                traced = self._params[i]
                has_grad = result is not None and k < len(with_grad) and with_grad[k] == i
                if has_grad:
                    tensors = [self._before[i], result.g[k]]
                    if result.v is not None:
                        tensors.append(result.v[k])
                    if result.s is not None:
                        tensors.append(result.s[k])
                    tensors += (result.d[k], traced.tensor)
                    k += 1
                else:
                    tensors = [self._before[i], traced.tensor]
                if traced.full_index is not None:
                    tensors = [tensor.reshape(-1)[traced.full_index] for tensor in tensors]
                pieces += tensors
                layout.append(
                    (i, len(traced.coordinates), has_grad, has_grad and result.v is not None, has_grad and result.s is not None)
                )
        if not pieces:
            return {}, True
        if self._full_scalars:
            joined = torch.stack(pieces)  # scalar parameters: one op instead of one reshape per piece
        else:
            joined = torch.cat([piece.reshape(-1) for piece in pieces])
        # float32 -> Python float is exact; torch.stack/cat promote mixed dtypes.
        flat = joined.tolist()
        values: dict[int, tuple[list[float] | None, ...]] = {}
        offset = 0
        finite = True
        for i, count, has_grad, has_v, has_s in layout:
            columns: list[list[float] | None] = []
            for present in (True, has_grad, has_v, has_s, has_grad, True):  # theta, g, v, s, d, theta_next
                if present:
                    columns.append(flat[offset : offset + count])
                    offset += count
                else:
                    columns.append(None)
            theta, g, v, s, d, after = columns
            values[i] = tuple(columns)
            if finite:
                finite = all(map(math.isfinite, theta)) and all(
                    all(map(math.isfinite, column)) for column in (g, v, s) if column is not None
                )
        return values, finite

    def _summaries(self, optimizer) -> tuple[dict[int, dict[str, float | None]], bool]:
        """Per summarised parameter: norms, largest |d| and cosines, with d measured from the displacement.

        Summaries do not repeat the optimizer's arithmetic (full granularity
        does, in the optimizer's own op order, through ``tracer.probes``):
        the snapshot of theta taken before the step becomes, in place,
        ``delta = theta - theta_next``, and ``d = delta / lr`` by definition
        (``theta_next = theta - lr * d``), exact up to one rounding. So
        ``displacement = |delta|``, ``d_norm = |delta| / lr``, ``d_max =
        max|delta| / lr``, and the cosines are those of delta. With lr = 0 the
        step does not move theta and d cannot be measured: its cells are empty.

        Passes over memory per parameter and update (summary granularity):
        the snapshot copy (read theta, write the buffer) and |theta| in the
        pre-hook; here delta in place (read the buffer and theta_next, write
        delta), |delta|, min/max of delta, g.delta, |g|, the previous
        delta.delta, |v| and |s|: about 13 passes over ten separate kernels
        per tensor, against the 7 passes of one fused Adam kernel (read
        theta, g, m, v; write theta, m, v). Measured on a 2-core CPU (10M
        parameters, one tensor or 100 of 100k): the traced step costs about
        4.6-4.8x an untraced fused Adam step, down from 11x when d was
        recomputed; the reductions are memory-bound (they take as long on
        100 x 100k as on 1 x 10M), and batching them with torch's foreach
        ops measured slower here (foreach norms lose to MKL's dot, the
        inf-norm to aminmax). 1.5x would need every summary fused into one
        pass (a custom kernel). The previous delta is kept by swapping two
        buffers, never copied.
        """
        # (index, lr, sign of g, has grad, has previous delta, has v, has s)
        layout: list[tuple[int, float, float, bool, bool, bool, bool]] = []
        for group, members, lr in zip(optimizer.param_groups, self._summary_members, self._lrs):
            if not members:
                continue
            sign, weight_decay = gradient_convention(self.family, group)
            v_key, s_key = moment_keys(self.family, group)
            for i in members:
                traced = self._params[i]
                param, grad = traced.tensor, traced.tensor.grad
                delta, flat = traced.delta
                slots = traced.slots
                g = None
                if grad is not None and weight_decay != 0:
                    # sign * (grad + sign * wd * theta) is the g the optimizer used.
                    g = torch.add(grad, delta, alpha=sign * weight_decay).reshape(-1)
                delta.sub_(param)
                _dot(flat, flat, slots[1])
                if grad is None:
                    layout.append((i, lr, sign, False, False, False, False))
                    continue
                if g is None:
                    g = grad if grad.dim() == 1 else grad.reshape(-1)
                _aminmax(flat, slots[2], slots[3])
                _dot(g, flat, slots[4])
                _dot(g, g, slots[5])
                has_previous = traced.previous_delta_norm is not None
                if has_previous:
                    _dot(traced.previous_delta[1], flat, slots[6])
                state = optimizer.state[param]
                if v_key is not None:
                    _squared_norm(state_tensor(state, v_key), slots[7])
                if s_key is not None:
                    _squared_norm(state_tensor(state, s_key), slots[8])
                layout.append((i, lr, sign, True, has_previous, v_key is not None, s_key is not None))
        # One device-to-host read per results buffer (one in all but mixed-dtype or multi-device models).
        numbers = {key: buffer.tolist() for key, buffer in self._results.items()}
        offsets = {key: 0 for key in numbers}

        out: dict[int, dict[str, float | None]] = {}
        finite = True
        sqrt = math.sqrt
        for i, lr, sign, has_grad, has_previous, has_v, has_s in layout:
            traced = self._params[i]
            key = (traced.tensor.device, _result_dtype(traced.tensor.dtype))
            start = offsets[key]
            offsets[key] = start + len(_SLOTS)
            theta_sq, delta_sq, low, high, g_dot_delta, g_sq, previous_dot, v_sq, s_sq = numbers[key][start : start + len(_SLOTS)]
            summary = out[i] = dict.fromkeys(SUMMARY_QUANTITIES)
            summary["theta_norm"] = theta_norm = sqrt(theta_sq)
            summary["displacement"] = displacement = sqrt(delta_sq)
            if not math.isfinite(theta_norm):
                finite = False
            if not has_grad:
                continue
            summary["g_norm"] = g_norm = sqrt(g_sq)
            summary["v_norm"] = sqrt(v_sq) if has_v else None
            summary["s_norm"] = sqrt(s_sq) if has_s else None
            if not (math.isfinite(g_norm) and math.isfinite(v_sq if has_v else 0.0) and math.isfinite(s_sq if has_s else 0.0)):
                finite = False
            if not lr > 0:
                continue
            summary["d_norm"] = displacement / lr
            summary["d_max"] = (high if high >= -low else -low) / lr if low == low and high == high else math.nan
            # d points along delta, so cos(g, d) = cos(g, delta).
            summary["cos_g_d"] = _cosine(sign * g_dot_delta, g_norm, displacement)
            if has_previous:
                summary["cos_d_prev"] = _cosine(previous_dot, displacement, traced.previous_delta_norm)
            traced.delta, traced.previous_delta = traced.previous_delta, traced.delta
            self._before[i] = traced.delta[0]
            traced.previous_delta_norm = displacement
        return out, finite
