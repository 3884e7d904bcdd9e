"""tracer: see what an optimizer does inside.

``import tracer`` stays light (numpy only): ``Recorder`` imports torch on
first use, so code that only reads or compares traces never loads torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tracer.diff import diff_traces
from tracer.trace import load_trace

if TYPE_CHECKING:  # pragma: no cover
    from tracer.recorder import Recorder

__all__ = ["Recorder", "diff_traces", "load_trace"]


def __getattr__(name: str) -> Any:
    if name == "Recorder":
        from tracer.recorder import Recorder

        return Recorder
    raise AttributeError(f"module 'tracer' has no attribute {name!r}")
