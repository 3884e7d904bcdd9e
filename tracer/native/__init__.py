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
``$XDG_CACHE_HOME/tracer``, else ``~/.cache/tracer``; then
``$TMPDIR/tracer-native-<uid>``), named by a hash of the
source, the flags, the compiler's version and this CPU (``-march=native``
code must not run on another CPU sharing the cache). Loading a library runs
its code, so the cache is private: a folder is used only when it is this
user's and nobody else can write to it (created with mode 0700; any other is
skipped with one warning), and a cached library is loaded only when it is
this user's, not writable by others, and has the SHA-256 recorded when it was
built. A library that fails those checks or fails to load is a cache miss:
removed and built again. A failed build is noted beside it for
FAILURE_RETRY_S (with the compiler's words), and the compiler runs under a
timeout. Set ``TRACER_NATIVE=0`` to never build or load it. Where it cannot
be built (no compiler, no private writable cache) ``library()`` returns None
and ``failure()`` says why; callers fall back to torch ops.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import platform
import shutil
import stat
import subprocess
import tempfile
import time
import warnings
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
COMPILE_TIMEOUT_S = 300.0
"""How long the compiler may run (one build takes about 9 s here); ``$TRACER_CC_TIMEOUT`` overrides it."""
FAILURE_RETRY_S = 24 * 3600.0
"""How long a failed build is remembered (not retried at every start): a full disk or a fixed compiler is tried again."""

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


def _cache_dirs() -> list[Path]:
    """Where the library may be cached, in order: ``$TRACER_CACHE_DIR`` (default ``$XDG_CACHE_HOME/tracer``,
    else ``~/.cache/tracer``), then a per-user folder in the temp dir."""
    if os.environ.get("TRACER_CACHE_DIR"):
        first = Path(os.environ["TRACER_CACHE_DIR"])
    else:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        first = Path(base) / "tracer"
    return [first, Path(tempfile.gettempdir()) / f"tracer-native-{os.geteuid()}"]


def _unsafe(path: Path, info: os.stat_result) -> str | None:
    """Why code at ``path`` could be another user's (owned by someone else, or writable by others), or None."""
    if info.st_uid != os.geteuid():
        return f"{path} is owned by uid {info.st_uid}, not this user ({os.geteuid()})"
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"{path} is writable by others (mode {stat.S_IMODE(info.st_mode):o})"
    return None


def _private(directory: Path) -> str | None:
    """Make ``directory`` (mode 0700 when created here); None when it is this user's alone, else why not."""
    try:
        directory.parent.mkdir(parents=True, exist_ok=True)
        directory.mkdir(mode=0o700, exist_ok=True)
        info = os.stat(directory)
    except OSError as error:
        return f"{directory}: {error.strerror or error}"
    if not stat.S_ISDIR(info.st_mode):
        return f"{directory} is not a directory"
    return _unsafe(directory, info)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _cached(target: Path) -> Path | None:
    """``target`` when it is the library this user built there (owner, mode and the hash recorded at build
    time all check out); else None, the bad file removed so that it is rebuilt."""
    digest = target.with_suffix(".sha256")
    try:
        info = os.lstat(target)
    except FileNotFoundError:
        return None
    try:
        good = (stat.S_ISREG(info.st_mode) and _unsafe(target, info) is None
                and digest.read_text().strip() == _digest(target))
    except OSError:
        good = False
    if good:
        return target
    _forget(target)  # truncated, replaced or not ours: a cache miss, never loaded
    return None


def _forget(target: Path) -> None:
    for path in (target, target.with_suffix(".sha256")):
        try:
            path.unlink()
        except OSError:
            pass


def _noted_failure(failed: Path) -> str | None:
    """The message of a recent failed build at this key; None once it is older than FAILURE_RETRY_S (retried)."""
    try:
        note = json.loads(failed.read_text())
        if time.time() - float(note["time"]) < FAILURE_RETRY_S:
            return str(note["message"])
    except (OSError, ValueError, KeyError, TypeError):
        pass  # unreadable or of an older form: tried again
    return None


def _note_failure(failed: Path, message: str) -> None:
    try:
        failed.write_text(json.dumps({"time": time.time(), "message": message}))
    except OSError:
        pass  # a full disk: not noted, tried again at the next start


def _run(command: list[str], timeout: float) -> tuple[int, str]:
    """(exit status, stderr) of ``command``, killed after ``timeout`` seconds (RuntimeError then)."""
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"{command[0]} did not finish in {timeout:g} s (TRACER_CC_TIMEOUT sets the limit)") from None
    return result.returncode, result.stderr


def _compile_timeout() -> float:
    try:
        return float(os.environ.get("TRACER_CC_TIMEOUT", COMPILE_TIMEOUT_S))
    except ValueError:
        return COMPILE_TIMEOUT_S


