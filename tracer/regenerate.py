"""Regenerating committed traces: a fresh trace that repeats the committed one's numbers leaves its file alone.

A trace's metadata records the platform that wrote it (``tracer.platform``):
the kernel ``fingerprint``, which says what torch's float32 kernels compute,
and a description of the machine (``cpu_capability``, ``cpu``, ``machine``,
``system``, ``torch_git``), which does not. Two CPUs can differ in their
description and still compute the same bits: on an AVX-512 machine,
``ATEN_CPU_CAPABILITY=avx2`` gives the same fingerprint and the same traces,
only ``"cpu_capability": "AVX2"`` in their first line.

`settle` keeps the committed file, byte for byte, when the fresh trace holds
nothing new: the same fingerprint, the same metadata apart from that
description, the same columns, every value bit for bit and the same trailer
(status, final parameters). Anything else (one bit of one value, another
fingerprint, another hyperparameter) replaces it. So `tracer reproduce`
leaves git clean wherever the numbers are the same, and still shows every
change of a number.
"""

from __future__ import annotations

import json
import os
import pathlib
from typing import Any, Mapping

from tracer.errors import TraceFormatError
from tracer.platform import fingerprint_of
from tracer.trace import Trace, load_trace

MACHINE_DESCRIPTION = ("cpu_capability", "cpu", "machine", "system", "torch_git")
"""The ``platform`` fields that describe the machine without changing a bit of what it computes
(the ``fingerprint`` measures that)."""


def _meta_without_description(meta: Mapping[str, Any]) -> str:
    kept = dict(meta)
    if isinstance(kept.get("platform"), dict):
        kept["platform"] = {k: v for k, v in kept["platform"].items() if k not in MACHINE_DESCRIPTION}
    return json.dumps(kept, sort_keys=True)


def _same_values(fresh: Trace, committed: Trace) -> bool:
    return len(fresh) == len(committed) and all(
        fresh[column].tobytes() == committed[column].tobytes() for column in committed.columns)


def same_numbers(fresh: str | os.PathLike, committed: str | os.PathLike) -> bool:
    """Whether two traces hold the same numbers, bit for bit, from kernels with the same fingerprint.

    Args:
        fresh: a trace just written.
        committed: the trace it would replace.

    Returns:
        True when both have the same kernel fingerprint (never when either is
        unknown), the same metadata apart from the platform's description of
        the machine (``MACHINE_DESCRIPTION``), the same columns, every value
        equal in every bit (NaN cells included) and the same trailer.
    """
    a, b = load_trace(fresh), load_trace(committed)
    return (
        fingerprint_of(a.meta) is not None
        and fingerprint_of(a.meta) == fingerprint_of(b.meta)
        and _meta_without_description(a.meta) == _meta_without_description(b.meta)
        and a.columns == b.columns
        and json.dumps(a.trailer, sort_keys=True) == json.dumps(b.trailer, sort_keys=True)
        and _same_values(a, b)
    )


def settle(fresh: str | os.PathLike, committed: str | os.PathLike) -> bool:
    """Put a fresh trace in the committed one's place unless it repeats its numbers.

    Args:
        fresh: a trace just written; it is moved onto `committed` or removed.
        committed: where the trace belongs; it may not exist yet.

    Returns:
        True when the committed file was kept as it was (`same_numbers`),
        False when the fresh trace replaced it or took a place that was empty.
    """
    fresh, committed = pathlib.Path(fresh), pathlib.Path(committed)
    try:
        keep = committed.exists() and same_numbers(fresh, committed)
    except TraceFormatError:  # a committed file that does not read is replaced
        keep = False
    if keep:
        fresh.unlink()
        return True
    os.replace(fresh, committed)
    return False
