"""What tracing costs: traced against untraced training, interleaved rounds.

Run from the repository root::

    .venv/bin/python benchmarks/bench_recorder.py            # both benchmarks
    .venv/bin/python benchmarks/bench_recorder.py --quick    # fewer rounds
    .venv/bin/python benchmarks/bench_recorder.py --case 2   # one case only (repeatable)
    .venv/bin/python benchmarks/bench_recorder.py --binary   # traces in the .bin form (default: CSV)

1. Summary granularity on a 10M-parameter model (100 tensors of 100k float32)
   with torch.optim.Adam(fused=True): median time of optimizer.step() traced
   over untraced, with the native summary pass (the default) and the eager
   one.
   Goal: <= 2.5x.
1b. The same model with tracer.optim.Adam(fused=True), whose native pass
   computes the summaries inside the update, traced, against torch's fused
   Adam untraced (and ours untraced against torch's, for scale).
   Goal: <= 1.5x.
2. Full granularity on the 2-parameter orbit problem (tracer.problems, batch
   64) with torch.optim.Adam: updates per second (forward, backward, step)
   traced over untraced. Goal: >= 0.7. A round is only 16 updates (about
   6 ms), so this case takes four times as many rounds, for a steadier median.
3. A whole training step (forward, backward, AdamW(fused=True) step) of a
   4-layer transformer encoder (3.67M parameters in 51 tensors, batch 16 x 64
   tokens), summary granularity, every update and every 10th update. Goals:
   <= 1.02x and <= 1.01x. Also tracer.optim.AdamW(fused=True)
   traced (summaries inside its pass) against torch's AdamW(fused=True) untraced.
4. The kernels alone on the 10M-parameter model, on 1 and 2 threads: torch's
   fused Adam, our native Adam untraced and traced, the native and the eager
   summary pass, and the snapshot copy (no recorder: where the time of [1]
   and [1b] goes); and beside them plain loops that move the same arrays
   with next to no arithmetic (benchmarks/plain_loops.c, compiled here with
   the native kernels' flags): about what the memory traffic alone costs,
   and so what the goals' ratios would be with every kernel that fast.
5. The Python of one step, 100 tensors of 100 floats (the arithmetic is
   next to nothing): our fused Adam and torch's, untraced and traced
   (summaries every update, .bin); best of 30 blocks of 20 steps, and the
   same with the caches flushed before each step by a 200 MB copy, as a
   10M-parameter step leaves them (best of 30 blocks of 5 steps). What
   [1] and [1b] pay per tensor beside the memory traffic.

The traced and the untraced run are two copies of the same model and
optimizer; rounds alternate between them so that a busy machine slows both
alike. Medians over rounds are printed with the ratio.
"""

from __future__ import annotations

import argparse
import ctypes
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from tracer import Recorder
from tracer.optim import Adam as TracerAdam
from tracer.optim import AdamW as TracerAdamW


_paired: list[float] = []  # the last _interleave's per-round ratios
SUFFIX = ".csv"  # the traces' form: ".bin" with --binary


def _interleave(untraced, traced, rounds: int) -> tuple[float, float]:
    """Median seconds of one call of each, alternating which goes first.

    Also keeps, in ``_paired``, each round's traced / untraced ratio: the two
    calls of a round run back to back, so their ratio cancels a machine that
    slows down or speeds up between rounds, which the ratio of the medians
    does not (``_paired_ratio``).
    """
    times: dict[str, list[float]] = {"untraced": [], "traced": []}
    untraced(), traced()  # warm-up: lazy state, first allocation
    for round_index in range(rounds):
        order = [("untraced", untraced), ("traced", traced)]
        for name, run in order if round_index % 2 == 0 else order[::-1]:
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    _paired[:] = [t / u for t, u in zip(times["traced"], times["untraced"])]
    return statistics.median(times["untraced"]), statistics.median(times["traced"])


def _paired_ratio() -> str:
    """The median of the last _interleave's per-round ratios and their interquartile range, as text."""
    q1, median, q3 = statistics.quantiles(_paired, n=4)
    return f"median of per-round ratios {median:.3f}x (quartiles {q1:.3f}-{q3:.3f})"


def _large_model(make_optimizer):
    """100 tensors of 100k float32 parameters with fixed gradients, and their optimizer."""
    generator = torch.Generator().manual_seed(0)
    params = [torch.randn(100_000, generator=generator).requires_grad_(True) for _ in range(100)]
    for p in params:
        p.grad = torch.randn(100_000, generator=generator)
    return params, make_optimizer(params)


