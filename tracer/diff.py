"""Compare two trace files with tolerances: ``tracer diff A B`` and ``diff_traces``.

Two traces are equal when they have the same columns and row count, every
compared column agrees at every update within

    |a - b| <= atol + rtol * |b| + ulps * ulp(b)

(NaN equals NaN, an empty cell equals an empty cell, ``-0.0`` equals ``0.0``),
and their trailers agree (status, ``diverged_at``, ``final`` within the same
tolerance). The default tolerance is zero: bit-for-bit equality.

``ulp(b)`` is the unit in the last place of ``b`` (``tracer.ulps``) in the run's precision: the
narrower of float32 and float64 that holds every value of the traced
parameters (``*.theta``, ``*.theta_norm``) exactly, float32 for every
catalogue run. Columns computed in float64 from float32 tensors (``u``,
``step_size``, ``displacement``) are measured in the same float32 ulps: their
inputs carry float32 precision, not float64.

Traces record the platform that made them (``tracer.platform``): torch's
float32 kernels round differently on different CPUs, so two traces of the
same run agree bit for bit only when their kernel fingerprints match. The
report says when they do not, and how the difference grows: the first update
where any column differs in any bit, and the largest difference of the
parameters in each decade of updates (1-9, 10-99, ...), whatever the
tolerance, so a tolerance never hides where and how fast two runs part.

Metadata differences are always reported but, by default, do not make traces
unequal: the same run traced with ours and with torch's optimizer differs in
``optimizer.class`` and ``label`` while every number agrees, and the
``versions`` and ``platform`` blocks differ between machines (the platform
is reported on its own). ``strict_meta=True`` (``--strict-meta``) counts
every metadata difference except those two.

Exit status of ``tracer diff``: 0 equal, 1 different, 2 unusable input.
This module never imports torch.
"""

from __future__ import annotations

import argparse
import fnmatch
import math
import os
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from tracer.errors import TracerError
from tracer.platform import describe_platform, fingerprint_of
from tracer.trace import Trace, load_trace, printable
from tracer.ulps import ulp

ABSENT = "<absent>"
"""Stands for a metadata key one trace lacks, in TraceDiff.meta and the report."""

IGNORED_META = ("versions", "platform")
"""Metadata keys that never count as a difference, even with strict_meta (the platform is reported apart)."""

PRECISIONS = (np.float32, np.float64)
"""Candidate precisions of a run, narrowest first (see ``run_precision``). float16 and bfloat16 runs
count in float32 ulps, which are finer than theirs: a tolerance in ulps is then stricter, never looser."""


@dataclass(frozen=True)
class Tolerance:
    """How far two traces may differ: ``|a - b| <= atol + rtol * |b| + ulps * ulp(b)``.

    ``ulps`` counts units in the last place of the run's precision (float32
    for a float32 run, see ``run_precision``); all zero means bit for bit.

    Examples:
        >>> str(Tolerance())
        'bit for bit'
        >>> print(Tolerance(ulps=4, atol=1e-6))
        ulps=4, atol=1e-06
        >>> Tolerance(ulps=-1)
        Traceback (most recent call last):
        ...
        tracer.errors.TracerError: invalid ulps -1; accepted: an integer >= 0
    """

    ulps: int = 0
    rtol: float = 0.0
    atol: float = 0.0

    def __post_init__(self) -> None:
        if isinstance(self.ulps, bool) or not isinstance(self.ulps, (int, np.integer)) or self.ulps < 0:
            raise TracerError(f"invalid ulps {self.ulps!r}; accepted: an integer >= 0")
        _check_tolerance("rtol", self.rtol)
        _check_tolerance("atol", self.atol)

    @property
    def exact(self) -> bool:
        """Whether this tolerance asks for bit-for-bit equality."""
        return self.ulps == 0 and self.rtol == 0 and self.atol == 0

    def __str__(self) -> str:
        if self.exact:
            return "bit for bit"
        parts = [f"ulps={self.ulps}"] if self.ulps else []
        parts += [f"rtol={self.rtol!r}"] if self.rtol else []
        parts += [f"atol={self.atol!r}"] if self.atol else []
        return ", ".join(parts)


