"""The summary reductions through torch.compile: ``FusedReducer`` ("compiled").

The same arithmetic as ``reduce_eager``, written once as a torch function and
compiled by ``torch.compile`` (inductor: fused C++/OpenMP loops on CPU,
Triton kernels on GPU), over a chunk of ``chunk`` tensors per call: the
compiled function's fixed cost per call (guards, the Python wrapper) is
paid once per chunk instead of once per tensor. Lengths are dynamic and the
last chunk is padded with two-element dummies, so one compilation serves
every chunk of a model (per device, dtype and family: which of v and s
exist). Where compilation is not possible (no C++ compiler, an unsupported
device) it falls back to ``reduce_eager`` once, with a warning.
"""

from __future__ import annotations

import warnings
from typing import Callable, Sequence

import torch
from torch import Tensor

from tracer.summaries.eager import SummaryInput, reduce_eager, result_dtype


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