def torch_fused_adam(params):
    return torch.optim.Adam(params, lr=1e-3, fused=True)


def our_fused_adam(params):
    return TracerAdam(params, lr=1e-3, fused=True)


def bench_summary_large(directory: Path, rounds: int, summary_pass: str) -> float:
    _, plain = _large_model(torch_fused_adam)
    traced_params, traced = _large_model(torch_fused_adam)
    names = [(f"layer{i}.weight", p) for i, p in enumerate(traced_params)]
    path = directory / f"summary-{summary_pass}.trace{SUFFIX}"  # one file per run: a Recorder refuses an existing trace
    with Recorder(traced, path, named_parameters=names, granularity="summary", summary_pass=summary_pass) as recorder:
        untraced_s, traced_s = _interleave(plain.step, traced.step, rounds)
        kind = recorder.summary_pass
    ratio = traced_s / untraced_s
    print(f"[1] 10M parameters (100 x 100k), torch Adam(fused=True), summary granularity, {kind} pass, {rounds} rounds")
    print(f"    optimizer.step() median: untraced {untraced_s * 1e3:.2f} ms, traced {traced_s * 1e3:.2f} ms")
    print(f"    traced / untraced = {ratio:.2f}x   (goal <= 2.5x); {_paired_ratio()}")
    return ratio


def bench_in_step(directory: Path, rounds: int) -> float:
    _, theirs = _large_model(torch_fused_adam)
    _, ours = _large_model(our_fused_adam)
    traced_params, traced = _large_model(our_fused_adam)
    names = [(f"layer{i}.weight", p) for i, p in enumerate(traced_params)]
    with Recorder(traced, directory / f"in-step.trace{SUFFIX}", named_parameters=names, granularity="summary"):
        theirs_s, traced_s = _interleave(theirs.step, traced.step, rounds)
    paired = _paired_ratio()
    theirs_again_s, ours_s = _interleave(theirs.step, ours.step, rounds)
    ratio = traced_s / theirs_s
    print(f"[1b] 10M parameters (100 x 100k), tracer.optim.Adam(fused=True) traced (summaries inside its pass), {rounds} rounds")
    print(f"    step median: torch Adam(fused=True) untraced {theirs_s * 1e3:.2f} ms, ours traced {traced_s * 1e3:.2f} ms")
    print(f"    ours traced / torch fused untraced = {ratio:.2f}x   (goal <= 1.5x); {paired}")
    print(f"    for scale, untraced: ours {ours_s * 1e3:.2f} ms / torch fused {theirs_again_s * 1e3:.2f} ms = {ours_s / theirs_again_s:.2f}x")
    return ratio


def transformer(seed: int) -> torch.nn.Module:
    """A 4-layer transformer encoder with token embedding and output head: 3.67M parameters in 51 tensors."""
    torch.manual_seed(seed)
    width, vocabulary = 256, 1000
    layer = torch.nn.TransformerEncoderLayer(width, nhead=4, dim_feedforward=1024, dropout=0.0, batch_first=True)
    return torch.nn.Sequential(
        torch.nn.Embedding(vocabulary, width),
        torch.nn.TransformerEncoder(layer, num_layers=4, enable_nested_tensor=False),
        torch.nn.Linear(width, vocabulary),
    )