@dataclass(frozen=True)
class Drift:
    """Where two traces part and how fast: bitwise, whatever the tolerance.

    ``first_update`` is the first update where any compared column differs in
    any bit (None: none does), ``first_column`` that column. ``by_decade``
    holds, for updates 1-9, 10-99, 100-999, ..., the largest ``|a - b|`` over
    the parameter columns (``*.theta``, else ``*.theta_norm``) and the same in
    ulps of the run's precision.
    """

    first_update: int | None
    first_column: str | None
    parameters: tuple[str, ...]
    by_decade: tuple[tuple[int, int, float, float], ...]  # (first update, last update, max |diff|, max ulps)

    def report(self, precision: str) -> list[str]:
        if self.first_update is None:
            return ["drift: none, every compared value is identical bit for bit"]
        lines = [f"drift: first differs at update {self.first_update} ({self.first_column})"]
        if self.by_decade and self.parameters:
            shown = ", ".join(self.parameters[:4]) + (", ..." if len(self.parameters) > 4 else "")
            lines.append(f"  largest parameter difference ({shown}) per decade of updates:")
            for first, last, absolute, ulps in self.by_decade:
                lines.append(f"  updates {first:>6}-{last:<6} max |diff| {_number(absolute):>12}"
                             f"  = {_ulps(ulps)} {precision} ulps")
        return lines


@dataclass(frozen=True)
class ColumnDiff:
    """How one column differs: first update beyond tolerance, how many rows, the largest differences."""

    column: str
    first_update: int
    rows: int
    max_abs: float  # over the rows where both sides are numbers; NaN when there are none
    max_rel: float
    one_sided: int = 0  # rows where one side is empty (or NaN) and the other a number


