"""Which summary pass a Recorder runs: ``SUMMARY_PASSES`` and the rule that picks one.

"auto" (the default) is the native pass where the C library builds and some
summarised tensor is one it takes (float32, on the CPU), else the eager one;
"native" and "eager" ask for one; "native" is refused, in one line, where it
cannot run. (A torch.compile pass was measured slower than the native one on
CPUs, and it needs a C++ compiler wherever the native pass finds a C one; no
GPU measurement says it earns its place, so there is none.)
"""

from __future__ import annotations

SUMMARY_PASSES = ("auto", "native", "eager")
"""What ``Recorder(summary_pass=...)`` accepts; "auto" is native where it builds, else eager."""


def check_summary_pass(requested: object) -> None:
    """Raise TracerError unless ``requested`` is one of SUMMARY_PASSES."""
    from tracer.errors import TracerError

    if requested not in SUMMARY_PASSES:
        raise TracerError(f"invalid summary_pass {requested!r}; accepted: {', '.join(map(repr, SUMMARY_PASSES))}")


def resolve_summary_pass(requested: str, native_takes_any: bool = True) -> str:
    """The pass a Recorder runs for ``requested`` (one of SUMMARY_PASSES): "native" or "eager".

    ``native_takes_any``: some summarised tensor is one the native pass takes
    (float32, on the CPU); where none is, "auto" is "eager" (the metadata must
    not name a pass that reduced nothing). Raises TracerError for an unknown
    name, for "native" where the C library cannot be built (saying why) or
    takes none of the tensors.
    """
    from tracer import native
    from tracer.errors import TracerError

    check_summary_pass(requested)
    if requested == "native" and not native_takes_any:
        raise TracerError("summary_pass='native' takes float32 CPU tensors and no summarised tensor is one; use 'auto' or 'eager'")
    if requested in ("auto", "native") and native_takes_any:
        if native.library() is not None:
            return "native"
        if requested == "native":
            raise TracerError(f"summary_pass='native' cannot be built here ({native.failure()}); use 'auto' or 'eager'")
    return "eager" if requested == "auto" else requested