def bench_transformer(directory: Path, rounds: int, every: int, ours: bool = False) -> float:
    generator = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, 1000, (16, 64), generator=generator)
    targets = torch.randint(0, 1000, (16, 64), generator=generator)

    def setup(traced_side=False):
        model = transformer(0)
        cls = TracerAdamW if (ours and traced_side) else torch.optim.AdamW
        return model, cls(model.parameters(), lr=1e-4, fused=True)

    # The seconds of each optimizer.step() call (the recorder's hooks run inside it), per side: a
    # steadier measure of what tracing adds than the difference of two whole, noisy training steps.
    step_times: dict[str, list[float]] = {"untraced": [], "traced": []}

    def training_step(model, optimizer, recorder=None):
        side = step_times["untraced" if recorder is None else "traced"]

        def run():
            logits = model(tokens)
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
            optimizer.zero_grad()
            loss.backward()
            if recorder is not None:
                recorder.note(loss=loss)
            start = time.perf_counter()
            optimizer.step()
            side.append(time.perf_counter() - start)
        return run

    plain_model, plain = setup()
    traced_model, traced = setup(traced_side=True)
    parameters = sum(p.numel() for p in traced_model.parameters())
    tensors = len(list(traced_model.parameters()))
    path = directory / f"transformer-every{every}{'-ours' if ours else ''}.trace{SUFFIX}"  # one file per run: a Recorder refuses an existing trace
    with Recorder(traced, path, named_parameters=traced_model.named_parameters(), granularity="summary", every=every) as rec:
        # Steps are ~100 ms: one round is `every` steps, so every round holds one recorded update.
        def repeat(step):
            def run():
                for _ in range(every):
                    step()
            return run
        untraced_s, traced_s = _interleave(repeat(training_step(plain_model, plain)), repeat(training_step(traced_model, traced, rec)), rounds)
    ratio = traced_s / untraced_s
    goal = 1.02 if every == 1 else 1.01
    who = "tracer.optim.AdamW(fused=True) traced (summaries inside its pass) against torch's untraced" if ours else "torch AdamW(fused=True)"
    print(f"[3] transformer encoder ({parameters / 1e6:.2f}M parameters in {tensors} tensors, batch 16 x 64), "
          f"{who}, summary every {every} update(s), {rounds} rounds of {every} step(s)")
    print(f"    training step median: untraced {untraced_s / every * 1e3:.1f} ms, traced {traced_s / every * 1e3:.1f} ms")
    print(f"    traced / untraced = {ratio:.3f}x   (goal <= {goal}x); {_paired_ratio()}")
    # Per training step: the mean over all steps (a recorded update every `every` steps) of what optimizer.step() took.
    added = statistics.mean(step_times["traced"]) - statistics.mean(step_times["untraced"])
    print(f"    optimizer.step() mean: untraced {statistics.mean(step_times['untraced']) * 1e3:.2f} ms, traced "
          f"{statistics.mean(step_times['traced']) * 1e3:.2f} ms: tracing adds {added * 1e3:.2f} ms per training step, "
          f"1 + added / untraced training step = {1 + added / (untraced_s / every):.3f}x")
    return ratio


RECORDERS_COPY = "snapshot copy (native, streaming stores: the recorder's)"