@dataclass(frozen=True)
class TraceDiff:
    """The differences between trace ``a`` and trace ``b``; ``equal`` says whether they count as the same."""

    a: str
    b: str
    rtol: float
    atol: float
    strict_meta: bool
    ulps: int = 0
    precision: str = "float32"
    platform_a: str | None = None  # kernel fingerprints; None: platform unknown
    platform_b: str | None = None
    platforms: tuple[str, str] = ("", "")  # how each platform is described in the report
    drift: Drift | None = None
    meta: tuple[tuple[str, Any, Any], ...] = ()
    only_in_a: tuple[str, ...] = ()
    only_in_b: tuple[str, ...] = ()
    rows_a: int = 0
    rows_b: int = 0
    columns: tuple[ColumnDiff, ...] = ()
    trailer: tuple[tuple[str, Any, Any], ...] = ()
    compared: tuple[str, ...] = field(default=(), repr=False)
    common_updates: int | None = None  # the traces number different updates (every=k): rows compared by update

    @property
    def counted_meta(self) -> tuple[tuple[str, Any, Any], ...]:
        """The metadata differences that count toward inequality."""
        if not self.strict_meta:
            return ()
        return tuple(m for m in self.meta if m[0].split(".")[0] not in IGNORED_META)

    @property
    def same_platform(self) -> bool:
        """Whether both traces carry the same kernel fingerprint (an unknown platform is never the same)."""
        return self.platform_a is not None and self.platform_a == self.platform_b

    @property
    def tolerance(self) -> Tolerance:
        return Tolerance(ulps=self.ulps, rtol=self.rtol, atol=self.atol)

    @property
    def equal(self) -> bool:
        return not (
            self.counted_meta
            or self.only_in_a
            or self.only_in_b
            or self.rows_a != self.rows_b
            or self.columns
            or self.trailer
        )

    def report(self) -> str:
        """A readable account of every difference, ending with the verdict."""
        lines = [f"A: {self.a} ({self.rows_a} updates)", f"B: {self.b} ({self.rows_b} updates)"]
        if self.same_platform:
            lines.append(f"platform: the same for both, {self.platforms[0]}")
        else:
            lines += [
                "platforms DIFFER: bit-for-bit equality is not expected (float32 kernels round differently);",
                f"  A: {self.platforms[0]}",
                f"  B: {self.platforms[1]}",
                "  compare within a measured tolerance: --ulps N (units in the last place of "
                f"{self.precision}) and/or --rtol/--atol",
            ]
        if self.meta:
            counted = "" if self.strict_meta else " (reported only; --strict-meta counts them)"
            lines.append(f"metadata differs{counted}:")
            lines += [f"  {key}: A={_short(a)} B={_short(b)}" for key, a, b in self.meta]
        if self.only_in_a:
            lines.append(f"columns only in A: {', '.join(self.only_in_a)}")
        if self.only_in_b:
            lines.append(f"columns only in B: {', '.join(self.only_in_b)}")
        if self.common_updates is not None:
            lines.append(
                f"the traces hold different updates (A {self.rows_a} rows, B {self.rows_b}; a sampled trace, "
                f"every=k?): compared the {self.common_updates} updates both hold, matched by update number"
            )
        elif self.rows_a != self.rows_b:
            lines.append(
                f"row counts differ: A has {self.rows_a}, B has {self.rows_b} (compared the first {min(self.rows_a, self.rows_b)})"
            )
        for key, a, b in self.trailer:
            lines.append(f"trailer {key} differs: A={_short(a)} B={_short(b)}")
        if self.columns:
            width = max(len("column"), *(len(c.column) for c in self.columns))
            lines.append(
                f"{'column':<{width}}  first update  rows differing  max abs diff  max rel diff  empty on one side"
            )
            for c in self.columns:
                lines.append(
                    f"{c.column:<{width}}  {c.first_update:>12}  {c.rows:>14}  {_number(c.max_abs):>12}"
                    f"  {_number(c.max_rel):>12}  {c.one_sided:>17}"
                )
        if self.drift is not None:
            lines += self.drift.report(self.precision)
        tolerance = f"rtol={self.rtol!r}, atol={self.atol!r}"
        if self.ulps:
            tolerance += f", ulps={self.ulps} ({self.precision} ulps)"
        if self.equal:
            lines.append(f"equal: {len(self.compared)} columns agree at every update ({tolerance})")
        else:
            lines.append(f"different ({tolerance})")
        # Each entry is one line: what the files say (keys, column names, platforms) cannot break it or drive the terminal.
        return "\n".join(printable(line) for line in lines)


def _number(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.6g}"


def _ulps(value: float) -> str:
    return "inf" if math.isinf(value) else f"{value:.3g}"


