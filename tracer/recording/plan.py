"""A recording's plan: everything decided before the first update, by one function.

``plan_recording`` takes a Recorder's arguments and returns a ``RecordingPlan``:
the optimizer's family (how d is obtained, the state keys of v and s), the
traced parameters and the trace's columns, the distributed strategy, the
summary pass, the snapshot policy and the metadata. It checks every option
and owns every eligibility rule a recording has:

- which summary pass runs: the native one where its C library builds and
  takes some summarised tensor (``tracer.native.steps.native_tensors``);
- which updates are recorded (``every``) and which are measured only, for
  the next recorded one's ``cos_d_prev`` (``RecordingPlan.role_of``);
- where optimizer state is recorded (not under ZeRO or FSDP2, where each
  rank holds a different share of it);
- where snapshots may be kept (not when appending, not under
  torch.distributed, within the memory check).

A plan allocates nothing per coordinate; the Recorder builds its readers and
buffers from it when started.
"""

from __future__ import annotations

import os
import pathlib
import platform
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from tracer.errors import TracerError
from tracer.families import Family, check_state_keys, family_of, group_lr, with_state_keys
from tracer.native.steps import native_tensors
from tracer.platform import platform_meta
from tracer.recording.distributed import Distributed, DistributedOptions, inner_optimizer
from tracer.recording.selection import TracedParameter, select_parameters
from tracer.recording.snapshots import SnapshotPolicy, check_memory, snapshot_file_for
from tracer.summaries.passes import check_summary_pass, resolve_summary_pass
from tracer.trace import GRANULARITIES, IF_EXISTS, row_columns

__all__ = ["RecordingPlan", "plan_recording", "ON_DIVERGENCE", "ON_WRITE_ERROR", "IF_EXISTS", "ROLES"]

ON_DIVERGENCE = ("stop", "continue")
"""What ``Recorder(on_divergence=...)`` accepts."""
ON_WRITE_ERROR = ("stop", "raise")
"""What ``Recorder(on_write_error=...)`` accepts."""
ROLES = ("record", "measure", "skip")
"""What the step hooks do at an update: record its row, measure its delta for the next row's
``cos_d_prev``, or leave it alone."""
# Metadata keys the recorder owns; a caller's ``meta`` may not set them.
OWN_META_KEYS = (
    "format", "schema_version", "parameters", "granularity", "coordinates", "summarized", "param_groups",
    "distributed", "every", "snapshots", "summary_pass", "state", "cos_d_prev",
)


@dataclass(frozen=True, eq=False)
class RecordingPlan:
    """What a Recorder records and how, decided once, before the first update."""

    family: Family
    """The optimizer's family (``tracer.families``), with the caller's ``state_keys`` applied."""
    state_keys: dict[str, str | None]
    """The caller's state keys of v and s (empty: the family's); checked at the first recorded update."""
    parameters: list[TracedParameter]
    """The traced parameter tensors, in the optimizer's order (``tracer.recording.selection``)."""
    granularity: str
    """"full", "summary" or "mixed" (full= names some coordinates, the rest are summarised)."""
    columns: list[str]
    """The trace's columns without state columns (those are known at the first recorded update)."""
    distributed: Distributed
    """The distributed strategy and this rank's role (a single process is strategy "single")."""
    summary_pass: str | None
    """"native" or "eager"; None where nothing is summarised."""
    every: int
    """Updates 1, 1 + every, 1 + 2 * every, ... are recorded."""
    cos_d_prev: bool
    """Each summarised tensor keeps its previous delta, for ``cos_d_prev``."""
    records_state: bool
    """Every optimizer state tensor is recorded under its key (``tracer.recording.state``)."""
    snapshots: SnapshotPolicy | None
    """The snapshot policy, or None: no snapshots."""
    snapshot_path: pathlib.Path | None
    """Where the snapshots go, beside the trace; None without snapshots."""
    meta: dict[str, Any] = field(repr=False)
    """The trace's metadata, the recorder's keys and the caller's."""

    def role_of(self, update: int) -> str:
        """What the hooks do at ``update`` (one of ROLES)."""
        if (update - 1) % self.every == 0:
            return "record"
        return "measure" if update % self.every == 0 and self.cos_d_prev else "skip"


