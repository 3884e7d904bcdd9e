"""tracer: see what an optimizer does inside.

``import tracer`` stays light (numpy only): ``Recorder`` imports torch on
first use, so code that only reads or compares traces never loads torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tracer.diff import diff_traces
from tracer.trace import load_trace

if TYPE_CHECKING:  # pragma: no cover
    import os
    from typing import Sequence

    from tracer.explorer import Explorer
    from tracer.recorder import Recorder
    from tracer.run import trace_function
    from tracer.trace import Trace

__all__ = ["Recorder", "diff_traces", "explore", "load_trace", "trace_function"]


def explore(traces: Sequence[Trace | str | os.PathLike] | Trace | str | os.PathLike, **options: Any) -> Explorer:
    """The runs of `traces` as one self-contained HTML page; a notebook shows it inline
    (options: `tracer.explorer.explore`)."""
    from tracer.explorer import explore as explore_traces

    return explore_traces(traces, **options)


def __getattr__(name: str) -> Any:
    if name == "Recorder":
        from tracer.recorder import Recorder

        return Recorder
    if name == "trace_function":  # a teacher's own f(x, y), traced in one call
        from tracer.run import trace_function

        return trace_function
    raise AttributeError(f"module 'tracer' has no attribute {name!r}")