def _build(compiler: str, march: str, openmp: bool) -> Path:
    """The shared library's path, compiling it first if this source, compiler, flags and CPU have none yet."""
    timeout = _compile_timeout()
    try:
        version = subprocess.run([compiler, "--version"], capture_output=True, text=True, timeout=timeout).stdout
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"{compiler} --version did not finish in {timeout:g} s") from None
    texts = [path.read_text() for path in SOURCES + HEADERS]
    flags = [*FLAGS, *([OPENMP] if openmp else []), f"-march={march}"]
    key = hashlib.sha256("\0".join([*texts, " ".join(flags), version, _cpu()]).encode()).hexdigest()[:16]
    refused = []
    for directory in _cache_dirs():
        problem = _private(directory)
        if problem is not None:  # another user could put code there: not used
            refused.append(problem)
            continue
        target = directory / f"kernels-{key}.so"
        if refused:
            warnings.warn(f"tracer: native kernels not cached where another user could replace them "
                          f"({refused[0]}); using {directory}", RuntimeWarning, stacklevel=2)
        if _cached(target) is not None:
            return target
        failed = target.with_suffix(".failed")  # this build failed here lately: not tried at every start
        noted = _noted_failure(failed)
        if noted is not None:
            raise RuntimeError(noted)
        try:
            # Compiled beside the target under a unique name, then renamed: a concurrent
            # process sees the whole library or none.
            handle, partial = tempfile.mkstemp(suffix=".so.partial", dir=directory)
            os.close(handle)
        except OSError as error:
            refused.append(f"{directory}: {error.strerror or error}")
            continue
        objects = [f"{partial}.{source.stem}.o" for source in SOURCES]
        try:
            failures = _compile(compiler, flags, objects, partial, timeout)
            if failures:
                said = " / ".join(failures[0].split("\n")).strip()[:300] or "no message"  # the compiler's words, on one line
                retry = time.strftime("%Y-%m-%d %H:%M", time.localtime(time.time() + FAILURE_RETRY_S))
                message = (f"{compiler} {' '.join(flags)} failed: {said} "
                           f"(not tried again before {retry}, or remove {failed} to try now)")
                _note_failure(failed, message)
                raise RuntimeError(message)
            digest = _digest(Path(partial))
            target.with_suffix(".sha256").write_text(digest + "\n")
            os.replace(partial, target)
        except OSError as error:  # a full disk while writing the library or its hash
            raise RuntimeError(f"cannot build the kernels in {directory}: {error.strerror or error}") from None
        finally:
            for path in [partial, *objects]:
                if os.path.exists(path):
                    os.remove(path)
        return target
    raise RuntimeError(f"no private writable cache directory: {'; '.join(refused)}")


def _compile(compiler: str, flags: list[str], objects: list[str], output: str, timeout: float) -> list[str]:
    """Compile every source (one compiler each, at once) and link them into ``output``; the errors, if any."""
    deadline = time.monotonic() + timeout
    compiles = [
        subprocess.Popen([compiler, *flags, "-c", str(source), "-o", obj], stderr=subprocess.PIPE, text=True)
        for source, obj in zip(SOURCES, objects)
    ]
    try:
        errors = [process.communicate(timeout=max(deadline - time.monotonic(), 0.0))[1] for process in compiles]
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"{compiler} did not finish in {timeout:g} s (TRACER_CC_TIMEOUT sets the limit)") from None
    finally:
        for process in compiles:
            if process.poll() is None:
                process.kill()
                process.wait()
    failures = [error for process, error in zip(compiles, errors) if process.returncode != 0]
    if not failures:
        status, error = _run([compiler, *flags, *objects, "-o", output], max(deadline - time.monotonic(), 1.0))
        failures += [error] if status != 0 else []
    return failures


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
            loaded = _load_checked(compiler, march, openmp=threading == "openmp")
            break
        except (OSError, RuntimeError, AttributeError, subprocess.SubprocessError) as error:
            if threading == "openmp":
                continue
            if isinstance(error, RuntimeError):
                raise
            raise RuntimeError(f"{type(error).__name__}: {error}") from error
    loaded.threading = threading
    return loaded


def _load_checked(compiler: str, march: str, openmp: bool) -> ctypes.CDLL:
    """The library loaded with its entry points typed; a cached file that does not load is rebuilt once."""
    for attempt in (1, 2):
        target = _build(compiler, march, openmp)
        try:
            loaded = ctypes.CDLL(str(target))
        except OSError:  # not a library after all: a cache miss
            _forget(target)
            if attempt == 2:
                raise
            continue
        try:
            return _typed(loaded)
        except AttributeError:  # a library, but not of these kernels: a cache miss
            _forget(target)
            _dlclose(loaded)  # else loading the rebuilt file by the same name would return this one again
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _dlclose(loaded: ctypes.CDLL) -> None:
    try:
        import _ctypes

        _ctypes.dlclose(loaded._handle)
    except (ImportError, AttributeError, OSError):
        pass  # then the rebuilt library is loaded by the next process


def _typed(loaded: ctypes.CDLL) -> ctypes.CDLL:
    """``loaded`` with its kernels' argument and result types set; AttributeError when one is missing."""
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