def plan_recording(
    optimizer: torch.optim.Optimizer,
    path: str | os.PathLike,
    *,
    named_parameters: Iterable[tuple[str, Tensor]] | None = None,
    granularity: str = "full",
    full: Sequence[str] | None = None,
    meta: Mapping[str, Any] | None = None,
    on_divergence: str = "stop",
    if_exists: str = "error",
    distributed: DistributedOptions | None = None,
    every: int = 1,
    summary_pass: str = "auto",
    snapshots: SnapshotPolicy | None = None,
    state_keys: Mapping[str, str | None] | None = None,
    record_state: bool = True,
    cos_d_prev: bool = True,
    on_write_error: str = "stop",
) -> RecordingPlan:
    """The plan of a recording with ``tracer.recorder.Recorder``'s arguments (documented there).

    Raises TracerError, in one line, for any option out of its accepted values.
    Under torch.distributed it shakes hands with the other ranks' plans (a
    collective: every rank must plan with the same arguments).
    """
    _check_choice("granularity", granularity, GRANULARITIES)
    _check_choice("on_divergence", on_divergence, ON_DIVERGENCE)
    _check_choice("if_exists", if_exists, IF_EXISTS)
    _check_choice("on_write_error", on_write_error, ON_WRITE_ERROR)
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise TracerError(f"invalid every {every!r}; accepted: a whole number of updates >= 1")
    if not isinstance(cos_d_prev, bool):
        raise TracerError(f"invalid cos_d_prev {cos_d_prev!r}; accepted: True or False")
    check_summary_pass(summary_pass)  # also where nothing is summarised
    if snapshots is not None and not isinstance(snapshots, SnapshotPolicy):
        raise TracerError(f"snapshots must be a SnapshotPolicy or None, got {snapshots!r}")
    if snapshots is not None and if_exists == "append":
        raise TracerError("snapshots cannot continue an appended trace (they would hold only the new part); "
                          "pass if_exists='overwrite' or another path, or snapshots=None")
    caller_meta = dict(meta or {})
    owned = sorted(key for key in caller_meta if key in OWN_META_KEYS)
    if owned:
        raise TracerError(f"meta may not set {owned}: the recorder fills them")

    inner = inner_optimizer(optimizer)
    family = with_state_keys(family_of(inner), state_keys)
    check_state_keys(family, inner, dict(state_keys or {}))  # where it has state already (a resumed run)
    parameters = select_parameters(optimizer, named_parameters, granularity, full)
    granularity = granularity if full is None else "mixed"  # the trace's: full= picks coordinates, summarises the rest
    columns = row_columns(len(optimizer.param_groups), [c for p in parameters for c in p.columns()])
    # Under torch.distributed: a collective handshake with the other ranks' plans (TracerError on timeout).
    dist = Distributed(optimizer, distributed or DistributedOptions(), f"{on_divergence}|{columns}", granularity)
    if snapshots is not None and dist.distributed:
        raise TracerError("snapshots are not supported under torch.distributed yet; pass snapshots=None there")
    if snapshots is not None:
        check_memory(parameters, snapshots)
    snapshot_path = None if snapshots is None else snapshot_file_for(pathlib.Path(path))
    if snapshots is not None:
        caller_meta["snapshots"] = {"file": snapshot_path.name, "every": snapshots.every, "limit": snapshots.limit}
    # Resolved once, here: the metadata says which pass ran ("auto" builds the C library on first use).
    summarized = [p.tensor for p in parameters if p.summarized]
    pass_ = resolve_summary_pass(summary_pass, any(map(native_tensors, summarized))) if summarized else None
    # Under DDP every rank holds the whole state, the same on each; ZeRO and FSDP2 give each rank a share of it.
    records_state = record_state and dist.strategy in ("single", "ddp")

    plan = RecordingPlan(
        family=family, state_keys=dict(state_keys or {}), parameters=parameters, granularity=granularity,
        columns=columns, distributed=dist, summary_pass=pass_, every=every, cos_d_prev=cos_d_prev,
        records_state=records_state, snapshots=snapshots, snapshot_path=snapshot_path, meta={},
    )
    plan.meta.update(_metadata(optimizer, plan, caller_meta))
    return plan


