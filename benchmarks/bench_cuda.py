"""On an accelerator: what tracing costs a fused Adam step on CUDA, and whether it syncs the host.

Run from the repository root, on a machine with an NVIDIA GPU::

    .venv/bin/python benchmarks/bench_cuda.py                   # 100M parameters (100 x 1M), 21 rounds
    .venv/bin/python benchmarks/bench_cuda.py --device cpu --parameters 1000000   # a smoke run of this script

1. Time: torch.optim.Adam(fused=True) on the device, untraced against traced
   (summary granularity, every update), rounds interleaved, each round a
   block of steps between two synchronisations (so a step's own
   asynchronous work is counted, and the host is never made to wait inside
   a step); medians and their ratio.
2. Host syncs: the traced steps run again under
   ``torch.cuda.set_sync_debug_mode("error")``, which turns any
   synchronisation of the host with the device (``.item()``, ``float()`` of
   a device tensor, a blocking copy) into an error; the script says whether
   the step path made one. The rows are read once their non-blocking copy is
   done, at a later update (``PendingSummaries.ready``), or on close, which
   is outside the checked steps.

With ``--device cpu`` the timing runs on the CPU (no sync check there), so
that the script itself can be checked on a machine without a GPU.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from tracer import Recorder


def model(device: torch.device, parameters: int, tensors: int) -> list[torch.Tensor]:
    """``tensors`` float32 tensors of ``parameters // tensors`` elements with fixed gradients, on ``device``."""
    generator = torch.Generator().manual_seed(0)
    size = parameters // tensors
    params = [torch.randn(size, generator=generator).to(device).requires_grad_(True) for _ in range(tensors)]
    for p in params:
        p.grad = torch.randn(size, generator=generator).to(device)
    return params


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu (a smoke run of this script)")
    parser.add_argument("--parameters", type=int, default=100_000_000, help="in all (default 100M)")
    parser.add_argument("--tensors", type=int, default=100, help="how many tensors they are split into (default 100)")
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--steps", type=int, default=10, help="steps per round, between two synchronisations")
    parser.add_argument("--pass", dest="summary_pass", default="auto", choices=("auto", "eager", "native"),
                        help="the summary pass (default auto: eager on CUDA)")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device here (torch.cuda.is_available() is False); --device cpu runs this script on the CPU")

    plain = torch.optim.Adam(model(device, args.parameters, args.tensors), lr=1e-4, fused=True)
    traced_params = model(device, args.parameters, args.tensors)
    traced = torch.optim.Adam(traced_params, lr=1e-4, fused=True)
    names = [(f"layer{i}.weight", p) for i, p in enumerate(traced_params)]
    with tempfile.TemporaryDirectory() as directory:
        recorder = Recorder(traced, Path(directory) / "cuda.trace.bin", named_parameters=names,
                            granularity="summary", summary_pass=args.summary_pass)
        with recorder:
            times: dict[str, list[float]] = {"untraced": [], "traced": []}
            for optimizer in (plain, traced):  # warm-up: state, the first copy, compiling
                for _ in range(2):
                    optimizer.step()
            synchronize(device)
            for round_index in range(args.rounds):
                order = [("untraced", plain), ("traced", traced)]
                for name, optimizer in order if round_index % 2 == 0 else order[::-1]:
                    start = time.perf_counter()
                    for _ in range(args.steps):
                        optimizer.step()
                    synchronize(device)
                    times[name].append((time.perf_counter() - start) / args.steps)
            untraced_s, traced_s = statistics.median(times["untraced"]), statistics.median(times["traced"])
            print(f"{torch.__version__}, {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'}), "
                  f"{args.parameters / 1e6:g}M parameters in {args.tensors} tensors, Adam(fused=True), "
                  f"{recorder.summary_pass} summary pass, {args.rounds} rounds of {args.steps} steps")
            print(f"    step median: untraced {untraced_s * 1e3:.3f} ms, traced {traced_s * 1e3:.3f} ms, "
                  f"traced / untraced = {traced_s / untraced_s:.2f}x")
            if device.type == "cuda":
                torch.cuda.set_sync_debug_mode("error")
                try:
                    for _ in range(args.steps):
                        traced.step()
                    print(f"    host syncs in {args.steps} traced steps: none (set_sync_debug_mode('error') raised nothing)")
                except RuntimeError as error:
                    print(f"    host sync in the traced step path: {error}")
                finally:
                    torch.cuda.set_sync_debug_mode("default")
                synchronize(device)
        print(f"    rows written: {recorder.recorded} (every recorded update, in order, on close)")


if __name__ == "__main__":
    main()
