"""The native summary pass (tracer/native/summaries.c): its definitions, its agreement with eager, its fallbacks.

Its sums are float32 lanes of at most 16 terms, then float64, in a fixed
order (tracer/native/reductions.h), so they are checked against exact sums
(math.fsum) to the bound that order guarantees, NATIVE_RTOL, and against the
eager float32 reductions to the tolerances every pass shares. The C library
is built once per machine into the user's cache (a fraction of a second).
"""

from __future__ import annotations

import json
import math
import platform
import time
from pathlib import Path

import pytest
import torch

from tracer import Recorder, load_trace, native
from tracer.errors import TracerError
from tracer.summaries import REDUCTIONS
from tracer.summaries.eager import PASSES_COSINE_ATOL, PASSES_RTOL, SummaryInput, reduce_eager
from tracer.summaries.native import NativeReducer
from tracer.summaries.passes import resolve_summary_pass

# A float32 lane sums at most CHUNK / LANES = 16 products, each rounded once by
# an FMA: for terms of one sign that is within 16 * 2^-24 (9.5e-7) relative
# of the exact sum, and the float64 sums after it add nothing visible. A dot
# product's error is within the same bound times sum |a_i b_i| <= |a| |b|.
NATIVE_RTOL = 16 * 2.0**-24
BLOCK = 65536  # summaries.c's: sizes around it cross block boundaries
SIZES = [1, 7, 8, 9, 1000, BLOCK - 1, BLOCK, BLOCK + 1, 3 * BLOCK + 5]


def _inputs(size: int, seed: int, *, grad=True, moments=True, previous=True, dtype=torch.float32):
    generator = torch.Generator().manual_seed(seed)
    theta = torch.randn(size, generator=generator, dtype=dtype)
    after = theta - 1e-3 * torch.randn(size, generator=generator, dtype=dtype)
    g = torch.randn(size, generator=generator, dtype=dtype) if grad else None
    v = torch.randn(size, generator=generator, dtype=dtype) if moments else None
    s = torch.rand(size, generator=generator, dtype=dtype) if moments else None
    prev = torch.randn(size, generator=generator, dtype=dtype) if previous else None
    return theta, after, g, v, s, prev


def _native(inputs, g_theta=0.0, out_dtype=torch.float64):
    """Each (theta, after, g, v, s, prev) through one NativeReducer call: (delta, reductions) per input."""
    snapshots = [theta.clone() for theta, *_ in inputs]
    items = [(row, SummaryInput(snap, after, g, g_theta, v, s, prev)) for row, (snap, (_, after, g, v, s, prev)) in enumerate(zip(snapshots, inputs))]
    out = torch.zeros(len(items), len(REDUCTIONS), dtype=out_dtype)
    NativeReducer()(items, out)
    return [(snap, dict(zip(REDUCTIONS, row))) for snap, row in zip(snapshots, out.tolist())]


def _eager(theta, after, g, v, s, prev, g_theta=0.0):
    snapshot, out = theta.clone(), torch.zeros(len(REDUCTIONS), dtype=torch.float64 if theta.dtype == torch.float64 else torch.float32)
    reduce_eager(SummaryInput(snapshot, after, g, g_theta, v, s, prev), out)
    return snapshot, dict(zip(REDUCTIONS, out.tolist()))


def _fsum_products(a: torch.Tensor, b: torch.Tensor) -> float:
    return math.fsum((a.double() * b.double()).tolist())  # float32 x float32 is exact in float64


@pytest.fixture(autouse=True)
def _library():
    assert native.library() is not None, f"the native library should build on this machine: {native.failure()}"


@pytest.mark.parametrize("size", SIZES)
def test_native_reductions_are_the_definitions(size):
    theta, after, g, v, s, prev = inputs = _inputs(size, size)
    [(delta, got)] = _native([inputs])
    assert torch.equal(delta, theta - after)  # one float32 subtraction: bit for bit
    assert got["delta_abs_max"] == delta.abs().max().item()
    exact = {
        "theta_sq": _fsum_products(theta, theta),
        "delta_sq": _fsum_products(delta, delta),
        "g_sq": _fsum_products(g, g),
        "v_sq": _fsum_products(v, v),
        "s_sq": _fsum_products(s, s),
        "previous_sq": _fsum_products(prev, prev),
    }
    for name, value in exact.items():
        assert math.isclose(got[name], value, rel_tol=NATIVE_RTOL), name
    for name, (a, b) in {"g_dot_delta": (g, delta), "previous_dot_delta": (prev, delta)}.items():
        scale = math.sqrt(_fsum_products(a, a) * _fsum_products(b, b))
        assert abs(got[name] - _fsum_products(a, b)) <= NATIVE_RTOL * scale, name


