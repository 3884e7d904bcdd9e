"""The summary quantities from the reductions: ``Summary`` (one parameter's cells) and ``summarize``.

Each quantity is defined in ``tracer.summaries.QUANTITY_TABLE``; this is the
arithmetic, for every summarised tensor of an update at once, in numpy.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple, Sequence

import numpy as np

from tracer.summaries import REDUCTIONS, SUMMARY_QUANTITIES

# Summary is made for every summarised tensor at every recorded update:
# a NamedTuple (immutable, as a frozen dataclass, but built four times faster).


class Summary(NamedTuple):
    """One summarised parameter's trace cells at one update (fields as ``SUMMARY_QUANTITIES``); None: empty cell."""

    theta_norm: float
    g_norm: float | None
    v_norm: float | None
    s_norm: float | None
    d_norm: float | None
    displacement: float
    d_max: float | None
    cos_d_prev: float | None
    cos_g_d: float | None


assert Summary._fields == SUMMARY_QUANTITIES


class Reduced(NamedTuple):
    """What one update's reduction of one parameter needs afterwards to make its Summary."""

    index: int  # the parameter's
    key: tuple  # its results buffer (device, dtype)
    row: int  # its row there
    lr: float
    sign: float
    has_grad: bool
    has_previous: bool
    has_v: bool
    has_s: bool


def summarize(table: np.ndarray, items: Sequence[Reduced]) -> tuple[dict[int, Summary], bool]:
    """Per item (by parameter index), the Summary of its reductions ``table[i]`` (float64, REDUCTIONS order);
    and whether all are finite.

    All items at once, in numpy: every operation is the one IEEE float64
    operation a per-item computation in Python floats would make, so the
    cells are those bits. Columns an item does not have are empty (None):
    g and all after it without a gradient, v or s where the family keeps
    none, d and the cosines when lr is 0, cos_d_prev without a previous delta.
    """
    if not items:
        return {}, True
    r = {name: table[:, column] for column, name in enumerate(REDUCTIONS)}
    column = dict(zip(Reduced._fields, zip(*items)))  # each field of every item, in item order
    lr, sign = np.array(column["lr"]), np.array(column["sign"])
    has_grad, has_previous = np.array(column["has_grad"]), np.array(column["has_previous"])
    has_v, has_s = np.array(column["has_v"]), np.array(column["has_s"])
    moves = has_grad & (lr > 0)  # d measured
    with np.errstate(all="ignore"):  # the products and quotients of norms that are 0, inf or NaN are masked below
        theta_norm, displacement, g_norm = np.sqrt(r["theta_sq"]), np.sqrt(r["delta_sq"]), np.sqrt(r["g_sq"])
        v_norm, s_norm, previous_norm = np.sqrt(r["v_sq"]), np.sqrt(r["s_sq"]), np.sqrt(r["previous_sq"])
        safe_lr = np.where(moves, lr, 1.0)
        cos_d_prev, cos_d_prev_defined = _cosines(r["previous_dot_delta"], displacement, previous_norm)
        cos_g_d, cos_g_d_defined = _cosines(sign * r["g_dot_delta"], g_norm, displacement)
        values = np.stack([
            theta_norm, g_norm, v_norm, s_norm, displacement / safe_lr, displacement,
            r["delta_abs_max"] / safe_lr, cos_d_prev, cos_g_d,
        ], axis=1)
    present = np.stack([
        np.ones_like(has_grad), has_grad, has_v & has_grad, has_s & has_grad, moves, np.ones_like(has_grad),
        moves, moves & has_previous & cos_d_prev_defined, moves & cos_g_d_defined,
    ], axis=1)
    finite = bool(np.all(np.isfinite(theta_norm)) and np.all(np.isfinite(values[:, 1:4][present[:, 1:4]])))
    cells = values.tolist()
    for i, quantity in zip(*np.nonzero(~present)):
        cells[i][quantity] = None
    # tuple.__new__ makes each Summary from its row in C: Summary._make, a Python call, took 0.8 us a tensor.
    return dict(zip(column["index"], map(partial(tuple.__new__, Summary), cells))), finite


def _cosines(dots: np.ndarray, norms_a: np.ndarray, norms_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """dot / (|a| |b|) clamped to [-1, 1], and where it is defined: both norms nonzero and their product finite.

    The dot product and the norms are reduced separately in the parameters'
    dtype, so parallel vectors can come out a few ulp beyond 1, which no
    reader should see. A NaN quotient would clamp to -1, as Python's
    ``min(1.0, max(-1.0, x))`` does; it needs a NaN or infinite input,
    which makes a norm NaN or infinite, so the cosine is undefined anyway.
    """
    product = norms_a * norms_b
    defined = (norms_a != 0) & (norms_b != 0) & np.isfinite(product)
    quotient = dots / product
    quotient = np.where(quotient > -1.0, quotient, -1.0)
    return np.where(quotient < 1.0, quotient, 1.0), defined
