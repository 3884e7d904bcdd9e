"""The per-tensor reductions behind the summary columns, in one pass over memory.

A summarised parameter tensor needs, at each update, nine numbers (the
``REDUCTIONS``), from which its nine summary columns follow (see
``tracer.recording.summary``):

    theta_sq            |theta|^2 of theta before the update
    delta_sq            |delta|^2, delta = theta - theta_next (the update's displacement, lr * d)
    delta_abs_max       max |delta_i|
    g_dot_delta         g_raw . delta   (g_raw = grad + g_theta * theta; the optimizer's g is sign * g_raw)
    g_sq                |g_raw|^2
    previous_dot_delta  delta_previous . delta
    previous_sq         |delta_previous|^2 (read in the same pass: the cosine's norms come from one place)
    v_sq, s_sq          |v|^2, |s|^2 of the optimizer's state after the update

The inputs are the snapshot of theta taken before the step (which becomes
delta in place), theta after the step, the gradient, v, s and the previous
delta: one read of each and one write of delta is the least any summary
computed outside the optimizer can do (28 bytes per float32 parameter, plus 8
for the snapshot copy before the step, against fused Adam's 28).

Three implementations with one contract (``SUMMARY_PASSES``; a Recorder's
``summary_pass`` chooses, "auto" by default: native where it builds, else eager):

- ``NativeReducer`` ("native"): one C loop per tensor over memory, every
  tensor of an update in one call on torch's thread count
  (``tracer/native/summaries.c``). Float32 lanes of 16 terms, then float64,
  in a fixed order (``tracer/native/reductions.h``): the same on every CPU
  and thread count, and within 1e-6 of the exact sums. Float32 CPU tensors only; others go the eager way.
- ``reduce_eager`` ("eager"): torch ops, one kernel per reduction (BLAS dot
  products where the dtypes allow), about ten passes over memory. Always
  available; the reference the other two are tested against.
- ``FusedReducer`` ("compiled"): the same arithmetic written once as a torch function and
  compiled by ``torch.compile`` (inductor: fused C++/OpenMP loops on CPU,
  Triton kernels on GPU), over a chunk of ``chunk`` tensors per call: the
  compiled function's fixed cost per call (guards, the Python wrapper) is
  paid once per chunk instead of once per tensor. Lengths are dynamic and the
  last chunk is padded with two-element dummies, so one compilation serves
  every chunk of a model (per device, dtype and family: which of v and s
  exist). Where compilation is not possible (no C++ compiler, an unsupported
  device) it falls back to ``reduce_eager`` once, with a warning. It is the
  way to fuse on a GPU; on a CPU the native pass is faster (README, Speed).

They agree within named tolerances: they sum the same products in
different orders (blocked BLAS against inductor's vectorised cascade sums
against the native float64 lanes). A
sum of squares (all terms of one sign) agrees within ``FUSED_RTOL`` relative
(measured: 2.4e-7 on 100k float32 terms); a dot product of terms of both signs
can lose relative precision to cancellation, so it is compared against the
product of its operands' norms, ``|fused - eager| <= FUSED_COSINE_ATOL * |a| |b|``
(an error of at most that much in the cosines the recorder writes).
``delta_abs_max`` and ``delta`` itself (one subtraction) are identical bit for
bit.
"""

from __future__ import annotations

import warnings
from typing import Callable, NamedTuple, Sequence

import numpy as np
import torch
from torch import Tensor

from tracer.native.steps import native_tensors

REDUCTIONS = (
    "theta_sq",
    "delta_sq",
    "delta_abs_max",
    "g_dot_delta",
    "g_sq",
    "previous_dot_delta",
    "previous_sq",
    "v_sq",
    "s_sq",
)
SUMMARY_PASSES = ("auto", "native", "compiled", "eager")
"""What ``Recorder(summary_pass=...)`` accepts; "auto" is native where it builds, else eager."""
FUSED_RTOL = 1e-5
"""Relative tolerance between fused and eager sums of squares (float32 sums in different orders)."""
FUSED_COSINE_ATOL = 1e-5
"""Tolerance between fused and eager dot products, relative to the product of the operands' norms."""