def bench_kernels(rounds: int) -> None:
    from tracer.native.steps import AdamScalars, NativeOutputs, adam_native
    from tracer.recording.summary import InStepSummaries
    from tracer.summaries.eager import SummaryInput, reduce_eager
    from tracer.summaries.native import NativeReducer

    generator = torch.Generator().manual_seed(0)
    tensors = lambda: [torch.randn(100_000, generator=generator) for _ in range(100)]  # noqa: E731
    theta, grad, v, s, delta, previous = tensors(), tensors(), tensors(), tensors().copy(), tensors(), tensors()
    s = [x.abs() for x in s]
    scalars = [AdamScalars(1e-3, 0.9, 0.999, 1e-8, 0.0, False, False, 5.0)] * 100
    rows = np.zeros((100, 9))
    # delta written over the previous delta, as the recorder asks where lr > 0
    request = lambda: InStepSummaries({id(p): NativeOutputs(q, q, 0.0, r.ctypes.data) for p, d, q, r in zip(theta, delta, previous, rows)}, {})  # noqa: E731
    items = [(i, SummaryInput(delta[i], theta[i], grad[i], 0.0, v[i], s[i], previous[i])) for i in range(100)]
    out = torch.zeros(100, 9)
    native = NativeReducer()
    _, torch_adam = _large_model(torch_fused_adam)
    torch_adam.step()
    plain = _plain_loops()
    adam_arrays = _plain_items(theta, v, s, grad)
    traced_arrays = _plain_items(theta, v, s, grad, previous)
    summary_arrays = _plain_items(delta, theta, grad, v, s, previous)
    copy_arrays = _plain_items(delta, theta)
    threads_now = torch.get_num_threads
    cases = {
        "torch Adam(fused=True) step": torch_adam.step,
        "our native Adam step": lambda: adam_native(theta, grad, v, s, [None] * 100, scalars),
        "our native Adam step, traced": lambda: adam_native(theta, grad, v, s, [None] * 100, scalars, request()),
        "native summary pass": lambda: native(items, out),
        "eager summary pass": lambda: [reduce_eager(item, out[i]) for i, item in items],
        "snapshot copy (_foreach_copy_)": lambda: torch._foreach_copy_(delta, theta),
        RECORDERS_COPY: lambda: native.copy(delta, theta),
        "plain loop: Adam": lambda: plain.plain_adam(adam_arrays.ctypes.data, len(adam_arrays), threads_now()),
        "plain loop: traced Adam": lambda: plain.plain_adam_traced(traced_arrays.ctypes.data, len(traced_arrays), threads_now()),
        "plain loop: summary pass": lambda: plain.plain_summaries(summary_arrays.ctypes.data, len(summary_arrays), threads_now()),
        "plain loop: copy": lambda: plain.plain_copy(copy_arrays.ctypes.data, len(copy_arrays), threads_now()),
    }
    threads = torch.get_num_threads()
    print(f"[4] kernels alone, 10M parameters (100 x 100k), median of {rounds} calls, ms; a plain loop is a kernel")
    print("    moving the same arrays with next to no arithmetic (benchmarks/plain_loops.c): about what the traffic costs")
    try:
        for count in sorted({1, threads}):
            torch.set_num_threads(count)
            medians = {}
            for name, run in cases.items():
                run()
                times = []
                for _ in range(rounds):
                    start = time.perf_counter()
                    run()
                    times.append(time.perf_counter() - start)
                medians[name] = statistics.median(times)
            print(f"    {count} thread(s): " + " | ".join(f"{name} {t * 1e3:.2f}" for name, t in medians.items()))
            adam = medians["torch Adam(fused=True) step"]
            over = lambda kernel, its_plain_loop: medians[kernel] / medians[its_plain_loop]  # noqa: E731
            print(f"      over their plain loops: torch Adam {over('torch Adam(fused=True) step', 'plain loop: Adam'):.2f}x, "
                  f"traced native Adam {over('our native Adam step, traced', 'plain loop: traced Adam'):.2f}x, "
                  f"native summary pass {over('native summary pass', 'plain loop: summary pass'):.2f}x, "
                  f"snapshot copy: torch's {over('snapshot copy (_foreach_copy_)', 'plain loop: copy'):.2f}x, "
                  f"the recorder's {over(RECORDERS_COPY, 'plain loop: copy'):.2f}x")
            # The goals' ratios with every kernel as fast as its plain loop, torch's Adam and the recorder's copy
            # (its streaming stores move less than a plain loop's copy) as measured.
            outside = (adam + medians[RECORDERS_COPY] + medians["plain loop: summary pass"]) / adam
            print(f"      at the plain loops' speed: a pass outside the step (Adam + the recorder's copy + summary pass) {outside:.2f}x torch Adam; "
                  f"inside it (traced Adam) {medians['plain loop: traced Adam'] / adam:.2f}x")
    finally:
        torch.set_num_threads(threads)


def bench_python(directory: Path, blocks: int = 30) -> None:
    def small_model():
        generator = torch.Generator().manual_seed(0)
        params = [torch.randn(100, generator=generator).requires_grad_(True) for _ in range(100)]
        for p in params:
            p.grad = torch.randn(100, generator=generator)
        return params

    def traced(optimizer, name):
        recorder = Recorder(optimizer, directory / f"python-{name}.trace.bin", granularity="summary")
        recorder.start()
        return recorder

    ours, theirs = our_fused_adam(small_model()), torch_fused_adam(small_model())
    ours_traced, theirs_traced = our_fused_adam(small_model()), torch_fused_adam(small_model())
    recorders = [traced(ours_traced, "ours"), traced(theirs_traced, "torch")]
    sides = {"ours": ours.step, "ours traced": ours_traced.step, "torch": theirs.step, "torch traced": theirs_traced.step}
    source = np.ones(50_000_000, dtype=np.float32)  # 200 MB: more than any cache here
    flushed = np.empty_like(source)
    try:
        for label, steps_per_block, flush in (("warm caches", 20, False), ("caches flushed before each step", 5, True)):
            best = {name: float("inf") for name in sides}
            for _ in range(blocks):
                for name, step in sides.items():
                    took = 0.0
                    for _ in range(steps_per_block):
                        if flush:
                            np.copyto(flushed, source)
                        start = time.perf_counter()
                        step()
                        took += time.perf_counter() - start
                    best[name] = min(best[name], took / steps_per_block)
            print(f"[5] Python of one step, 100 tensors of 100 floats, {label}, best of {blocks} blocks of {steps_per_block} steps, ms:")
            print("    " + " | ".join(f"{name} {t * 1e3:.3f}" for name, t in best.items())
                  + f"   (tracing adds: ours {(best['ours traced'] - best['ours']) * 1e3:.3f}, "
                  f"torch's {(best['torch traced'] - best['torch']) * 1e3:.3f})")
    finally:
        for recorder in recorders:
            recorder.close()