@pytest.mark.parametrize(
    "options, g_theta",
    [
        (dict(), 0.0),
        (dict(), -0.01),
        (dict(moments=False), 0.0),
        (dict(previous=False), 0.0),
        (dict(grad=False, moments=False, previous=False), 0.0),
    ],
    ids=["adam-like", "weight decay in g", "no moments", "no previous delta", "no gradient"],
)
def test_native_agrees_with_eager(options, g_theta):
    inputs = [_inputs(size, seed, **options) for seed, size in enumerate(SIZES)]
    for (theta, after, g, v, s, prev), (native_delta, got) in zip(inputs, _native(inputs, g_theta, torch.float32)):
        eager_delta, eager = _eager(theta, after, g, v, s, prev, g_theta)
        assert torch.equal(native_delta, eager_delta)
        present = ["theta_sq", "delta_sq"]
        if g is not None:
            present += ["g_sq"] + (["v_sq", "s_sq"] if v is not None else []) + (["previous_sq"] if prev is not None else [])
            assert got["delta_abs_max"] == eager["delta_abs_max"]
            for name, a, b in (("g_dot_delta", "g_sq", "delta_sq"), ("previous_dot_delta", "previous_sq", "delta_sq")):
                if name == "previous_dot_delta" and prev is None:
                    continue
                assert abs(got[name] - eager[name]) <= PASSES_COSINE_ATOL * math.sqrt(eager[a] * eager[b]), name
        for name in present:
            assert math.isclose(got[name], eager[name], rel_tol=PASSES_RTOL), name


def test_native_sums_do_not_depend_on_the_thread_count():
    inputs = [_inputs(size, seed) for seed, size in enumerate(SIZES)]
    threads = torch.get_num_threads()
    try:
        results = []
        for count in (1, 2, 3, 8):
            torch.set_num_threads(count)
            results.append(_native(inputs, 0.01))
    finally:
        torch.set_num_threads(threads)
    for other in results[1:]:
        for (delta_a, a), (delta_b, b) in zip(results[0], other):
            assert torch.equal(delta_a, delta_b) and a == b  # bit for bit


def test_a_nan_in_delta_makes_its_sums_and_its_largest_value_nan():
    theta, after, g, v, s, prev = inputs = _inputs(BLOCK + 3, 0)
    after[BLOCK + 1] = float("nan")
    [(delta, got)] = _native([inputs])
    assert math.isnan(got["delta_sq"]) and math.isnan(got["delta_abs_max"]) and math.isnan(got["g_dot_delta"])
    assert not math.isnan(got["theta_sq"])


def test_tensors_the_c_pass_does_not_take_go_the_eager_way_with_the_eager_numbers():
    float64 = _inputs(300, 1, dtype=torch.float64)
    strided_theta, *rest = _inputs(600, 2)
    strided = (strided_theta[::2], *(t[::2] for t in rest))
    for inputs in (float64, strided):
        [(delta, got)] = _native([inputs], out_dtype=torch.float64 if inputs[0].dtype == torch.float64 else torch.float32)
        eager_delta, eager = _eager(*inputs)
        assert torch.equal(delta, eager_delta) and got == eager


def test_auto_is_native_where_it_builds_and_eager_where_it_cannot(monkeypatch):
    assert resolve_summary_pass("auto") == "native"
    monkeypatch.setenv("TRACER_NATIVE", "0")
    native.library.cache_clear()
    try:
        assert resolve_summary_pass("auto") == "eager"
        with pytest.raises(TracerError, match=r"summary_pass='native' cannot be built here \(TRACER_NATIVE=0\); use 'auto' or 'eager'"):
            resolve_summary_pass("native")
    finally:
        native.library.cache_clear()


def test_a_failing_compiler_is_reported_not_raised(monkeypatch, tmp_path):
    monkeypatch.setenv("CC", "false")  # exits 1, prints nothing: the build fails
    monkeypatch.setenv("TRACER_CACHE_DIR", str(tmp_path))
    native.library.cache_clear()
    try:
        assert native.library() is None
        assert native.failure().startswith("false -O3") and " failed: " in native.failure()
        # Nothing half-built left behind; each failed build (OpenMP, then pthreads) noted, so not retried at every start.
        markers = sorted(tmp_path.iterdir())
        assert [path.suffix for path in markers] == [".failed", ".failed"]
        # The next start reads the notes instead of compiling again.
        for marker in markers:
            marker.write_text(json.dumps({"time": time.time(), "message": "noted before"}))
        native.library.cache_clear()
        assert native.library() is None and native.failure() == "noted before"
    finally:
        native.library.cache_clear()


