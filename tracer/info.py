"""`tracer info TRACE...`: what a trace holds, at a glance, without plotting.

For each trace: its label, problem, optimizer with every hyperparameter,
scheduler, how the run ended, granularity, the loss and learning rate over
the run, the effective step size, and the parameters after the last update.
`--json` prints the same as one JSON object per trace, for scripts. Reads the
trace file only (no torch).
"""

from __future__ import annotations

import argparse
import json
import math
from typing import Any

import numpy as np

from tracer.trace import Trace, load_trace


def _number(value: float) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.6g}"


def _lr_columns(trace: Trace) -> list[str]:
    return [c for c in trace.columns if c == "lr" or c.startswith("lr[")]


def _span(trace: Trace, column: str) -> dict[str, Any]:
    """First, last, smallest (with its update) and largest finite value of a column."""
    values = trace[column]
    finite = np.flatnonzero(np.isfinite(values))
    if finite.size == 0:
        return {"first": None, "last": None, "min": None, "min_update": None, "max": None}
    updates = trace["update"] if "update" in trace else np.arange(1, len(trace) + 1)
    smallest = finite[np.argmin(values[finite])]
    return {
        "first": float(values[finite[0]]),
        "last": float(values[finite[-1]]),
        "min": float(values[smallest]),
        "min_update": int(updates[smallest]),
        "max": float(values[finite].max()),
    }


def summarize(trace: Trace) -> dict[str, Any]:
    """The facts `tracer info` prints, as a JSON-able dict."""
    meta = trace.meta
    optimizer = meta.get("optimizer") or {}
    return {
        "path": str(trace.path),
        "label": meta.get("label"),
        "problem": meta.get("problem"),
        "optimizer": optimizer.get("name"),
        "class": optimizer.get("class"),
        "hyperparameters": optimizer.get("hyperparameters"),
        "scheduler": meta.get("scheduler"),
        "scheduler_every": meta.get("scheduler_every"),
        "epochs": meta.get("epochs"),
        "batch_size": meta.get("batch_size"),
        "seed": meta.get("seed"),
        "updates": len(trace),
        "status": trace.status,
        "diverged_at": trace.diverged_at,
        "granularity": meta.get("granularity"),
        "coordinates": meta.get("coordinates"),
        "summarized": meta.get("summarized"),
        "loss": _span(trace, "loss") if "loss" in trace and len(trace) else None,
        "lr": {c: _span(trace, c) for c in _lr_columns(trace)} if len(trace) else {},
        "step_size": _span(trace, "step_size") if "step_size" in trace and len(trace) else None,
        "final": trace.final,
        "versions": meta.get("versions"),
        "distributed": meta.get("distributed"),
    }


def _problem_text(problem: dict[str, Any] | None) -> str:
    if not problem:
        return "none recorded (a user's own run)"
    options = ", ".join(f"{k} {v}" for k, v in problem.items() if k != "name")
    return f"{problem.get('name')}" + (f" ({options})" if options else "")


def _span_text(span: dict[str, Any] | None) -> str:
    if not span or span["first"] is None:
        return "-"
    if span["min"] == span["max"]:
        return f"{_number(span['first'])} (constant)"
    return (f"first {_number(span['first'])}, last {_number(span['last'])}, "
            f"min {_number(span['min'])} at update {span['min_update']}, max {_number(span['max'])}")


def _distributed_text(distributed: dict[str, Any]) -> str:
    """A distributed run in one line: strategy, ranks, mesh, what the loss column holds."""
    mesh = distributed.get("mesh") or {}
    shape = "x".join(str(size) for size in mesh.get("shape") or []) or "-"
    names = mesh.get("dim_names")
    placements = " ".join(mesh.get("placements") or [])
    return (
        f"{distributed.get('strategy')}, {distributed.get('world_size')} ranks ({distributed.get('backend')}), "
        f"mesh {shape}{' ' + str(names) if names else ''} {placements}; rank {distributed.get('writer_rank')} wrote; "
        f"loss: {distributed.get('loss')}; check mode {'on' if distributed.get('check') else 'off'}"
    )


def format_summary(facts: dict[str, Any]) -> str:
    """The text block `tracer info` prints for one trace."""
    hyper = facts["hyperparameters"] or {}
    run = f"{facts['updates']} updates, {facts['status']}"
    if facts["diverged_at"] is not None:
        run += f" at update {facts['diverged_at']}"
    if facts["epochs"] is not None:
        run = f"{facts['epochs']} epochs (batch size {facts['batch_size']}), " + run
    traced = ", ".join(facts["coordinates"] or []) or "-"
    if facts["summarized"]:
        traced += f"; summarized: {', '.join(facts['summarized'])}"
    rows = [
        ("label", facts["label"] or "-"),
        ("problem", _problem_text(facts["problem"])),
        ("optimizer", f"{facts['optimizer']} ({facts['class']})"),
        ("", " ".join(f"{k}={v}" for k, v in hyper.items()) or "-"),
        ("scheduler", f"{facts['scheduler']} (steps per {facts['scheduler_every']})" if facts["scheduler"] else "none"),
        ("run", run),
        ("granularity", f"{facts['granularity']}: {traced}"),
        ("loss", _span_text(facts["loss"])),
        *((name, _span_text(span)) for name, span in facts["lr"].items()),
        ("step size", _span_text(facts["step_size"])),
        ("final", " ".join(f"{k}={_number(v)}" for k, v in (facts["final"] or {}).items()) or "-"),
        ("versions", " ".join(f"{k} {v}" for k, v in (facts["versions"] or {}).items()) or "-"),
    ]
    if facts.get("distributed"):
        rows.append(("distributed", _distributed_text(facts["distributed"])))
    return "\n".join([facts["path"], *(f"  {name:<12} {text}" for name, text in rows)])


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("traces", nargs="+", metavar="TRACE", help="trace files (*.trace.csv)")
    parser.add_argument("--json", action="store_true", help="one JSON object per trace instead of text")


def run_command(args: argparse.Namespace) -> int:
    blocks: list[str] = []
    for path in args.traces:
        facts = summarize(load_trace(path))  # a bad file raises a one-line TraceFormatError
        blocks.append(json.dumps(facts) if args.json else format_summary(facts))
    print(("\n" if args.json else "\n\n").join(blocks))
    return 0


