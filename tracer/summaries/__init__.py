"""Summary granularity: each reduction and each summary quantity, declared once.

A summarised parameter tensor is reduced, at each recorded update, to the
nine numbers of ``REDUCTION_TABLE``, and its nine trace columns (``QUANTITY_TABLE``,
``<p>.theta_norm`` ...) follow from them. Each row of a table says what the
thing is; a reduction also says how the partial reductions of pieces of a
tensor combine across ranks (``combine``: "sum" or "max") and whether it
reads optimizer state (under ZeRO only the state's owner can reduce it).

The implementations live under this package and are tested against each other:

- ``eager.py``: ``reduce_eager``, torch ops, the reference; ``SummaryInput``,
  what one tensor's reductions read.
- ``native.py``: ``NativeReducer``, every tensor of an update in one C pass
  (``tracer/native/summaries.c``); the fused ``tracer.optim`` steps compute
  the same reductions inside their update with the same C
  (``tracer/native/reductions.h``, included by ``steps.c``).
- ``passes.py``: which of them a Recorder runs (``SUMMARY_PASSES``, the
  eligibility rule ``resolve_summary_pass``).
- ``cells.py``: ``Summary`` and ``summarize``: the quantities from the
  reductions, every tensor of an update at once, in numpy.

This module imports neither torch nor numpy: ``tracer.trace`` takes the
column names from it.
"""

from __future__ import annotations

from typing import NamedTuple


class Reduction(NamedTuple):
    """One number reduced from a summarised tensor at an update."""

    name: str
    definition: str
    combine: str  # how the partials of a tensor's pieces (one per rank) combine: "sum" or "max"
    reads_state: bool = False  # reduced from optimizer state (v or s)


REDUCTION_TABLE: tuple[Reduction, ...] = (
    Reduction("theta_sq", "|theta|^2 of theta before the update", "sum"),
    Reduction("delta_sq", "|delta|^2, delta = theta - theta_next (the update's displacement, lr * d)", "sum"),
    Reduction("delta_abs_max", "max |delta_i|", "max"),
    Reduction("g_dot_delta", "g_raw . delta, g_raw = grad + g_theta * theta (the optimizer's g is sign * g_raw)", "sum"),
    Reduction("g_sq", "|g_raw|^2", "sum"),
    Reduction("previous_dot_delta", "delta_previous . delta (delta_previous: the last measured update's delta)", "sum"),
    Reduction("previous_sq", "|delta_previous|^2, read in the same pass: the cosine's norms come from one place", "sum"),
    Reduction("v_sq", "|v|^2 of the optimizer's first moment after the update", "sum", reads_state=True),
    Reduction("s_sq", "|s|^2 of the optimizer's second moment after the update", "sum", reads_state=True),
)
REDUCTIONS = tuple(r.name for r in REDUCTION_TABLE)
"""The reductions' names, in the order every pass writes them (and reductions.h's enum)."""


class Quantity(NamedTuple):
    """One summary column of a summarised parameter ``<p>``: ``<p>.<name>``."""

    name: str
    definition: str
    reads: tuple[str, ...]  # the reductions it is computed from (cells.summarize)


QUANTITY_TABLE: tuple[Quantity, ...] = (
    Quantity("theta_norm", "|theta| before the update", ("theta_sq",)),
    Quantity("g_norm", "|g| (empty without a gradient)", ("g_sq",)),
    Quantity("v_norm", "|v| (empty where the family keeps no v)", ("v_sq",)),
    Quantity("s_norm", "|s| (empty where the family keeps no s)", ("s_sq",)),
    Quantity("d_norm", "|d| = |delta| / lr (empty while lr = 0)", ("delta_sq",)),
    Quantity("displacement", "|delta| = |theta - theta_next|", ("delta_sq",)),
    Quantity("d_max", "largest |d_i| = max |delta_i| / lr", ("delta_abs_max",)),
    Quantity("cos_d_prev", "cosine of this update's d with the previous update's, clamped to [-1, 1]",
             ("previous_dot_delta", "previous_sq", "delta_sq")),
    Quantity("cos_g_d", "cosine of g with d, clamped to [-1, 1]", ("g_dot_delta", "g_sq", "delta_sq")),
)
SUMMARY_QUANTITIES = tuple(q.name for q in QUANTITY_TABLE)
"""The summary columns' quantity names, in column order."""