@pytest.mark.parametrize("march", [native.MARCH, "x86-64"] if platform.machine() == "x86_64" else [native.MARCH])
def test_the_snapshot_copy_moves_every_bit_from_any_start_and_leaves_other_tensors_to_torch(march):
    """Streaming stores need an aligned destination: views starting 0 to 7 floats into their storage, lengths
    around a vector and a block; NaN payloads, -0.0, subnormals and infinities exact; nothing written outside.
    On x86 both the machine's build (AVX where it has it) and the baseline one (SSE's streaming stores)."""
    generator = torch.Generator().manual_seed(5)
    special = torch.tensor([0x7FC00123, 0xFF800001, 0x80000000, 0x00000001, 0x807FFFFF, 0x7F800000], dtype=torch.int64)
    special = special.to(torch.int32).view(torch.float32)  # two NaN payloads, -0.0, two subnormals, inf
    destinations, sources, guards = [], [], []
    for size, source_offset, destination_offset in [(1, 0, 3), (7, 1, 0), (9, 3, 5), (1000, 5, 7), (BLOCK + 3, 7, 1), (3 * BLOCK + 5, 2, 6)]:
        source = torch.randn(source_offset + size, generator=generator)[source_offset:]
        source[: len(special)] = special[:size]
        source[-min(size, len(special)):] = special[: min(size, len(special))]
        destination_storage = torch.full((destination_offset + size + 4,), 7.0)
        destinations.append(destination_storage[destination_offset : destination_offset + size])
        sources.append(source)
        guards.append(destination_storage)
    double = (torch.zeros(50, dtype=torch.float64), torch.randn(50, generator=generator, dtype=torch.float64))
    strided = (torch.zeros(50), torch.randn(100, generator=generator)[::2])
    NativeReducer(native.load(march)).copy([*destinations, double[0], strided[0]], [*sources, double[1], strided[1]])
    for destination, source, storage in zip(destinations, sources, guards):
        assert torch.equal(destination.view(torch.int32), source.view(torch.int32))
        outside = torch.cat([storage[: storage.numel() - destination.numel() - 4], storage[-4:]])
        assert torch.equal(outside, torch.full_like(outside, 7.0))
    assert torch.equal(double[0], double[1]) and torch.equal(strided[0], strided[1])


def test_a_compiler_without_openmp_gets_the_pthreads_build_with_the_same_numbers(monkeypatch, tmp_path):
    """Where -fopenmp fails the kernels are built on pthreads, and they compute the same bits."""
    compiler = tmp_path / "cc-without-openmp"
    compiler.write_text('#!/bin/sh\nfor a in "$@"; do [ "$a" = -fopenmp ] && { echo "no OpenMP here" >&2; exit 1; }; done\nexec cc "$@"\n')
    compiler.chmod(0o755)
    monkeypatch.setenv("CC", str(compiler))
    monkeypatch.setenv("TRACER_CACHE_DIR", str(tmp_path / "cache"))
    inputs = [_inputs(size, seed) for seed, size in enumerate(SIZES)]
    expected = _native(inputs, 0.01)
    native.library.cache_clear()
    try:
        assert native.library().threading == "pthreads"
        noted = next((tmp_path / "cache").glob("*.failed")).read_text()  # why the OpenMP build was not used, one line
        assert "no OpenMP here" in noted and "\n" not in noted
        for (delta_a, a), (delta_b, b) in zip(expected, _native(inputs, 0.01)):
            assert torch.equal(delta_a, delta_b) and a == b  # bit for bit
    finally:
        native.library.cache_clear()


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="reads which libraries are mapped from /proc/self/maps")
def test_the_openmp_build_runs_on_torchs_own_openmp_runtime():
    """One libgomp in the process, torch's: the kernels' threads are torch's pool, not a second one competing for the cores."""
    library = native.library()
    if library is None or library.threading != "openmp":
        pytest.skip(f"no OpenMP build here ({native.failure() or library.threading})")
    mapped = {line.split()[-1] for line in Path("/proc/self/maps").read_text().splitlines() if "libgomp" in line}
    assert len(mapped) == 1 and Path(torch.__file__).parent.as_posix() in next(iter(mapped)), mapped


def test_auto_is_eager_where_the_native_pass_would_take_no_tensor(tmp_path):
    """A float64 model: "auto" says eager in the metadata (the native pass would reduce nothing); "native" is refused."""
    params = [torch.zeros(5, dtype=torch.float64, requires_grad=True)]
    optimizer = torch.optim.SGD(params, lr=0.1)
    with Recorder(optimizer, tmp_path / "t.trace.csv", granularity="summary") as recorder:
        assert recorder.summary_pass == "eager"
    assert load_trace(tmp_path / "t.trace.csv").meta["summary_pass"] == "eager"
    with pytest.raises(TracerError, match="summary_pass='native' takes float32 CPU tensors and no summarised tensor is one"):
        Recorder(optimizer, tmp_path / "u.trace.csv", granularity="summary", summary_pass="native")


def test_unknown_passes_are_refused():
    for unknown in ("fused", "compiled"):
        with pytest.raises(TracerError, match=rf"invalid summary_pass '{unknown}'; accepted: 'auto', 'native', 'eager'"):
            resolve_summary_pass(unknown)