def _plain_loops() -> ctypes.CDLL:
    """benchmarks/plain_loops.c, compiled with the native kernels' flags (OpenMP too where they have it) into a temporary directory, loaded."""
    from tracer import native

    source = Path(__file__).with_name("plain_loops.c")
    library = Path(tempfile.mkdtemp()) / "libplain_loops.so"
    compiler = native._compiler()
    if compiler is None:
        raise SystemExit("case 4 needs a C compiler (cc, gcc or clang) for benchmarks/plain_loops.c")
    openmp = [native.OPENMP] if native.library() is not None and native.library().threading == "openmp" else []
    subprocess.run([compiler, *native.FLAGS, *openmp, f"-march={native.MARCH}", str(source), "-o", str(library)], check=True)
    loaded = ctypes.CDLL(str(library))
    for name in ("plain_copy", "plain_adam", "plain_adam_traced", "plain_summaries"):
        getattr(loaded, name).argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_int]
    return loaded


def _plain_items(*arrays: list[torch.Tensor]) -> np.ndarray:
    """plain_loops.c's item table (keep it alive while it is used): item i's k-th array is arrays[k][i]."""
    table = np.zeros(len(arrays[0]), dtype=[("length", np.int64)] + [(name, np.uint64) for name in "abcdef"])
    table["length"] = [t.numel() for t in arrays[0]]
    for name, tensors in zip("abcdef", arrays):
        table[name] = [t.data_ptr() for t in tensors]
    return table


def bench_full_orbit(directory: Path, rounds: int, epochs_per_round: int) -> float:
    from tracer.problems import get_problem

    problem = get_problem("orbit")

    def setup():
        torch.manual_seed(0)
        model = problem.build_model()
        return model, torch.optim.Adam(model.parameters(), lr=0.01, foreach=False)

    def epochs(model, optimizer, recorder=None):
        def run():
            problem.train(model, optimizer, epochs_per_round, recorder)
        return run

    plain_model, plain = setup()
    traced_model, traced = setup()
    with Recorder(traced, directory / f"orbit.trace{SUFFIX}", named_parameters=traced_model.named_parameters()) as rec:
        untraced_s, traced_s = _interleave(epochs(plain_model, plain), epochs(traced_model, traced, rec), rounds)
    updates = epochs_per_round * 512 // problem.batch_size
    untraced_rate, traced_rate = updates / untraced_s, updates / traced_s
    ratio = traced_rate / untraced_rate
    print(f"[2] orbit (2 parameters, batch {problem.batch_size}), Adam, full granularity, {rounds} rounds of {updates} updates")
    print(f"    updates/s median: untraced {untraced_rate:.0f}, traced {traced_rate:.0f}")
    print(f"    traced / untraced = {ratio:.2f}   (goal >= 0.7)")
    return ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    parser.add_argument("--case", type=int, choices=(1, 2, 3, 4, 5), action="append",
                        help="run only this case (1 and 1b, 2, 3, 4 or 5; repeat for several); default: all")
    parser.add_argument("--binary", action="store_true", help="write the traces in the binary .bin form instead of CSV")
    args = parser.parse_args()
    global SUFFIX
    SUFFIX = ".bin" if args.binary else ".csv"
    cases = set(args.case or (1, 2, 3, 4, 5))
    rounds = 5 if args.quick else 15
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, traces written as {SUFFIX}")
    with tempfile.TemporaryDirectory() as directory:
        if 1 in cases:
            for summary_pass in ("native", "eager"):
                bench_summary_large(Path(directory), rounds, summary_pass)
            bench_in_step(Path(directory), rounds)
        if 2 in cases:
            bench_full_orbit(Path(directory), rounds * 4, epochs_per_round=2)
        if 3 in cases:
            # A 2% goal on a ~150 ms step that varies by several % between rounds: more rounds.
            bench_transformer(Path(directory), rounds * 3, every=1)
            bench_transformer(Path(directory), rounds, every=10)
            bench_transformer(Path(directory), rounds * 3, every=1, ours=True)
        if 4 in cases:
            bench_kernels(rounds * 2 + 1)
        if 5 in cases:
            bench_python(Path(directory), blocks=rounds * 2)


if __name__ == "__main__":
    main()