def _check_choice(option: str, value: object, accepted: Sequence[str]) -> None:
    if value not in accepted:
        raise TracerError(f"invalid {option} {value!r}; accepted: {', '.join(accepted)}")


# -- the metadata ---------------------------------------------------------------------------------


def _metadata(optimizer: torch.optim.Optimizer, plan: RecordingPlan, caller: dict[str, Any]) -> dict[str, Any]:
    """The trace's metadata: the optimizer, the parameters, the plan's choices, then the caller's keys."""
    cls = type(optimizer)
    family, groups = plan.family, optimizer.param_groups
    optimizer_meta = {
        "name": family.display_name(groups[0]),
        "class": f"{cls.__module__}.{cls.__qualname__}",
        "impl": "tracer" if cls.__module__.startswith("tracer.") else "torch",
        "hyperparameters": _group_options(groups[0]),
        "group_hyperparameters": [_group_options(group) for group in groups],
        "d": family.d_source([p.tensor.dtype for p in plan.parameters]),
        "state_keys": dict(zip(("v", "s"), family.moment_keys(groups[0]))),
        "d_note": d_note(family, groups),
    }
    optimizer_meta.update(caller.pop("optimizer", None) or {})
    meta = {
        "optimizer": optimizer_meta,
        "parameters": [{"name": p.name, "shape": list(p.tensor.shape), "group": p.group} for p in plan.parameters],
        "granularity": plan.granularity,
        "coordinates": [c for p in plan.parameters for c in p.coordinates],
        "summarized": [p.name for p in plan.parameters if p.summarized],
        "param_groups": len(groups),
        "versions": _versions(),
        "platform": platform_meta(),
    }
    if plan.distributed.distributed:
        meta["distributed"] = plan.distributed.meta()
    if plan.summary_pass is not None:
        meta["summary_pass"] = plan.summary_pass
    if plan.every != 1:  # absent means every update: the reference traces stay as they were
        meta["every"] = plan.every
    if not plan.cos_d_prev:
        meta["cos_d_prev"] = False
    meta.update(caller)
    if plan.records_state:
        meta["state"] = {}  # filled at the first recorded update
    return meta


def d_note(family: Family, groups: Sequence[Mapping[str, Any]]) -> str | None:
    """Why d is measured or empty where one might expect otherwise (a subclass's step, groups without lr); None."""
    notes = [family.d_reason] if family.d_reason else []
    for index, group in enumerate(groups):
        if group_lr(group) is None:
            what = "has no lr" if "lr" not in group else f"has lr {group['lr']!r}, not a number"
            notes.append(f"d empty for group {index}: it {what} (the displacement is still recorded)")
    return "; ".join(notes) or None


def _json_option(value: Any) -> Any:
    """A group option as JSON (tensors of one element become floats); raises TypeError if impossible."""
    if isinstance(value, Tensor) and value.numel() == 1:
        return value.item()
    if isinstance(value, (tuple, list)):
        return [_json_option(item) for item in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(type(value).__name__)


def _group_options(group: Mapping[str, Any]) -> dict[str, Any]:
    """A parameter group's options as JSON (those that cannot be, e.g. a callable, left out)."""
    options = {}
    for key, value in group.items():
        if key == "params":
            continue
        try:
            options[key] = _json_option(value)
        except TypeError:
            pass
    return options


def _versions() -> dict[str, str | None]:
    try:
        from importlib.metadata import version

        tracer_version: str | None = version("tracer")
    except Exception:  # not installed as a distribution
        tracer_version = None
    return {
        "tracer": tracer_version,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
    }
