"""Tracing a model of GPT-2 small's size: construction time, step time traced/untraced, peak memory.

Run from the repository root::

    .venv/bin/python benchmarks/bench_large_model.py                  # 124M parameters on the CPU
    .venv/bin/python benchmarks/bench_large_model.py --device cuda    # on a GPU (device memory)
    .venv/bin/python benchmarks/bench_large_model.py --scale 0.1      # a quick run on a tenth of each tensor

The model is GPT-2 small's 148 parameter tensors, built from their shapes
(no download, no forward pass): token and position embeddings, 12 blocks of
two layer norms, the attention's qkv and output projections and the MLP's
two projections (weights and biases), and the final layer norm; 124,439,808
float32 parameters. Every tensor gets a fixed random gradient, and
``torch.optim.AdamW`` (fused on CUDA, foreach on the CPU, as torch picks by
default) steps it; a step here is the optimizer's step only, the part tracing
adds to (a forward and backward pass of GPT-2 would make the ratios smaller).

1. Construction: ``Recorder(..., granularity="summary")`` (the selection of
   148 tensors, columns and metadata; no file yet), median of 5.
2. Step: medians of interleaved rounds, untraced and traced (summaries at
   every update), and their ratio; then traced with ``cos_d_prev=False``.
3. Peak memory, each mode in a fresh process: the process's peak resident
   memory (CPU) or torch's peak allocated device memory (CUDA) after the
   model, its gradients, AdamW's state and three steps, untraced, traced and
   traced with ``cos_d_prev=False``; what tracing adds, in bytes per
   parameter. The buffers tracing holds are counted exactly too (their
   ``nbytes``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from tracer import Recorder

LAYERS, WIDTH, VOCABULARY, CONTEXT = 12, 768, 50257, 1024


def gpt2_small_shapes(scale: float = 1.0) -> list[tuple[str, tuple[int, ...]]]:
    """GPT-2 small's parameter names and shapes (Hugging Face's naming); ``scale`` < 1 shrinks the first dimension."""
    block = [
        ("ln_1.weight", (WIDTH,)), ("ln_1.bias", (WIDTH,)),
        ("attn.c_attn.weight", (WIDTH, 3 * WIDTH)), ("attn.c_attn.bias", (3 * WIDTH,)),
        ("attn.c_proj.weight", (WIDTH, WIDTH)), ("attn.c_proj.bias", (WIDTH,)),
        ("ln_2.weight", (WIDTH,)), ("ln_2.bias", (WIDTH,)),
        ("mlp.c_fc.weight", (WIDTH, 4 * WIDTH)), ("mlp.c_fc.bias", (4 * WIDTH,)),
        ("mlp.c_proj.weight", (4 * WIDTH, WIDTH)), ("mlp.c_proj.bias", (WIDTH,)),
    ]
    shapes = [("transformer.wte.weight", (VOCABULARY, WIDTH)), ("transformer.wpe.weight", (CONTEXT, WIDTH))]
    shapes += [(f"transformer.h.{i}.{name}", shape) for i in range(LAYERS) for name, shape in block]
    shapes += [("transformer.ln_f.weight", (WIDTH,)), ("transformer.ln_f.bias", (WIDTH,))]
    return [(name, (max(1, round(shape[0] * scale)), *shape[1:])) for name, shape in shapes]


def build(device: torch.device, scale: float) -> tuple[list[tuple[str, torch.Tensor]], torch.optim.Optimizer]:
    """The parameters with fixed gradients, and AdamW over them."""
    generator = torch.Generator().manual_seed(0)
    named = []
    for name, shape in gpt2_small_shapes(scale):
        tensor = (torch.randn(shape, generator=generator) * 0.02).to(device).requires_grad_(True)
        tensor.grad = (torch.randn(shape, generator=generator) * 1e-3).to(device)
        named.append((name, tensor))
    return named, torch.optim.AdamW([t for _, t in named], lr=6e-4, weight_decay=0.1)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    # VmHWM, not getrusage's ru_maxrss: that one survives exec and holds the parent's peak (Linux).
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise SystemExit("no VmHWM in /proc/self/status: the CPU memory measurement needs Linux")


def held_bytes(recorder: Recorder) -> int:
    """The bytes of the buffers a started Recorder's summaries hold (snapshot and previous delta per tensor)."""
    return sum(
        b.snapshot.nbytes + (0 if b.previous_delta is None else b.previous_delta.nbytes)
        for b in recorder._summary._buffers.values() if b.held
    )


