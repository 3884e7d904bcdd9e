"""The platform a trace was made on, and a fingerprint of its float32 kernels.

torch's float32 CPU kernels are not all correctly rounded (``torch.sqrt`` is
not, on about 20% of inputs), and which results are off depends on the CPU
and on the code path torch picks for it (``AVX512``, ``AVX2``, ``DEFAULT``;
``ATEN_CPU_CAPABILITY`` overrides the choice). The same run therefore gives
the same trace bit for bit on the same platform only. Every trace records::

    "platform": {"fingerprint": "5c0e9d1a47b2", "cpu_capability": "AVX512",
                 "torch": "2.13.0+cpu", "torch_git": "cf30153c4c13",
                 "machine": "x86_64", "cpu": "AMD EPYC", "system": "Linux"}

``fingerprint`` is the first 12 hex digits of a SHA-256 over the bytes the
float32 kernels a trace depends on produce from fixed inputs (the
elementwise maths of the problems and optimizers, ``linspace``, reductions,
a matrix product). Two traces with the same fingerprint were made by kernels
that round these inputs identically; two with different fingerprints can
differ in the last bit of any update, and chaotic runs amplify that.

Reading a fingerprint (``fingerprint_of``, ``describe_platform``) needs no
torch; measuring one (``platform_meta``, ``kernel_fingerprint``) imports it.
"""

from __future__ import annotations

import functools
import hashlib
import platform as _platform
from typing import Any, Mapping

FINGERPRINT_DIGITS = 12
UNKNOWN = "platform unknown"
"""What a trace without a ``platform`` entry (written before it existed) is called."""


def _cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux), else what the platform module knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return _platform.processor() or _platform.machine() or "unknown"


def _kernel_outputs():
    """The float32 results whose bits the fingerprint hashes (fixed inputs, one thread's worth of work).

    Sizes are odd so that both the vectorised body and the scalar tail of each
    kernel are exercised; every input is built from exact arithmetic
    (``arange`` of small integers, powers of two), so only the kernels under
    test can make the outputs differ between machines.
    """
    import torch

    n = 4099
    ramp = torch.arange(1, n + 1, dtype=torch.float32)
    unit = ramp / 4096.0                              # exact: (0, 1.0007]
    signed = (ramp - 2048.0) / 1024.0                 # exact: [-2, 2]
    matrix = signed[:1024].reshape(32, 32)
    yield torch.linspace(-2.5, 2.5, 512, dtype=torch.float32)   # the orbit data's x
    yield torch.linspace(-1.0, 1.0, n, dtype=torch.float32)
    yield torch.sqrt(unit)                            # the orbit forward, RMSprop, Adam
    yield torch.sqrt(ramp)
    yield torch.rsqrt(unit)
    yield torch.exp(signed)
    yield torch.log(unit)
    yield torch.tanh(signed)                          # activations of user models
    yield torch.sigmoid(signed)
    yield unit / (torch.sqrt(unit) + 1e-8)            # Adam's denominator
    yield unit**2 / 1.5**2
    yield torch.addcmul(unit, signed, signed, value=0.001)
    yield torch.lerp(unit, signed, 0.1)
    yield torch.stack([unit.sum(), signed.mean(), (signed * unit).sum(), torch.linalg.vector_norm(signed)])
    yield torch.nn.functional.mse_loss(unit, signed).reshape(1)
    yield matrix @ matrix
    yield torch.relu(matrix) @ torch.tanh(matrix)


def kernel_fingerprint() -> str:
    """12 hex digits of the SHA-256 of the kernel outputs' bytes on this process's platform."""
    return _measured_fingerprint()


@functools.lru_cache(maxsize=1)
def _measured_fingerprint() -> str:
    import torch

    digest = hashlib.sha256()
    # One thread: the fingerprint describes the kernels, not how a reduction
    # happens to be split between threads (these sizes stay under torch's
    # grain size anyway).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for output in _kernel_outputs():
            digest.update(output.contiguous().numpy().tobytes())
    finally:
        torch.set_num_threads(threads)
    return digest.hexdigest()[:FINGERPRINT_DIGITS]


def platform_meta() -> dict[str, Any]:
    """The ``platform`` entry of a trace's metadata, measured in this process."""
    import torch

    return {
        "fingerprint": kernel_fingerprint(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch": torch.__version__,
        "torch_git": (torch.version.git_version or "")[:12] or None,
        "machine": _platform.machine(),
        "cpu": _cpu_model(),
        "system": _platform.system(),
    }


# ------------------------------------------------------------ reading (torch-free)


def platform_of(meta: Mapping[str, Any]) -> dict[str, Any] | None:
    """The ``platform`` entry of trace metadata, or None for a trace written before it existed."""
    entry = meta.get("platform")
    return entry if isinstance(entry, dict) and entry.get("fingerprint") else None


def fingerprint_of(meta: Mapping[str, Any]) -> str | None:
    """The kernel fingerprint of the platform that wrote a trace, or None (platform unknown).

    A trace whose summaries came from a pass other than eager torch ops (its
    metadata's ``summary_pass``, tracer.summaries) has that pass
    appended, ``37da3e4cd346+native``: summary columns of different passes
    differ in their last bits, so only traces of the same pass compare bit
    for bit.

    Examples:
        >>> fingerprint_of({"platform": {"fingerprint": "37da3e4cd346", "cpu_capability": "AVX2"}})
        '37da3e4cd346'
        >>> fingerprint_of({"platform": {"fingerprint": "37da3e4cd346"}, "summary_pass": "native"})
        '37da3e4cd346+native'
        >>> fingerprint_of({}) is None  # written before traces recorded their platform
        True
    """
    entry = platform_of(meta)
    if entry is None:
        return None
    summary_pass = meta.get("summary_pass")
    fingerprint = str(entry["fingerprint"])
    return fingerprint if summary_pass in (None, "eager") else f"{fingerprint}+{summary_pass}"


def same_platform(meta_a: Mapping[str, Any], meta_b: Mapping[str, Any]) -> bool:
    """Whether two traces were written on platforms with the same fingerprint (unknown is never the same)."""
    a, b = fingerprint_of(meta_a), fingerprint_of(meta_b)
    return a is not None and a == b


def describe_platform(meta: Mapping[str, Any]) -> str:
    """One short phrase: ``5c0e9d1a47b2 (AVX512, AMD EPYC, torch 2.13.0+cpu)`` or ``platform unknown``.

    The fingerprint is ``fingerprint_of``'s: with ``+native`` where the summaries came from the native pass.
    """
    entry = platform_of(meta)
    if entry is None:
        return f"{UNKNOWN} (the trace has no platform entry)"
    details = ", ".join(str(entry[key]) for key in ("cpu_capability", "cpu") if entry.get(key))
    if entry.get("torch"):
        details += f", torch {entry['torch']}"
    return f"{fingerprint_of(meta)} ({details})" if details else str(fingerprint_of(meta))
