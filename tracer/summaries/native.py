"""The summary reductions in one C pass: ``NativeReducer`` ("native").

One C loop per tensor over memory, every tensor of an update in one call on
torch's thread count (``tracer/native/summaries.c``). Float32 lanes of 16
terms, then float64, in a fixed order (``tracer/native/reductions.h``): the
same on every CPU and thread count, and within 1e-6 of the exact sums.
Float32 CPU tensors only (``tracer.native.steps.native_tensors``); others
go the eager way.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from tracer.native.steps import native_tensors
from tracer.summaries import REDUCTIONS
from tracer.summaries.eager import SummaryInput, reduce_eager


class NativeReducer:
    """``reduce_eager``'s contract for many tensors in one C pass (``tracer/native/summaries.c``).

    Float32 contiguous CPU tensors go through the C pass, all of one update in
    one call on ``torch.get_num_threads()`` threads; any other tensor goes the
    eager way. Its sums are in a fixed order (reductions.h): the same on
    every machine and thread count, and within 1e-6 of the exact sums, so
    it and eager agree within ``PASSES_RTOL`` / ``PASSES_COSINE_ATOL``; ``delta`` and
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
