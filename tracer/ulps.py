"""Units in the last place: the one measure of a difference that ``tracer diff`` and ``tracer check-optimizer`` use.

The *ulp* of a value x in a precision (float16, bfloat16, float32, float64)
is the gap between |x|, rounded to that precision, and the next number the
precision can represent away from zero (numpy's ``spacing``)::

    ulp(x) = 2 ** (max(e, min_exponent) - mantissa_bits)    for 2**e <= |x| < 2**(e + 1)

so below the smallest normal number it is the subnormals' constant gap, at
0 the smallest subnormal, and ``inf`` where |x| rounds beyond the largest
finite number (or is infinite). A difference in ulps is
``|a - b| / ulp(b)`` with b the reference: 0 where a and b are equal
(NaN and NaN included), ``inf`` where only one is NaN.

The precision is the run's: a trace's (``tracer.diff.run_precision``:
float32 when every parameter value is a float32) or a tensor's dtype. No
torch here: a torch dtype is named by its text (``"float32"``).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from tracer.errors import TracerError


class Precision(NamedTuple):
    """A binary floating-point format: its name, explicit mantissa bits and smallest normal exponent."""

    name: str
    mantissa_bits: int
    min_exponent: int
    max_finite: float


PRECISIONS = {
    p.name: p
    for p in (
        Precision("float16", 10, -14, 65504.0),
        Precision("bfloat16", 7, -126, 3.3895313892515355e38),
        Precision("float32", 23, -126, float(np.finfo(np.float32).max)),
        Precision("float64", 52, -1022, float(np.finfo(np.float64).max)),
    )
}
"""Every precision a difference can be counted in, by name."""


def precision_of(kind: object) -> Precision:
    """The Precision of ``kind``: a name ("float32"), a numpy type or dtype, a torch dtype, or a Precision."""
    if isinstance(kind, Precision):
        return kind
    if isinstance(kind, str):
        name = kind
    elif isinstance(kind, (type, np.dtype)) and np.dtype(kind).kind == "f":
        name = np.dtype(kind).name
    else:
        name = str(kind).removeprefix("torch.")  # a torch dtype, without importing torch
    if name not in PRECISIONS:
        raise TracerError(f"no ulps in {kind!r}; accepted: {', '.join(PRECISIONS)}")
    return PRECISIONS[name]


def _rounded(magnitudes: np.ndarray, precision: Precision) -> np.ndarray:
    """``magnitudes`` (float64, >= 0) rounded to nearest in ``precision``, as float64 (inf beyond its range)."""
    with np.errstate(over="ignore", invalid="ignore"):
        if precision.name != "bfloat16":
            return magnitudes.astype(precision.name).astype(np.float64)
        # bfloat16 is float32's upper half: round the float32 bits to nearest, ties to even.
        bits = magnitudes.astype(np.float32).view(np.uint32).astype(np.uint64)
        bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
        return bits.astype(np.uint32).view(np.float32).astype(np.float64)


def ulp(values: np.ndarray | float, precision: object = "float32") -> np.ndarray:
    """The unit in the last place of each value in ``precision`` (float64 out; inf beyond its range, NaN for NaN)."""
    p = precision_of(precision)
    magnitudes = _rounded(np.abs(np.asarray(values, dtype=np.float64)), p)
    _, exponent = np.frexp(magnitudes)  # |x| = m * 2**exponent, m in [0.5, 1): 2**(exponent - 1) <= |x|
    exponent = np.where(magnitudes == 0, p.min_exponent + 1, exponent)  # frexp(0) is (0, 0): 0 is below every normal
    gaps = np.ldexp(1.0, np.maximum(exponent - 1, p.min_exponent) - p.mantissa_bits)
    return np.where(np.isfinite(magnitudes), gaps, magnitudes)


def ulps_between(a: np.ndarray | float, b: np.ndarray | float, precision: object = "float32") -> np.ndarray:
    """|a - b| in ulps of the reference b in ``precision``: 0 where equal (NaN with NaN too), inf where one is NaN."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        difference = np.abs(a - b) / ulp(b, precision)
    same = (a == b) | (np.isnan(a) & np.isnan(b))
    return np.where(same, 0.0, np.where(np.isnan(difference), np.inf, difference))