def _short(value: Any, limit: int = 80) -> str:
    text = value if value is ABSENT else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _flatten(meta: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(meta, dict):
        flat: dict[str, Any] = {}
        for key, value in meta.items():
            flat.update(_flatten(value, f"{prefix}{key}."))
        return flat if flat or not prefix else {prefix[:-1]: meta}
    return {prefix[:-1]: meta}


def _meta_differences(a: dict, b: dict) -> tuple[tuple[str, Any, Any], ...]:
    flat_a, flat_b = _flatten(a), _flatten(b)
    out = []
    for key in sorted(set(flat_a) | set(flat_b)):
        if key not in flat_a or key not in flat_b:
            out.append((key, flat_a.get(key, ABSENT), flat_b.get(key, ABSENT)))
        elif flat_a[key] != flat_b[key]:
            out.append((key, flat_a[key], flat_b[key]))
    return tuple(out)


def _select(columns: Sequence[str] | None, a: Trace, b: Trace) -> tuple[list[str], list[str], list[str]]:
    """(compared, only in a, only in b), restricted to the requested names or glob patterns."""
    if columns is None:
        wanted_a, wanted_b = list(a.columns), list(b.columns)
    else:
        wanted_a, wanted_b = [], []
        for pattern in columns:
            # A column's own name first: "weight[0].theta" is a name, not the glob class [0].
            exact = pattern in a.columns or pattern in b.columns
            hits_a = [pattern] if pattern in a.columns else [] if exact else fnmatch.filter(a.columns, pattern)
            hits_b = [pattern] if pattern in b.columns else [] if exact else fnmatch.filter(b.columns, pattern)
            if not hits_a and not hits_b:
                raise TracerError(f"column {pattern!r} is in neither trace ({a.path}, {b.path})")
            wanted_a += [c for c in hits_a if c not in wanted_a]
            wanted_b += [c for c in hits_b if c not in wanted_b]
    in_b = set(wanted_b)
    in_a = set(wanted_a)
    compared = [c for c in wanted_a if c in in_b]
    return compared, [c for c in wanted_a if c not in in_b], [c for c in wanted_b if c not in in_a]


def run_precision(trace: Trace) -> type:
    """float32 when every parameter value of ``trace`` is a float32 exactly, else (or with none traced) float64."""
    names = [c for c in trace.columns if c.endswith((".theta", ".theta_norm"))]
    values = np.concatenate([trace[c] for c in names]) if names else np.empty(0)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return np.float64
    for precision in PRECISIONS:
        with np.errstate(over="ignore"):
            if np.array_equal(values.astype(precision).astype(np.float64), values):
                return precision
    return np.float64


def _differing(a: np.ndarray, b: np.ndarray, rtol: float, atol: float, ulps: int = 0,
               precision: type = np.float32) -> np.ndarray:
    with np.errstate(invalid="ignore", over="ignore"):
        allowed = atol + rtol * np.abs(b)
        if ulps:
            allowed = allowed + ulps * ulp(b, precision)
        close = (a == b) | (np.isnan(a) & np.isnan(b)) | (np.abs(a - b) <= allowed)
    return ~close


def _column_diff(name: str, a: np.ndarray, b: np.ndarray, updates: np.ndarray, rtol: float, atol: float,
                 ulps: int = 0, precision: type = np.float32) -> ColumnDiff | None:
    differs = _differing(a, b, rtol, atol, ulps, precision)
    if not differs.any():
        return None
    rows = np.flatnonzero(differs)
    one_sided = np.isnan(a[rows]) != np.isnan(b[rows])
    both = rows[~one_sided]
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        absolute = np.abs(a[both] - b[both])
        absolute[np.isnan(absolute)] = np.inf  # inf against -inf, or inf against a number
        relative = absolute / np.abs(b[both])
        relative[np.isnan(relative)] = np.inf
    first = updates[rows[0]]
    first_update = int(first) if math.isfinite(first) else int(rows[0]) + 1
    max_abs = float(absolute.max()) if both.size else math.nan
    max_rel = float(relative.max()) if both.size else math.nan
    return ColumnDiff(name, first_update, int(rows.size), max_abs, max_rel, int(one_sided.sum()))


def _drift(a: Trace, b: Trace, compared: Sequence[str], rows: int, updates: np.ndarray, precision: type) -> Drift:
    """Where the compared columns first differ in any bit, and the parameters' largest difference per decade."""
    first_row, first_column = rows, None
    for name in compared:
        differs = _differing(a[name][:rows], b[name][:rows], 0.0, 0.0)
        if differs.any():
            row = int(np.argmax(differs))
            if row < first_row:
                first_row, first_column = row, name
    if first_column is None:
        return Drift(None, None, (), ())
    parameters = tuple(c for c in compared if c.endswith(".theta")) or tuple(
        c for c in compared if c.endswith(".theta_norm"))
    by_decade = []
    if parameters:
        with np.errstate(invalid="ignore", over="ignore"):
            absolute = np.stack([np.abs(a[c][:rows] - b[c][:rows]) for c in parameters])
            in_ulps = absolute / np.stack([ulp(b[c][:rows], precision) for c in parameters])
        absolute = np.nanmax(np.where(np.isnan(absolute), -np.inf, absolute), axis=0)
        in_ulps = np.nanmax(np.where(np.isnan(in_ulps), -np.inf, in_ulps), axis=0)
        first, number = 1, 0
        while first <= rows:
            last = min(10 ** (number + 1) - 1, rows)
            window = slice(first - 1, last)
            by_decade.append((int(updates[first - 1]) if math.isfinite(updates[first - 1]) else first,
                              int(updates[last - 1]) if math.isfinite(updates[last - 1]) else last,
                              float(max(absolute[window].max(), 0.0)), float(max(in_ulps[window].max(), 0.0))))
            first, number = last + 1, number + 1
    first = updates[first_row]
    return Drift(int(first) if math.isfinite(first) else first_row + 1, first_column, parameters, tuple(by_decade))


def _trailer_differences(a: Trace, b: Trace, rtol: float, atol: float, ulps: int = 0,
                         precision: type = np.float32) -> tuple[tuple[str, Any, Any], ...]:
    out = []
    if a.status != b.status:
        out.append(("status", a.status, b.status))
    if a.diverged_at != b.diverged_at:
        out.append(("diverged_at", a.diverged_at, b.diverged_at))
    final_a, final_b = a.final, b.final
    if (final_a is None) != (final_b is None):
        out.append(("final", final_a, final_b))
    elif final_a is not None and final_b is not None:
        if set(final_a) != set(final_b):
            out.append(("final", sorted(final_a), sorted(final_b)))
        else:
            keys = sorted(final_a)
            values_a = np.array([final_a[k] for k in keys], dtype=np.float64)
            values_b = np.array([final_b[k] for k in keys], dtype=np.float64)
            for key, bad in zip(keys, _differing(values_a, values_b, rtol, atol, ulps, precision)):
                if bad:
                    out.append((f"final.{key}", final_a[key], final_b[key]))
    return tuple(out)


def _check_tolerance(name: str, value: float) -> float:
    value = float(value)
    if not (value >= 0 and math.isfinite(value)):
        raise TracerError(f"invalid {name} {value!r}; accepted: a finite number >= 0")
    return value


def diff_traces(
    a: Trace | str | os.PathLike,
    b: Trace | str | os.PathLike,
    *,
    rtol: float = 0.0,
    atol: float = 0.0,
    columns: Sequence[str] | None = None,
    strict_meta: bool = False,
    ulps: int = 0,
) -> TraceDiff:
    """Compare trace ``a`` with trace ``b`` (paths or loaded Traces).

    Args:
        a: the first trace (a path, or a Trace from ``load_trace``).
        b: the second trace, the reference for relative tolerances.
        rtol: relative tolerance. A value differs when
            ``|a - b| > atol + rtol * |b| + ulps * ulp(b)``, ``ulp`` in the
            run's precision (``run_precision`` of ``b``: float32 for a float32
            run); all three zero (the default) means bit for bit.
        atol: absolute tolerance (see ``rtol``).
        ulps: tolerance in units in the last place of the run's precision (see ``rtol``).
        columns: names or glob patterns (``"Wa.*"``) of the columns to
            compare; default all. A name matching neither trace raises TracerError.
        strict_meta: count metadata differences (except ``versions`` and ``platform``) toward
            inequality; by default they are reported only.

    Returns:
        The comparison: ``.equal``, the first differing update of each
        column, the drift, and ``.report()`` as ``tracer diff`` prints it.
    """
    ulps = Tolerance(ulps=ulps).ulps
    rtol, atol = _check_tolerance("rtol", rtol), _check_tolerance("atol", atol)
    trace_a = a if isinstance(a, Trace) else load_trace(a)
    trace_b = b if isinstance(b, Trace) else load_trace(b)
    precision = run_precision(trace_b)
    compared, only_a, only_b = _select(columns, trace_a, trace_b)
    rows_a, rows_b = len(trace_a), len(trace_b)
    trace_a, trace_b, common_updates = _matched_by_update(trace_a, trace_b)
    rows = min(len(trace_a), len(trace_b))
    if "update" in trace_a:
        updates = trace_a["update"][:rows]
    else:
        updates = np.arange(1, rows + 1, dtype=np.float64)
    column_diffs = []
    for name in compared:
        found = _column_diff(name, trace_a[name][:rows], trace_b[name][:rows], updates, rtol, atol, ulps, precision)
        if found is not None:
            column_diffs.append(found)
    return TraceDiff(
        a=str(trace_a.path),
        b=str(trace_b.path),
        rtol=rtol,
        atol=atol,
        strict_meta=strict_meta,
        ulps=ulps,
        precision=np.dtype(precision).name,
        platform_a=fingerprint_of(trace_a.meta),
        platform_b=fingerprint_of(trace_b.meta),
        platforms=(describe_platform(trace_a.meta), describe_platform(trace_b.meta)),
        drift=_drift(trace_a, trace_b, compared, rows, updates, precision),
        meta=tuple(m for m in _meta_differences(trace_a.meta, trace_b.meta) if m[0].split(".")[0] != "platform"),
        only_in_a=tuple(only_a),
        only_in_b=tuple(only_b),
        rows_a=rows_a,
        rows_b=rows_b,
        columns=tuple(column_diffs),
        trailer=_trailer_differences(trace_a, trace_b, rtol, atol, ulps, precision) if columns is None else (),
        compared=tuple(compared),
        common_updates=common_updates,
    )


def _matched_by_update(a: Trace, b: Trace) -> tuple[Trace, Trace, int | None]:
    """Rows compared by update number when the two traces hold different updates; else the traces as they are.

    A trace recorded with ``every=k`` holds updates 1, 1 + k, ...; compared
    with a trace of every update, row i of one is not row i of the other, so
    the rows of the updates both hold are compared (and their count returned).
    """
    if "update" not in a or "update" not in b:
        return a, b, None
    updates_a, updates_b = a["update"], b["update"]
    shared = min(len(updates_a), len(updates_b))
    if np.array_equal(updates_a[:shared], updates_b[:shared]):
        return a, b, None
    common, rows_a, rows_b = np.intersect1d(updates_a, updates_b, assume_unique=True, return_indices=True)
    return a.take(rows_a), b.take(rows_b), len(common)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Options of ``tracer diff``."""
    parser.add_argument("a", help="first trace file")
    parser.add_argument("b", help="second trace file (relative tolerance is taken against its values)")
    parser.add_argument("--rtol", type=float, default=0.0, help="relative tolerance (default 0: bit for bit)")
    parser.add_argument("--atol", type=float, default=0.0, help="absolute tolerance (default 0)")
    parser.add_argument(
        "--ulps", type=int, default=0,
        help="tolerance in units in the last place of the run's precision (float32 for a float32 run; default 0)",
    )
    parser.add_argument(
        "--columns", nargs="+", metavar="COLUMN", help="compare only these columns (names or globs like 'Wa.*')"
    )
    parser.add_argument(
        "--strict-meta", action="store_true", help="count metadata differences (except versions and platform) as differences"
    )
    parser.epilog = "exit status: 0 equal, 1 different, 2 unusable input"


def run_command(args: argparse.Namespace) -> int:
    """Print the report; 0 when the traces are equal within tolerance, 1 otherwise."""
    result = diff_traces(
        args.a, args.b, rtol=args.rtol, atol=args.atol, ulps=args.ulps, columns=args.columns,
        strict_meta=args.strict_meta,
    )
    print(result.report())
    return 0 if result.equal else 1
