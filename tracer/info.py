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

from tracer.platform import UNKNOWN, platform_of
from tracer.trace import Trace, load_trace, printable, trace_lr_columns


LISTED = 8  # long lists (coordinates, final values) show this many, then how many more


def _number(value: float) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.6g}"


def _span(trace: Trace, column: str) -> dict[str, Any]:
    """First, last, smallest (with its update) and largest finite value of a column.

    `last_update` is the update of the last finite value: before the last update
    when the run ended on non-finite values (a diverged run's loss)."""
    values = trace[column]
    finite = np.flatnonzero(np.isfinite(values))
    if finite.size == 0:
        return {"first": None, "last": None, "last_update": None, "min": None, "min_update": None, "max": None}
    updates = trace["update"] if "update" in trace else np.arange(1, len(trace) + 1)
    smallest = finite[np.argmin(values[finite])]
    return {
        "first": float(values[finite[0]]),
        "last": float(values[finite[-1]]),
        "last_update": int(updates[finite[-1]]),
        "min": float(values[smallest]),
        "min_update": int(updates[smallest]),
        "max": float(values[finite].max()),
        "updates": int(updates[-1]),
    }


def _scheduler(trace: Trace) -> str | None:
    """The spec; None when the runner recorded that there was none, "not recorded" when the
    trace cannot say (a user's own Recorder: the recorder does not see schedulers)."""
    meta = trace.meta
    if meta.get("scheduler"):
        return meta["scheduler"]
    return None if meta.get("problem") else "not recorded"


def summarize(trace: Trace) -> dict[str, Any]:
    """The facts `tracer info` prints, as a JSON-able dict (non-finite numbers as None)."""
    meta = trace.meta
    optimizer = meta.get("optimizer") or {}
    facts = {
        "path": str(trace.path),
        "label": meta.get("label"),
        "problem": meta.get("problem"),
        "optimizer": optimizer.get("name"),
        "class": optimizer.get("class"),
        "hyperparameters": optimizer.get("hyperparameters"),
        "param_groups": meta.get("param_groups"),
        "scheduler": _scheduler(trace),
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
        "summary_pass": meta.get("summary_pass"),
        "loss": _span(trace, "loss") if "loss" in trace and len(trace) else None,
        "lr": {c: _span(trace, c) for c in trace_lr_columns(trace.columns)} if len(trace) else {},
        "step_size": _span(trace, "step_size") if "step_size" in trace and len(trace) else None,
        "final": trace.final,
        "versions": meta.get("versions"),
        "platform": platform_of(meta),
        "distributed": meta.get("distributed"),
        "d": optimizer.get("d"),
        "d_note": optimizer.get("d_note"),
        "d_switched": (trace.trailer or {}).get("d_switched"),
        "state_keys": optimizer.get("state_keys"),
        "state": _state_keys(meta.get("state")),
    }
    return _finite_or_none(facts)


def _state_keys(state: Any) -> dict[str, int] | None:
    """Every optimizer state key the trace saw, with the number of parameters that have it (None: not recorded)."""
    if not isinstance(state, dict):
        return None
    counts: dict[str, int] = {}
    for keys in state.values():
        for key in keys if isinstance(keys, dict) else ():
            counts[key] = counts.get(key, 0) + 1
    return counts


def _state_text(facts: dict[str, Any]) -> str:
    letters = " ".join(f"{k}={v}" for k, v in (facts["state_keys"] or {}).items() if v) or "no v or s"
    keys = ", ".join(f"{key} ({n})" for key, n in facts["state"].items()) or "none"
    return f"{letters}; keys (parameters holding each): {keys}"


def _d_text(facts: dict[str, Any]) -> str:
    text = facts["d"] + (f": {facts['d_note']}" if facts["d_note"] else "")
    if facts["d_switched"]:
        text += f"; switched to measured (disagreed with the displacement): {', '.join(facts['d_switched'])}"
    return text


