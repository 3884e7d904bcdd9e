"""C kernels built on first use with the machine's C compiler and loaded through ctypes.

Why C and ctypes: the summary pass must read each parameter's arrays once
(``summaries.c`` says what it computes, ``reductions.h`` why its sums are the
same on every machine); ``steps.c`` is Adam's, SGD's and RMSprop's update in one pass, with those
reductions in the same pass when traced. torch's eager ops take about ten
passes and ``torch.compile``'s loops four per tensor plus a fixed cost per
call; a C loop does it in one. Built without torch's headers and with no
build tool beyond ``cc``, it compiles in seconds (about 9 s measured here,
one compiler per source at once; once per machine and source), and
ctypes releases the GIL during the call. It is built with OpenMP where the
compiler has it, and then runs on torch's own OpenMP threads (in a torch
process the library binds to the libgomp torch loaded), else on pthreads of
its own (``reductions.h``'s ``run_blocked`` says why, with numbers).

The shared library is cached under ``$TRACER_CACHE_DIR`` (default
``$XDG_CACHE_HOME/tracer``, else ``~/.cache/tracer``), named by a hash of the
source, the flags, the compiler's version and this CPU (``-march=native``
code must not run on another CPU sharing the cache). Set ``TRACER_NATIVE=0``
to never build or load it. Where it cannot be built (no compiler, a
read-only cache and temp dir) ``library()`` returns None and ``failure()``
says why; callers fall back to torch ops.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from functools import lru_cache
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
SOURCES = [HERE / "summaries.c", HERE / "steps.c"]
HEADERS = [HERE / "reductions.h"]
FLAGS = ["-O3", "-ffp-contract=off", "-fno-math-errno", "-fPIC", "-shared", "-pthread"]
OPENMP = "-fopenmp"
"""Built with OpenMP where the compiler has it: the kernels then run on the process's OpenMP threads,
which in a torch process are torch's own pool (reductions.h's run_blocked says why); else on pthreads."""
MARCH = "native"
"""The instruction set the library is built for by default: this CPU's (``-march=native``)."""

ITEM = np.dtype(
    [
        ("length", np.int64),
        ("snapshot", np.uint64),
        ("after", np.uint64),
        ("grad", np.uint64),
        ("v", np.uint64),
        ("s", np.uint64),
        ("previous", np.uint64),
        ("g_theta", np.float64),
    ]
)
"""summaries.c's ``item_t``: a tensor's length, its six arrays' addresses (0: absent) and g_theta."""

# Every step item's fields for the summaries computed in its pass, in steps.c's order (0: untraced).
_TRACED_FIELDS = [("delta", np.uint64), ("previous", np.uint64), ("results", np.uint64), ("g_theta", np.float64)]

COPY_ITEM = np.dtype([("length", np.int64), ("destination", np.uint64), ("source", np.uint64)])
"""summaries.c's ``copy_item_t``: a float32 copy's length and its two arrays' addresses."""

ADAM_ITEM = np.dtype(
    [
        ("length", np.int64),
        ("param", np.uint64),
        ("exp_avg", np.uint64),
        ("exp_avg_sq", np.uint64),
        ("max_exp_avg_sq", np.uint64),
        ("grad", np.uint64),
        *_TRACED_FIELDS,
        ("sign", np.float32),
        ("decay", np.float32),
        ("weight_decay", np.float32),
        ("lerp_weight", np.float32),
        ("beta2", np.float32),
        ("one_minus_beta2", np.float32),
        ("bias_correction2_sqrt", np.float32),
        ("eps", np.float32),
        ("neg_step_size", np.float32),
    ],
    align=True,
)
"""steps.c's ``adam_item_t``: a tensor's arrays (0: absent), where its reductions go (0: untraced) and its scalars."""

SGD_ITEM = np.dtype(
    [
        ("length", np.int64),
        ("param", np.uint64),
        ("momentum_buffer", np.uint64),
        ("grad", np.uint64),
        *_TRACED_FIELDS,
        ("sign", np.float32),
        ("weight_decay", np.float32),
        ("momentum", np.float32),
        ("one_minus_dampening", np.float32),
        ("neg_lr", np.float32),
        ("first", np.int32),
        ("nesterov", np.int32),
    ],
    align=True,
)
"""steps.c's ``sgd_item_t``, as ADAM_ITEM for SGD."""

RMSPROP_ITEM = np.dtype(
    [
        ("length", np.int64),
        ("param", np.uint64),
        ("square_avg", np.uint64),
        ("grad_avg", np.uint64),
        ("momentum_buffer", np.uint64),
        ("grad", np.uint64),
        *_TRACED_FIELDS,
        ("sign", np.float32),
        ("weight_decay", np.float32),
        ("alpha", np.float32),
        ("one_minus_alpha", np.float32),
        ("eps", np.float32),
        ("momentum", np.float32),
        ("neg_lr", np.float32),
    ],
    align=True,
)
"""steps.c's ``rmsprop_item_t``, as ADAM_ITEM for RMSprop."""

_failure: str | None = None


def _compiler() -> str | None:
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if name and shutil.which(name):
            return name
    return None