def result_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype summaries are reduced in: float64 for float64, else float32 (a squared norm overflows float16)."""
    return torch.float64 if dtype == torch.float64 else torch.float32


class SummaryInput(NamedTuple):
    """One summarised parameter tensor at one update: what its reductions read.

    A NamedTuple (immutable, and made four times faster than a frozen
    dataclass): the recorder makes one per summarised tensor at every update.

    ``snapshot`` is theta before the step (contiguous, the recorder's buffer)
    and becomes delta = theta - theta_after in place. ``g_theta`` folds weight
    decay into the gradient: g_raw = grad + g_theta * theta (0 without).
    ``grad``, ``v``, ``s`` and ``previous_delta`` are None where absent.
    """

    snapshot: Tensor
    theta_after: Tensor
    grad: Tensor | None
    g_theta: float
    v: Tensor | None
    s: Tensor | None
    previous_delta: Tensor | None


def _dot(a: Tensor, b: Tensor, dtype: torch.dtype) -> Tensor:
    """a . b (1-D) as a 0-dim tensor of ``dtype``; a dot product is BLAS, faster than vector_norm."""
    if a.dtype == dtype:
        return torch.dot(a, b)
    return torch.dot(a.to(dtype), b.to(dtype))


def _flat(tensor: Tensor) -> Tensor:
    return tensor if tensor.dim() == 1 else tensor.reshape(-1)


def _squared_norm(tensor: Tensor, dtype: torch.dtype) -> Tensor:
    """|x|^2 as a 0-dim tensor of ``dtype``."""
    if tensor.is_contiguous():
        flat = _flat(tensor)
        return _dot(flat, flat, dtype)
    return torch.linalg.vector_norm(tensor, dtype=dtype).square()


def reduce_eager(item: SummaryInput, out: Tensor) -> None:
    """Turn ``item.snapshot`` into delta in place and write the REDUCTIONS into ``out`` (9,).

    Entries whose input is None (no gradient, no v, no s, no previous delta) are left as they are.
    The reductions are collected as 0-dim tensors and written with one ``stack`` where they fill
    a prefix of ``out`` (the usual case): per tensor, ~20 fewer small torch calls than writing each
    entry through its own view, the same kernels and so the same numbers.
    """
    dtype = out.dtype
    snapshot = item.snapshot
    flat = snapshot.view(-1)
    values = [_dot(flat, flat, dtype)]  # REDUCTIONS in order, from index 0
    later: list[tuple[int, Tensor]] = []  # those after a gap (an absent input)
    g = None
    if item.grad is not None and item.g_theta != 0:
        g = torch.add(item.grad, snapshot, alpha=item.g_theta).reshape(-1)
    snapshot.sub_(item.theta_after)
    values.append(_dot(flat, flat, dtype))
    if item.grad is not None:
        if g is None:
            g = _flat(item.grad)
        # aminmax is one vectorised pass; vector_norm(inf) measured twice as slow here. A NaN propagates through both.
        low, high = torch.aminmax(flat)
        values += [torch.maximum(high, low.neg()).to(dtype), _dot(g, flat, dtype), _dot(g, g, dtype)]
        if item.previous_delta is not None:
            previous = item.previous_delta.view(-1)
            values += [_dot(previous, flat, dtype), _dot(previous, previous, dtype)]
        for index, moment in ((7, item.v), (8, item.s)):
            if moment is None:
                continue
            norm = _squared_norm(moment, dtype)
            if index == len(values):
                values.append(norm)
            else:
                later.append((index, norm))
    torch.stack(values, out=out[: len(values)])
    for index, value in later:
        out[index].copy_(value)


def _reductions(
    snapshot: Tensor,
    theta_after: Tensor,
    grad: Tensor,
    g_theta: Tensor,
    v: Tensor | None,
    s: Tensor | None,
    previous_delta: Tensor,
) -> Tensor:
    """The REDUCTIONS of one tensor as whole-tensor expressions, which inductor fuses; writes delta into ``snapshot``.

    The result dtype is float32 for every parameter dtype but float64 (``result_dtype``).
    """
    wide = result_dtype(snapshot.dtype)
    theta = snapshot.view(-1).to(wide)
    delta = theta - theta_after.reshape(-1).to(wide)
    g = grad.reshape(-1).to(wide) + g_theta.to(wide) * theta
    zero = theta.new_zeros(())
    results = torch.stack(
        [
            (theta * theta).sum(),
            (delta * delta).sum(),
            delta.abs().amax(),
            (g * delta).sum(),
            (g * g).sum(),
            (previous_delta.reshape(-1).to(wide) * delta).sum(),
            previous_delta.reshape(-1).to(wide).square().sum(),
            zero if v is None else v.reshape(-1).to(wide).square().sum(),
            zero if s is None else s.reshape(-1).to(wide).square().sum(),
        ]
    )
    snapshot.view(-1).copy_(delta.to(snapshot.dtype))
    return results


def _chunk_reductions(
    snapshots: list[Tensor],
    thetas_after: list[Tensor],
    grads: list[Tensor],
    g_thetas: Tensor,
    vs: list[Tensor] | None,
    ss: list[Tensor] | None,
    previous_deltas: list[Tensor],
) -> Tensor:
    """``_reductions`` of each tensor of a chunk, as one (chunk, 9) tensor: one compiled call."""
    return torch.stack(
        [
            _reductions(
                snapshots[k],
                thetas_after[k],
                grads[k],
                g_thetas[k],
                None if vs is None else vs[k],
                None if ss is None else ss[k],
                previous_deltas[k],
            )
            for k in range(len(snapshots))
        ]
    )


# Below this length a tensor goes the eager way: torch.compile specialises
# lengths 0 and 1 (a recompilation for each), and the pass costs nothing there.
_FUSED_MIN_LENGTH = 16
# Inductor's C++ sums switch to a cascaded accumulator above 4096 elements and
# guard on which side of it each input's length lies: tensors are chunked
# with others of their side (and padded with stand-ins of that side), so the
# pattern of lengths in a chunk never recompiles.
_LONG_LENGTH = 4097


class FusedReducer:
    """``reduce_eager``'s contract for many tensors, through compiled chunks; eager where compiling fails.

    ``fused`` says whether the compiled path is in use. The first call per
    device, dtype and family (which of v and s exist) compiles, a few seconds
    to a minute on a CPU depending on ``chunk``; later calls reuse it for
    tensors of any length.
    """

    def __init__(self, chunk: int = 8) -> None:
        import torch.fx.experimental._config as fx_config

        # Tensors of equal length would otherwise share one size symbol, and
        # every pattern of equal lengths in a chunk would recompile.
        fx_config.use_duck_shape = False
        self.chunk = chunk
        self.fused = True
        self._compiled: Callable[..., Tensor] = torch.compile(_chunk_reductions, dynamic=True, fullgraph=True)
        self._padding: dict[tuple[torch.device, torch.dtype, bool], list[SummaryInput]] = {}
        self._weights: dict[tuple[tuple[float, ...], torch.device, torch.dtype], Tensor] = {}

    def __call__(self, items: Sequence[SummaryInput], out: Tensor) -> None:
        """The REDUCTIONS of ``items[i]`` into ``out[i]`` (``out``: (len(items), 9) of ``result_dtype``)."""
        batches: dict[tuple, list[int]] = {}
        for i, item in enumerate(items):
            if not self.fused or not _fusable(item):
                reduce_eager(item, out[i])
                continue
            long = item.snapshot.numel() >= _LONG_LENGTH
            key = (item.snapshot.device, item.snapshot.dtype, item.v is not None, item.s is not None, long)
            batches.setdefault(key, []).append(i)
        for indices in batches.values():
            for start in range(0, len(indices), self.chunk):
                chunk = indices[start : start + self.chunk]
                if self.fused:
                    self._fused_chunk([items[i] for i in chunk], chunk, out)
                else:
                    for i in chunk:
                        reduce_eager(items[i], out[i])

    def _fused_chunk(self, chunk: list[SummaryInput], rows: list[int], out: Tensor) -> None:
        first = chunk[0]
        long = first.snapshot.numel() >= _LONG_LENGTH
        padded = chunk + self._padding_for(first.snapshot, long)[: self.chunk - len(chunk)]
        g_thetas = self._g_thetas(tuple(item.g_theta for item in padded), first.snapshot.device, out.dtype)
        try:
            # Flat views, detached: a parameter's rank or requires_grad differing from
            # another's (or the padding's) in the same place would recompile.
            flat = lambda tensor: tensor.detach().view(-1)  # noqa: E731 (contiguous: _fusable)
            results = self._compiled(
                [flat(item.snapshot) for item in padded],
                [flat(item.theta_after) for item in padded],
                [flat(item.grad) for item in padded],
                g_thetas,
                None if first.v is None else [flat(item.v) for item in padded],
                None if first.s is None else [flat(item.s) for item in padded],
                [flat(self._previous_or_zeros(item)) for item in padded],
            )
        except Exception as error:  # no C++ compiler, an unsupported device or dtype: stay correct, get slower
            self.fused = False
            # One line: inductor's messages run to pages, some opening with "backend='inductor' raised:".
            lines = [line.strip() for line in str(error).splitlines() if line.strip()] or [""]
            said = (" ".join(lines[:2]) if lines[0].endswith(":") else lines[0])[:200]
            warnings.warn(
                f"the fused summary pass could not be compiled ({type(error).__name__}: {said}); "
                "using the eager reductions",
                RuntimeWarning,
                stacklevel=3,
            )
            for item, row in zip(chunk, rows):
                reduce_eager(item, out[row])
            return
        if rows == list(range(rows[0], rows[0] + len(rows))):
            out[rows[0] : rows[0] + len(rows)].copy_(results[: len(rows)])
        else:
            out[rows] = results[: len(rows)]

    @staticmethod
    def _previous_or_zeros(item: SummaryInput) -> Tensor:
        """The previous delta, or zeros of its size (a stand-in aliasing another input would recompile).

        The recorder always passes its previous-delta buffer (zeros before the first update), so this allocates only for other callers.
        """
        return torch.zeros_like(item.snapshot) if item.previous_delta is None else item.previous_delta

    def _padding_for(self, like: Tensor, long: bool) -> list[SummaryInput]:
        """Stand-ins that fill a last chunk, of a length on the chunk's side of _LONG_LENGTH; every one its own tensor (aliased inputs would recompile)."""
        key = (like.device, like.dtype, long)
        if key not in self._padding:
            length = _LONG_LENGTH if long else 2
            new = lambda: torch.zeros(length, dtype=like.dtype, device=like.device)  # noqa: E731
            self._padding[key] = [SummaryInput(new(), new(), new(), 0.0, new(), new(), new()) for _ in range(self.chunk)]
        return self._padding[key]

    def _g_thetas(self, values: tuple[float, ...], device: torch.device, dtype: torch.dtype) -> Tensor:
        """The chunk's weight-decay coefficients as one tensor, made once per distinct tuple."""
        key = (values, device, dtype)
        if key not in self._weights:
            self._weights[key] = torch.tensor(values, dtype=dtype, device=device)
        return self._weights[key]


def _fusable(item: SummaryInput) -> bool:
    return (
        item.grad is not None
        and item.snapshot.numel() >= _FUSED_MIN_LENGTH
        and all(t is None or t.is_contiguous() for t in (item.theta_after, item.grad, item.v, item.s))
    )


class NativeReducer:
    """``reduce_eager``'s contract for many tensors in one C pass (``tracer/native/summaries.c``).

    Float32 contiguous CPU tensors go through the C pass, all of one update in
    one call on ``torch.get_num_threads()`` threads; any other tensor goes the
    eager way. Its sums are in a fixed order (reductions.h): the same on
    every machine and thread count, and within 1e-6 of the exact sums, so
    it and eager agree within ``FUSED_RTOL`` / ``FUSED_COSINE_ATOL``; ``delta`` and
    ``delta_abs_max`` are equal bit for bit. ``available()`` says whether the
    C library could be built here (``tracer.native.failure()`` says why not).
    """

    def __init__(self, library=None) -> None:
        """``library``: the loaded kernels (``tracer.native.load``); by default ``tracer.native.library()``."""
        from tracer import native

        self._library = library if library is not None else native.library()
        self._item = native.ITEM
        self._copy_item = native.COPY_ITEM

    def available(self) -> bool:
        return self._library is not None

    def copy(self, destinations: Sequence[Tensor], sources: Sequence[Tensor]) -> None:
        """``destinations[i] = sources[i]`` for every i: the snapshot before a step, exact.

        Float32 contiguous CPU pairs go through one C call (streaming stores:
        the snapshot is not read before the step is done, so it is not fetched
        into the cache before it is written); any other pair through torch.
        """
        records, other_destinations, other_sources = [], [], []
        for destination, source in zip(destinations, sources):
            if self._library is not None and native_tensors(destination, source):
                records.append((destination.numel(), destination.data_ptr(), source.data_ptr()))
            else:
                other_destinations.append(destination)
                other_sources.append(source)
        if records:
            table = np.array(records, dtype=self._copy_item)
            if self._library.tracer_copy_f32(table.ctypes.data, len(records), torch.get_num_threads()) != 0:
                raise MemoryError("the native snapshot copy could not allocate its task table")
        if other_destinations:
            torch._foreach_copy_(other_destinations, other_sources)

    def __call__(self, items: Sequence[tuple[int, SummaryInput]], out: Tensor) -> None:
        """The REDUCTIONS of each (row, item) into ``out[row]`` (``out``: (rows, 9) of ``result_dtype``)."""
        native_rows: list[int] = []
        records = []
        for row, item in items:
            if self._library is None or not native_tensors(
                item.snapshot, item.theta_after, item.grad, item.v, item.s, item.previous_delta
            ):
                reduce_eager(item, out[row])
                continue
            native_rows.append(row)
            records.append(
                (
                    item.snapshot.numel(),
                    item.snapshot.data_ptr(),
                    item.theta_after.data_ptr(),
                    0 if item.grad is None else item.grad.data_ptr(),
                    0 if item.v is None else item.v.data_ptr(),
                    0 if item.s is None else item.s.data_ptr(),
                    0 if item.previous_delta is None else item.previous_delta.data_ptr(),
                    item.g_theta,
                )
            )
        if not records:
            return
        table = np.array(records, dtype=self._item)
        results = np.empty((len(records), len(REDUCTIONS)), dtype=np.float64)
        if self._library.tracer_summaries_f32(table.ctypes.data, len(records), results.ctypes.data, torch.get_num_threads()) != 0:
            raise MemoryError("the native summary pass could not allocate its task table")
        reduced = torch.from_numpy(results).to(out.dtype)
        first = native_rows[0]
        if native_rows == list(range(first, first + len(native_rows))):
            out[first : first + len(native_rows)].copy_(reduced)
        else:
            out[native_rows] = reduced


def check_summary_pass(requested: object) -> None:
    """Raise TracerError unless ``requested`` is one of SUMMARY_PASSES."""
    from tracer.errors import TracerError

    if requested not in SUMMARY_PASSES:
        raise TracerError(f"invalid summary_pass {requested!r}; accepted: {', '.join(map(repr, SUMMARY_PASSES))}")


def resolve_summary_pass(requested: str, distributed: bool, native_takes_any: bool = True) -> str:
    """The pass a Recorder runs for ``requested`` (one of SUMMARY_PASSES): "native", "compiled" or "eager".

    ``native_takes_any``: some summarised tensor is one the native pass takes
    (float32, on the CPU); where none is, "auto" is "eager" (the metadata must
    not name a pass that reduced nothing). Raises TracerError for an unknown
    name, for "native" where the C library cannot be built (saying why) or
    takes none of the tensors, and for "compiled" under torch.distributed (a
    compiled chunk reduces every row of a results buffer; with shards some
    rows are another rank's).
    """
    from tracer import native
    from tracer.errors import TracerError

    check_summary_pass(requested)
    if requested == "compiled" and distributed:
        raise TracerError("summary_pass='compiled' is single-process only; under torch.distributed use 'auto', 'native' or 'eager'")
    if requested == "native" and not native_takes_any:
        raise TracerError("summary_pass='native' takes float32 CPU tensors and no summarised tensor is one; use 'auto' or 'eager'")
    if requested in ("auto", "native") and native_takes_any:
        if native.library() is not None:
            return "native"
        if requested == "native":
            raise TracerError(f"summary_pass='native' cannot be built here ({native.failure()}); use 'auto' or 'eager'")
    return "eager" if requested == "auto" else requested