def memory_run(mode: str, device: torch.device, scale: float) -> dict[str, int]:
    """In this (fresh) process: peak memory after three steps in ``mode`` ("untraced", "traced", "lean")."""
    before = peak_bytes(device)
    named, optimizer = build(device, scale)
    held = 0
    with tempfile.TemporaryDirectory() as directory:
        if mode == "untraced":
            for _ in range(3):
                optimizer.step()
        else:
            with Recorder(optimizer, Path(directory) / "m.trace.bin", named_parameters=named, granularity="summary",
                          cos_d_prev=mode != "lean") as recorder:
                for _ in range(3):
                    optimizer.step()
                held = held_bytes(recorder)
        synchronize(device)
    return {"peak": peak_bytes(device), "before": before, "held": held,
            "parameters": sum(t.numel() for _, t in named)}


def timing(device: torch.device, scale: float, rounds: int, steps: int) -> None:
    named, optimizer = build(device, scale)
    parameters = sum(t.numel() for _, t in named)
    with tempfile.TemporaryDirectory() as directory:
        seconds = []
        for k in range(5):
            start = time.perf_counter()
            recorder = Recorder(optimizer, Path(directory) / f"c{k}.trace.bin", named_parameters=named,
                                granularity="summary")
            seconds.append(time.perf_counter() - start)
            recorder.close()  # never started: detached, no file
        print(f"{torch.__version__}, {device}, {parameters:,} parameters in {len(named)} tensors, AdamW "
              f"(defaults: {'fused' if device.type == 'cuda' else 'foreach'})")
        print(f"  construction (summary granularity): median {statistics.median(seconds) * 1e3:.1f} ms of 5")
        for lean in (False, True):
            times: dict[str, list[float]] = {"untraced": [], "traced": []}
            for _ in range(2):  # warm-up: AdamW's state
                optimizer.step()
            for round_index in range(rounds):
                for name in ["untraced", "traced"] if round_index % 2 == 0 else ["traced", "untraced"]:
                    recorder = None
                    if name == "traced":  # a Recorder per round (its construction is timed above, not here)
                        recorder = Recorder(optimizer, Path(directory) / f"t{lean}-{round_index}.trace.bin",
                                            named_parameters=named, granularity="summary", cos_d_prev=not lean).start()
                    synchronize(device)
                    start = time.perf_counter()
                    for _ in range(steps):
                        optimizer.step()
                    synchronize(device)
                    times[name].append((time.perf_counter() - start) / steps)
                    if recorder is not None:
                        recorder.close()
            untraced, traced = statistics.median(times["untraced"]), statistics.median(times["traced"])
            label = "traced, cos_d_prev=False" if lean else "traced"
            print(f"  step median of {rounds} rounds x {steps}: untraced {untraced * 1e3:.1f} ms, {label} "
                  f"{traced * 1e3:.1f} ms, ratio {traced / untraced:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--scale", type=float, default=1.0, help="shrink each tensor's first dimension (default 1: 124M)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=3, help="steps per round (the first of a traced round has no cos_d_prev)")
    parser.add_argument("--memory-run", choices=("untraced", "traced", "lean"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device here (torch.cuda.is_available() is False); run with --device cpu")
    if args.memory_run:
        print(json.dumps(memory_run(args.memory_run, device, args.scale)))
        return
    timing(device, args.scale, args.rounds, args.steps)
    results = {}
    for mode in ("untraced", "traced", "lean"):
        command = [sys.executable, __file__, "--device", args.device, "--scale", str(args.scale), "--memory-run", mode]
        results[mode] = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)
    parameters = results["untraced"]["parameters"]
    base = results["untraced"]["peak"]
    where = "peak allocated device memory" if device.type == "cuda" else "peak resident memory of the process"
    print(f"  {where} (fresh process each, after 3 steps):")
    for mode, label in (("untraced", "untraced"), ("traced", "traced"), ("lean", "traced, cos_d_prev=False")):
        peak, held = results[mode]["peak"], results[mode]["held"]
        added = (peak - base) / parameters
        print(f"    {label:26s} {peak / 2**20:8.0f} MiB   + {added:5.2f} bytes/parameter over untraced "
              f"(buffers held: {held / parameters:.2f} bytes/parameter)")


if __name__ == "__main__":
    main()