def _cpu() -> str:
    """What identifies this CPU's instruction set: the model and the flags lines of /proc/cpuinfo."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor() or platform.machine()
    wanted = [line for line in lines if line.startswith(("model name", "flags", "Features", "CPU part"))]
    return "\n".join(dict.fromkeys(wanted))


def _cache_dir() -> Path:
    if os.environ.get("TRACER_CACHE_DIR"):
        return Path(os.environ["TRACER_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "tracer"


def _build(compiler: str, march: str, openmp: bool) -> Path:
    """The shared library's path, compiling it first if this source, compiler, flags and CPU have none yet."""
    version = subprocess.run([compiler, "--version"], capture_output=True, text=True).stdout
    texts = [path.read_text() for path in SOURCES + HEADERS]
    flags = [*FLAGS, *([OPENMP] if openmp else []), f"-march={march}"]
    key = hashlib.sha256("\0".join([*texts, " ".join(flags), version, _cpu()]).encode()).hexdigest()[:16]
    for directory in (_cache_dir(), Path(tempfile.gettempdir()) / "tracer-native"):
        target = directory / f"kernels-{key}.so"
        if target.exists():
            return target
        failed = target.with_suffix(".failed")  # this build failed here before: not tried at every start
        if failed.exists():
            raise RuntimeError(failed.read_text())
        try:
            directory.mkdir(parents=True, exist_ok=True)
            # Compiled beside the target under a unique name, then renamed: a concurrent
            # process sees the whole library or none.
            handle, partial = tempfile.mkstemp(suffix=".so.partial", dir=directory)
            os.close(handle)
        except OSError:
            continue
        objects = [f"{partial}.{source.stem}.o" for source in SOURCES]
        try:
            # One compiler per source, at once: the build takes the longest one's time, not their sum.
            compiles = [
                subprocess.Popen([compiler, *flags, "-c", str(source), "-o", obj], stderr=subprocess.PIPE, text=True)
                for source, obj in zip(SOURCES, objects)
            ]
            errors = [process.communicate()[1] for process in compiles]
            failures = [error for process, error in zip(compiles, errors) if process.returncode != 0]
            if not failures:
                result = subprocess.run([compiler, *flags, *objects, "-o", partial], capture_output=True, text=True)
                failures += [result.stderr] if result.returncode != 0 else []
            if failures:
                said = " / ".join(failures[0].split("\n")).strip()[:300] or "no message"  # the compiler's words, on one line
                message = f"{compiler} {' '.join(flags)} failed: {said} (remove {failed} to try again)"
                failed.write_text(message)
                raise RuntimeError(message)
            os.replace(partial, target)
        finally:
            for path in [partial, *objects]:
                if os.path.exists(path):
                    os.remove(path)
        return target
    raise RuntimeError(f"no writable cache directory ({_cache_dir()} or the temp dir)")


def load(march: str = MARCH) -> ctypes.CDLL:
    """Build (once per cache) and load the kernels for ``-march=<march>``; raises RuntimeError where that fails.

    ``library()`` is the one the toolkit uses; another ``march`` (e.g.
    ``"x86-64"``: no vector instructions beyond SSE2, no hardware FMA) is for
    checking that the results do not depend on the instruction set. The
    OpenMP build is tried first, the pthreads one where that cannot be built
    or loaded (a compiler without OpenMP); which one loaded is the result's
    ``threading`` ("openmp" or "pthreads").
    """
    compiler = _compiler()
    if compiler is None:
        raise RuntimeError("no C compiler (cc, gcc or clang) on PATH")
    for threading in ("openmp", "pthreads"):
        try:
            loaded = ctypes.CDLL(str(_build(compiler, march, openmp=threading == "openmp")))
            break
        except (OSError, RuntimeError, subprocess.SubprocessError) as error:
            if threading == "openmp":
                continue
            if isinstance(error, RuntimeError):
                raise
            raise RuntimeError(f"{type(error).__name__}: {error}") from error
    loaded.threading = threading
    # (items, count, [out,] threads) -> 0, or -1 when the kernel could not allocate its task table
    loaded.tracer_summaries_f32.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p, ctypes.c_int]
    for step in (loaded.tracer_adam_f32, loaded.tracer_sgd_f32, loaded.tracer_rmsprop_f32):
        step.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_int]
    for kernel in (loaded.tracer_summaries_f32, loaded.tracer_adam_f32, loaded.tracer_sgd_f32, loaded.tracer_rmsprop_f32):
        kernel.restype = ctypes.c_int
    loaded.tracer_copy_f32.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_int]
    loaded.tracer_copy_f32.restype = ctypes.c_int
    # (counters, is_double, count, values)
    loaded.tracer_count_steps.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p]
    loaded.tracer_count_steps.restype = None
    return loaded


@lru_cache(maxsize=1)
def library() -> ctypes.CDLL | None:
    """The loaded kernels, or None where they cannot be built here (``failure()`` says why)."""
    global _failure
    _failure = None
    if os.environ.get("TRACER_NATIVE", "1") == "0":
        _failure = "TRACER_NATIVE=0"
        return None
    try:
        return load()
    except RuntimeError as error:
        _failure = str(error)
        return None


def failure() -> str | None:
    """Why ``library()`` is None (after it was called); None when it loaded."""
    return _failure