def _finite_or_none(value: Any) -> Any:
    """`value` with NaN and infinities as None: JSON has no NaN (json.dumps would write a bare NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite_or_none(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_none(item) for item in value]
    return value


def _problem_text(problem: dict[str, Any] | None) -> str:
    if not problem:
        return "none recorded (a user's own run)"
    # A callable's sampled contour grid is data for the renderer, not a fact to print.
    options = ", ".join(f"{k} {v}" for k, v in problem.items() if k not in ("name", "sampled"))
    return f"{problem.get('name')}" + (f" ({options})" if options else "")


def _span_text(span: dict[str, Any] | None) -> str:
    if not span or span["first"] is None:
        return "-"
    if span["min"] == span["max"]:
        return f"{_number(span['first'])} (constant)"
    last = f"last {_number(span['last'])}"
    if span["last_update"] != span["updates"]:
        last = f"last finite {_number(span['last'])} at update {span['last_update']}"
    return (f"first {_number(span['first'])}, {last}, "
            f"min {_number(span['min'])} at update {span['min_update']}, max {_number(span['max'])}")


def _listed(names: list[str], limit: int = LISTED) -> str:
    """The first `limit` names, then how many more: a 363-coordinate model reads in one line."""
    if len(names) <= limit:
        return ", ".join(names)
    return ", ".join(names[:limit]) + f", ... ({len(names)} in all)"


def _hyperparameter_rows(facts: dict[str, Any]) -> list[tuple[str, str]]:
    """One row per parameter group that was recorded; says when only group 0 was."""
    hyper = facts["hyperparameters"]
    groups = facts["param_groups"] or 1
    if isinstance(hyper, list):  # one entry per group
        return [(f"group {i}", " ".join(f"{k}={v}" for k, v in group.items()) or "-")
                for i, group in enumerate(hyper)]
    text = " ".join(f"{k}={v}" for k, v in (hyper or {}).items()) or "-"
    if groups > 1:
        return [("group 0", text),
                (f"groups 1-{groups - 1}", "settings not recorded; their lr is in the lr rows below")]
    return [("", text)]


def _scheduler_text(facts: dict[str, Any]) -> str:
    scheduler = facts["scheduler"]
    if scheduler is None:
        return "none"
    if scheduler == "not recorded":
        varies = any(span["first"] is not None and span["min"] != span["max"] for span in facts["lr"].values())
        return "not recorded" + (" (the lr changes: see the lr rows)" if varies else " (the lr is constant)")
    return f"{scheduler} (steps per {facts['scheduler_every']})"


def _platform_text(entry: dict[str, Any] | None) -> str:
    """The platform a trace was made on (``tracer.platform``): kernel fingerprint first, then what it ran on."""
    if entry is None:
        return f"{UNKNOWN} (written before traces recorded it)"
    details = [f"{key} {entry[key]}" for key in ("cpu_capability", "cpu", "machine", "torch", "torch_git")
               if entry.get(key)]
    return f"fingerprint {entry['fingerprint']}" + (f", {', '.join(details)}" if details else "")


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


def summary_rows(facts: dict[str, Any]) -> list[tuple[str, str]]:
    """(name, text) rows of `format_summary`; a notebook shows some of them as HTML (`Trace._repr_html_`)."""
    run = f"{facts['updates']} updates, {facts['status']}"
    if facts["diverged_at"] is not None:
        run += f" at update {facts['diverged_at']}"
    if facts["epochs"] is not None:
        batch = f" (batch size {facts['batch_size']})" if facts["batch_size"] is not None else ""
        run = f"{facts['epochs']} epochs{batch}, " + run
    traced = _listed(facts["coordinates"] or []) or "-"
    if facts["summarized"]:
        traced += f"; summarized: {_listed(facts['summarized'])}"
    final = [f"{k}={_number(v)}" for k, v in (facts["final"] or {}).items()]
    final_text = " ".join(final[:LISTED]) + (f" ... ({len(final)} in all; --json lists every one)"
                                             if len(final) > LISTED else "")
    rows = [
        ("label", facts["label"] or "-"),
        ("problem", _problem_text(facts["problem"])),
        ("optimizer", f"{facts['optimizer']} ({facts['class']})"),
        *_hyperparameter_rows(facts),
        ("scheduler", _scheduler_text(facts)),
        ("run", run),
        ("granularity", f"{facts['granularity']}"
                        + (f" ({facts['summary_pass']} summary pass)" if facts["summary_pass"] else "") + f": {traced}"),
        ("loss", _span_text(facts["loss"])),
        *((name, _span_text(span)) for name, span in facts["lr"].items()),
        ("step size", _span_text(facts["step_size"])),
        ("final", final_text or "-"),
        ("versions", " ".join(f"{k} {v}" for k, v in (facts["versions"] or {}).items()) or "-"),
        ("platform", _platform_text(facts["platform"])),
    ]
    if facts.get("d"):
        rows.insert(3 + len(_hyperparameter_rows(facts)), ("d", _d_text(facts)))
    if facts.get("state") is not None:
        rows.insert(4 + len(_hyperparameter_rows(facts)), ("state", _state_text(facts)))
    if facts.get("distributed"):
        rows.append(("distributed", _distributed_text(facts["distributed"])))
    return rows


def format_summary(facts: dict[str, Any]) -> str:
    """The text block `tracer info` prints for one trace; what the file says is shown with control characters
    escaped (a label cannot clear the screen or forge a line), ``--json`` keeps it exact."""
    lines = [facts["path"], *(f"  {name:<12} {text}" for name, text in summary_rows(facts))]
    return "\n".join(printable(line) for line in lines)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("traces", nargs="+", metavar="TRACE", help="trace files (*.trace.csv)")
    parser.add_argument("--json", action="store_true", help="one JSON object per trace instead of text")


def run_command(args: argparse.Namespace) -> int:
    blocks: list[str] = []
    for path in args.traces:
        facts = summarize(load_trace(path))  # a bad file raises a one-line TraceFormatError
        blocks.append(json.dumps(facts, allow_nan=False) if args.json else format_summary(facts))
    print(("\n" if args.json else "\n\n").join(blocks))
    return 0


