"""The recorder: one trace row per ``optimizer.step()``, through step hooks.

Usage, with no other change to a training loop::

    with Recorder(optimizer, "logs/run.trace.csv", named_parameters=model.named_parameters()) as rec:
        for epoch in range(epochs):
            for batch, (x, y) in enumerate(loader):
                loss = loss_fn(model(x), y)
                optimizer.zero_grad()
                loss.backward()
                rec.note(loss=loss.item(), epoch=epoch, batch=batch)  # optional
                optimizer.step()

A step pre-hook snapshots the parameters; the post-hook appends one row to
the trace file. The recorder orchestrates (life cycle, hooks, divergence
and write-failure policies); what it records and how is decided once, by
``tracer.recording.plan``, and its parts live in ``tracer.recording``:
``selection`` (what is traced), ``full`` (every coordinate, d as the
optimizer's family in ``tracer.families`` says: recomputed in the
optimizer's own op order, or measured), ``summary`` (per-tensor reductions,
d measured from the displacement), ``state`` and ``rows`` (a recorded
update made into its typed row). The recorder only reads: a
traced run's parameters equal an untraced run's bit for bit.
"""

from __future__ import annotations

import collections
import functools
import itertools
import math
import operator
import os
import pathlib
import warnings
from typing import Any, Iterable, Mapping, Sequence

import torch
from torch import Tensor

from tracer.errors import DivergenceError, TracerError, TraceWriteError
from tracer.families import check_state_keys, group_lr
from tracer.recording.distributed import DistributedOptions, RanksDifferError, inner_optimizer
from tracer.recording.distributed_full import ShardedFullReader
from tracer.recording.full import FullReader
from tracer.recording.plan import IF_EXISTS, ON_DIVERGENCE, ON_WRITE_ERROR, plan_recording
from tracer.recording.rows import PendingRow, assemble, final_coordinates
from tracer.recording.state import StateReader, discover, from_names, is_state_column, unrecorded
from tracer.recording.snapshots import SnapshotKeeper, SnapshotPolicy
from tracer.recording.summary import SummaryReducer
from tracer.trace import FULL_QUANTITIES, GRANULARITIES, SUMMARY_QUANTITIES, Trace, TraceWriter, row_columns

__all__ = ["Recorder", "RecorderNotStartedWarning", "GRANULARITIES", "ON_DIVERGENCE", "ON_WRITE_ERROR", "IF_EXISTS",
           "FULL_QUANTITIES", "SUMMARY_QUANTITIES"]

def _without_grad(hook):
    """``hook`` run with autograd off, as under ``@torch.no_grad()``, whose context object costs more per call
    than a traced update of a tiny model can spare (the hooks run twice per update)."""

    @functools.wraps(hook)
    def run(*args, **kwargs):
        enabled = torch.is_grad_enabled()
        torch.set_grad_enabled(False)
        try:
            return hook(*args, **kwargs)
        finally:
            torch.set_grad_enabled(enabled)

    return run


class RecorderNotStartedWarning(UserWarning):
    """The optimizer of a Recorder that was constructed but never started took a step (nothing is recorded)."""


class _NotStartedAlarm:
    """A step pre-hook that says once, at the optimizer's first step, that its Recorder was never started.

    The Recorder does not start itself: the trace's trailer is written by ``close`` (``with`` or a call), which an
    implicit start could not promise, and a file opened behind the user's back is worse than one line saying so.
    It holds the path, not the Recorder, so an abandoned Recorder is still freed.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, path: pathlib.Path) -> None:
        self.path = path
        self.said = False
        self.handle = optimizer.register_step_pre_hook(self)

    def __call__(self, optimizer, args, kwargs) -> None:
        if self.said:  # the hook stays (torch refuses a hook removing itself while the hooks run): silent now
            return
        self.said = True
        warnings.warn(
            f"a Recorder for {self.path} was constructed but never started, so it records nothing: use "
            f"`with Recorder(...) as rec:` around the training loop, or call rec.start() before the first step",
            RecorderNotStartedWarning,
            stacklevel=2,
        )


class Recorder:
    """Record what an optimizer does at every update into a trace file.

    Args:
        optimizer: any ``torch.optim.Optimizer``: torch's (every one, with
            any flags, foreach and fused included), tracer.optim's, or one
            the user wrote. Its family (``tracer.families``) says how d is
            obtained: recomputed for the SGD, RMSprop and Adam families,
            measured ``(theta - theta_next) / lr`` for every other and for a
            subclass that overrides ``step()`` (the metadata's
            ``optimizer.d_note`` says why).
        path: the trace file to write (tracer.trace format, schema version 1).
        named_parameters: (name, tensor) pairs, e.g. ``model.named_parameters()``;
            parameters not named there are called p0, p1, ... by their
            position in the optimizer's groups.
        granularity: "full" (every coordinate; default) or "summary" (per
            parameter tensor: norms, largest |d|, cosines).
        full: parameter names or coordinates (``"w[3]"``) traced in full while
            everything else is summarised; the file's granularity is "mixed".
        meta: merged into the file's metadata (label, problem, scheduler,
            epochs, batch_size, seed, ...).
        on_divergence: "stop" raises DivergenceError from ``step()`` once the
            loss, g, v, s or theta stops being finite (the row is written and
            the trailer says "diverged"); "continue" keeps recording.
        if_exists: what to do when ``path`` already exists: "error" (default)
            refuses it; "append" continues that trace (resuming from a
            checkpoint: update numbers go on, its columns, optimizer class and
            parameters must be this run's; the first appended row has no
            ``cos_d_prev``); "overwrite" replaces it.
        distributed: options under torch.distributed (check mode, loss
            averaging, collective timeout); the strategy (DDP, ZeRO, FSDP2)
            is detected. Construct the Recorder on every rank with the same
            arguments; rank 0 writes ``path``. See tracer.recording.distributed.
        every: record updates 1, 1 + every, 1 + 2 * every, ... only (default
            1: all). The others are left alone (no snapshot, no reduction, no
            row), except the update just before a recorded one, which is
            measured without reductions so that ``cos_d_prev`` still compares
            with the previous update (``tracer.recording.summary``). The
            ``update`` column says which updates the trace holds; the metadata
            holds ``every`` when it is not 1. Divergence is checked at
            recorded updates.
        summary_pass: how summary reductions are computed
            (``tracer.summaries``): "auto" (default) is "native" where
            its C loop builds (one pass over memory, sums in a fixed
            order, the same on every CPU), else "eager" (torch ops). They agree within the
            tolerances of ``tracer.summaries.eager``; the metadata's
            ``summary_pass`` says which ran. With the native pass and a
            ``tracer.optim`` optimizer made with ``fused=True``, the
            reductions run inside the optimizer's own pass over memory
            (no snapshot before the step, no pass after it), with the
            same numbers bit for bit (``tracer.recording.summary``).
        state_keys: the optimizer state keys of v and s, e.g.
            ``{"v": "exp_avg", "s": "exp_avg_sq"}``, for an optimizer the
            family table does not know (or to override it); None (default):
            the family's. A key the optimizer's state does not have after its
            first step raises TracerError naming the keys it has. Every state
            tensor is recorded under its own key regardless.
        record_state: record every optimizer state tensor under its key
            (``tracer.recording.state``: per coordinate at full granularity
            where it has the parameter's shape, else its norm; the
            metadata's ``state`` lists every key per parameter); False
            leaves the state to v and s (the reference experiments' traces).
        snapshots: a SnapshotPolicy (e.g. ``SnapshotPolicy(every=10, limit=200)``)
            to keep snapshots of the whole model, with g, v and d, every k
            updates and at the end, in ``<run>.snapshots.npz`` beside the
            trace (named in the metadata's ``snapshots``), for
            ``tracer landscape``; None (default): no snapshots. Not with
            ``if_exists="append"`` (the snapshots would hold only the new part).
        cos_d_prev: keep each summarised tensor's previous delta to compute
            ``cos_d_prev`` (default True). False halves the memory tracing
            holds (the snapshot only: 4 bytes per float32 parameter instead
            of 8) and leaves ``cos_d_prev`` empty in every row; the other
            cells are the same bit for bit. The metadata says
            ``"cos_d_prev": false``.
        on_write_error: what a trace file that cannot be written (a full
            disk, the file or its folder removed) does: "stop" (default)
            stops recording, not training: one warning, the trace keeps
            every whole row, its trailer (where it can be written) says
            ``interrupted`` and why, and ``write_failure`` says why;
            "raise" raises TraceWriteError from that ``optimizer.step()``
            (after the optimizer's update) instead.

    The trace file is created exclusively and locked while it is written: a
    second Recorder (or process) on the same path is refused in every
    ``if_exists`` mode. As with ``tracer trace``, its folder must exist and
    a symbolic link is never followed.

    The loss of a row is the one given to ``note``, else the one the closure
    of ``optimizer.step(closure)`` returned first (LBFGS calls it several
    times in one step: one row per ``step(closure)``). The trace's columns are
    fixed once traced: after ``add_param_group`` (or a parameter added to a
    group) the next ``step()`` ends the trace cleanly (status "interrupted",
    the trailer's ``reason`` saying why, one warning) and training goes on
    untraced.

    A recomputed d is checked at every update against the displacement
    (``tracer.recording.full``); a parameter whose d disagrees has d measured
    from then on, with one warning, and the trailer's ``d_switched`` names it.
    Where a group has no usable lr (absent, not a number) its lr cells and d
    are empty and the displacement is still recorded.

    Summaries measure d as (theta - theta_next) / lr (exact up to one
    rounding; empty d cells while lr = 0, as theta does not move); full
    granularity recomputes d with the optimizer's own arithmetic where the
    family has a probe, and measures it otherwise.

    On an accelerator the step path never waits for the device (summary
    granularity): the reductions go to a device buffer, then to pinned host
    memory by a non-blocking copy, and the row is written once that copy is
    done: at the next recorded update at the latest, and on ``close``
    (through ``with``, also after an exception). A divergence is therefore
    seen, and DivergenceError raised, up to one recorded update late; the
    trace still ends at the update that diverged. Full granularity reads its
    values at once (``tolist``): it is meant for small models.

    ``|d|`` (for ``u`` and ``step_size``) is the norm over every traced
    parameter together; with several groups ``step_size`` is the norm of
    ``lr_group * d``. A parameter without a gradient at an update has empty
    g, v, s, d and u cells there (the optimizer skipped it).
    """

    def __init__(
        self,
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
    ) -> None:
        # Every option checked and every rule applied here, once (tracer.recording.plan).
        plan = plan_recording(
            optimizer, path, named_parameters=named_parameters, granularity=granularity, full=full, meta=meta,
            on_divergence=on_divergence, if_exists=if_exists, distributed=distributed, every=every,
            summary_pass=summary_pass, snapshots=snapshots, state_keys=state_keys, record_state=record_state,
            cos_d_prev=cos_d_prev, on_write_error=on_write_error,
        )
        self.plan = plan
        """What is recorded and how (``tracer.recording.plan.RecordingPlan``)."""
        self.optimizer = optimizer
        self.path = pathlib.Path(path)
        self.on_divergence = on_divergence
        self.if_exists = if_exists
        self.on_write_error = on_write_error
        self.family = plan.family
        self.granularity = plan.granularity
        self.every = plan.every
        self.cos_d_prev = plan.cos_d_prev
        self.snapshot_policy = plan.snapshots
        self.snapshot_path = plan.snapshot_path
        self.columns = list(plan.columns)  # the state columns join them at the first recorded update
        self.meta = plan.meta  # its "state" is filled at the first recorded update
        self._params = plan.parameters
        self._dist = plan.distributed
        self._summary_pass = plan.summary_pass

        self.write_failure: str | None = None
        """Why recording stopped early (the trace file could not be written), or None; see ``on_write_error``."""
        # Parameters whose recomputed d disagreed with the displacement: {name: {"update", "disagreement", ...}}.
        self.d_switched: dict[str, dict[str, float]] = {}
        self.updates = 0  # optimizer steps taken while attached, recorded or not
        self.recorded = 0  # rows written
        self.diverged_at: int | None = None
        self.final: dict[str, float] = {}
        self._end_reason: str | None = None  # why the trace ended before the run did
        self._state_keys_checked = bool(inner_optimizer(optimizer).state)  # checked by the plan where it has state
        # The state columns, known at the first recorded update (none if not recorded).
        self._state: StateReader | None = None if plan.records_state else StateReader([])
        self._role = "skip"  # of the step under way: one of tracer.recording.plan.ROLES, or "ended"
        self._writer: TraceWriter | None = None  # rank 0's only under torch.distributed
        self._started = False
        self._handles: list[Any] = []
        self._notes: dict[str, Any] = {}
        self._lrs: list[float] = []
        self._full: FullReader | ShardedFullReader | None = None
        self._summary: SummaryReducer | None = None
        self._snapshots: SnapshotKeeper | None = None
        # The shape of the optimizer's groups when traced: parameters per group, and the tensors by identity.
        self._group_sizes = [len(group["params"]) for group in optimizer.param_groups]
        self._group_tensors = [p for group in optimizer.param_groups for p in group["params"]]
        self._closure_loss: float | Tensor | None = None
        self._queue: collections.deque[PendingRow] = collections.deque()
        self._not_started = _NotStartedAlarm(optimizer, self.path)  # removed by start() and close()

    # -- life cycle -------------------------------------------------------------------------

    def start(self) -> "Recorder":
        """Open the trace file and attach to the optimizer (``with`` does this).

        A Recorder whose optimizer steps before it is started records nothing and says so once
        (RecorderNotStartedWarning, at the first step); it never starts itself.
        """
        self._not_started.handle.remove()
        if self._started:
            raise TracerError("this Recorder has already been started; make a new one per run")
        if self._dist.writes:
            # Created exclusively and locked (tracer.trace): a second writer on this path is refused here.
            self._writer = TraceWriter(self.path, self.meta, self.columns, if_exists=self.if_exists,
                                       accept=self._check_resumed)
            if self._writer.resumed is not None:
                self._resume(self._writer.resumed)
        self._started = True
        if not self._dist.records:
            # A DDP rank other than 0: nothing per update, but for its share of the loss's all-reduce.
            if self._dist.averages_loss:
                self._handles = [self.optimizer.register_step_post_hook(self._share_loss)]
            return self
        groups = len(self.optimizer.param_groups)
        self._summary = SummaryReducer(
            self._params, groups, self._dist.sharding, summary_pass=self._summary_pass, keep_previous=self.cos_d_prev
        )
        # A parameter traced partly in full is summarised too: theta before the step is the summary's snapshot.
        before = self._summary.snapshots
        self._full = self._dist.full_reader(self._params, groups, before) or FullReader(self._params, groups, before)
        if self.snapshot_policy is not None:
            self._snapshots = SnapshotKeeper(self._params, self.snapshot_policy, self.snapshot_path)
        self._handles = [
            self.optimizer.register_step_pre_hook(self._pre_step),
            self.optimizer.register_step_post_hook(self._post_step),
        ]
        return self

    def _check_resumed(self, trace: Trace) -> None:
        """Refuse to continue a trace of another run (``if_exists="append"``)."""
        mine, theirs = self.meta["optimizer"], trace.meta.get("optimizer") or {}
        own_columns = [c for c in trace.columns if not is_state_column(c)]
        differences = [
            what
            for what, same in (
                ("columns", own_columns == self.columns),
                ("optimizer class", theirs.get("class") == mine["class"]),
                ("parameters", trace.meta.get("parameters") == self.meta["parameters"]),
            )
            if not same
        ]
        if differences:
            raise TracerError(
                f"cannot append to {self.path}: its {', '.join(differences)} differ from this run's "
                f"(optimizer {theirs.get('class')!r}, {len(trace.columns)} columns); "
                f"pass if_exists='overwrite' or another path"
            )

    def _resume(self, trace: Trace) -> None:
        """Update numbers, final values and divergence go on from the trace being continued."""
        if len(trace):
            self.updates = int(trace["update"][-1])
        self.final = dict(trace.final or {})
        self.diverged_at = trace.diverged_at
        # The state columns go on as the trace has them.
        state_columns = [c for c in trace.columns if is_state_column(c)]
        self._state = StateReader(from_names(self._params, state_columns, inner_optimizer(self.optimizer), self.family))
        self.columns = list(trace.columns)

    @property
    def summary_pass(self) -> str | None:
        """The summary reductions' pass: "native" or "eager"; None without summarised parameters."""
        if self._summary is not None:
            return self._summary.summary_pass
        return self._summary_pass

    def close(self, status: str | None = None) -> None:
        """Detach and write the trailer: "complete" (or "diverged" if it diverged) unless told otherwise."""
        self._not_started.handle.remove()
        for handle in self._handles:
            handle.remove()
        self._handles = []
        if self._writer is None or self._writer.closed:
            return
        self._write_rows(wait=True, stop_on_divergence=False)  # rows whose copy was still under way
        if status is None:
            status = "complete" if self.diverged_at is None else "diverged"
        if self._role != "record" and self._full is not None:
            # The last steps were not recorded: the final coordinates are the parameters' values now.
            self.final.update(self._full.current())
        extra: dict[str, Any] = {}
        if self.d_switched:
            extra["d_switched"] = self.d_switched
        if self._end_reason is not None:
            extra["reason"] = self._end_reason
        if "state" in self.meta and self._state is not None:
            later = unrecorded(self._state.columns, self._params, inner_optimizer(self.optimizer))
            if later:
                extra["state_unrecorded"] = later
        try:
            self._writer.close(status, final=self.final, diverged_at=self.diverged_at, extra=extra)
        except TraceWriteError as error:  # the trailer could not be written; the rows are kept
            self._stop_recording(error)
        if self._snapshots is not None:  # after the trace: a failure here leaves the trace complete
            self._snapshots.write(self.updates, status)

    def __enter__(self) -> "Recorder":
        return self.start()

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None or isinstance(exc, (DivergenceError, RanksDifferError)):
            self.close()
        else:
            self.close("interrupted")
        return False

    def note(self, *, loss: float | Tensor | None = None, epoch: int | None = None, batch: int | None = None) -> None:
        """Values for the next row only (call before ``step()``).

        A loss tensor on an accelerator is copied to the host without waiting, with the update's summaries.
        """
        if loss is not None:
            if isinstance(loss, Tensor):
                loss = loss.detach()
                self._notes["loss"] = float(loss) if loss.device.type == "cpu" else loss
            else:
                self._notes["loss"] = float(loss)
        if epoch is not None:
            self._notes["epoch"] = int(epoch)
        if batch is not None:
            self._notes["batch"] = int(batch)

    # -- the hooks ------------------------------------------------------------------------

    @_without_grad
    def _pre_step(self, optimizer, args, kwargs) -> tuple[tuple, dict] | None:
        if self._end_reason is not None or self.write_failure is not None:
            return None  # the trace ended (the hooks are removed on close, outside step()); training goes on
        sizes = [len(group["params"]) for group in optimizer.param_groups]
        if sizes != self._group_sizes:
            self._end_trace(
                f"the optimizer's parameter groups changed before update {self.updates + 1} (parameters per group: "
                f"{self._group_sizes} traced, {sizes} now), which the trace's columns cannot follow"
            )
            return None
        if not all(map(operator.is_, itertools.chain.from_iterable(g["params"] for g in optimizer.param_groups),
                       self._group_tensors)):
            self._end_trace(
                f"a parameter tensor in the optimizer's groups was replaced by another before update "
                f"{self.updates + 1}, so its rows would show the old tensor"
            )
            return None
        self._role = self.plan.role_of(self.updates + 1)
        if self._role == "skip" and self._snapshots is None:
            return None
        # NaN where a group has no usable lr: d is not measured there (NaN > 0 is false), its lr cell is empty.
        self._lrs = [math.nan if (lr := group_lr(group)) is None else lr for group in optimizer.param_groups]
        if self._snapshots is not None:  # on its own schedule, recorded update or not
            self._snapshots.before_step(self.updates + 1)
        if self._role == "skip":
            return None
        if self._role == "record":
            self._full.snapshot()
            self._summary.snapshot(optimizer, self._lrs)  # a fused tracer.optim.Adam may reduce in its own pass
        else:
            self._summary.snapshot()
        self._closure_loss = None
        # args is (optimizer, closure?) as step() was called.
        closure = kwargs.get("closure", args[1] if len(args) > 1 else None)
        if closure is None:
            return None
        # Hand step() a closure that keeps the loss it returns for this update's row.
        recording = self._recording(closure)
        if "closure" in kwargs:
            return args, {**kwargs, "closure": recording}
        return (args[0], recording, *args[2:]), kwargs

    def _end_trace(self, reason: str) -> None:
        """End the trace at the last recorded update (status "interrupted", ``reason`` in the trailer); training goes on."""
        self._end_reason = reason
        self._role = "ended"
        warnings.warn(f"tracer: {reason}; the trace {self.path} ends at update {self.updates}, training goes on untraced",
                      stacklevel=4)
        # The hooks stay registered, inert, until close(): removing one while step() runs its hooks would break it.
        handles, self._handles = self._handles, []
        self.close("interrupted")
        self._handles = handles

    def _recording(self, closure):
        def recording():
            loss = closure()
            # LBFGS calls the closure several times in one step: the row's loss is the first, at theta before it.
            if loss is not None and self._closure_loss is None:
                # A device tensor is kept as it is, copied with the summaries (as note's): float() would wait for it.
                detached = loss.detach() if isinstance(loss, Tensor) else None
                on_host = detached is None or detached.device.type == "cpu"
                self._closure_loss = float(loss if detached is None else detached) if on_host else detached
            return loss

        return recording

    def _share_loss(self, optimizer, args, kwargs) -> None:
        # The writing rank averages the loss at the updates it records only: join exactly those all-reduces.
        self.updates += 1
        notes, self._notes = self._notes, {}
        if self.plan.role_of(self.updates) == "record":
            loss = notes.get("loss")
            self._dist.loss(None if loss is None else float(loss))

    @_without_grad
    def _post_step(self, optimizer, args, kwargs) -> None:
        if self._end_reason is not None or self.write_failure is not None:
            return
        if self._role != "record":
            self.updates += 1
            self._notes = {}
            if self._snapshots is not None:
                self._snapshots.after_step(optimizer, self.family, self._lrs, self.updates)
            if self._role == "measure":
                self._summary.measure_previous(self._lrs)
            else:
                self._summary.forget_previous()
            return
        self._record(optimizer)

    def _record(self, optimizer) -> None:
        inner = inner_optimizer(optimizer)
        if not self._state_keys_checked and self.plan.state_keys:
            self._state_keys_checked = True
            try:
                check_state_keys(self.family, inner, self.plan.state_keys)
            except TracerError:
                self.close("interrupted")
                raise
        # Before the summaries' reduce: the full reader reads their snapshots before they become displacements.
        full_values, finite_full = self._full.read(optimizer, self.family)
        self.updates += 1
        switches = getattr(self._full, "switches", None)
        while switches:
            self._switched(*switches.pop(0))
        if self._state is None:
            self._start_state(inner)
        state = self._state.read(inner)  # before the summaries: their copy's event follows it
        if self._snapshots is not None:
            self._snapshots.after_step(optimizer, self.family, self._lrs, self.updates)
        notes, self._notes = self._notes, {}
        if "loss" not in notes and self._closure_loss is not None:
            notes["loss"] = self._closure_loss
        if self._dist.averages_loss:  # one all-reduce, now, on every rank alike
            loss = notes.get("loss")
            notes["loss"] = self._dist.loss(None if loss is None else float(loss))
        loss = notes.get("loss")
        if isinstance(loss, Tensor):  # on the device: copied along with the summaries (their event follows it)
            host = torch.empty((), dtype=loss.dtype, pin_memory=True)
            host.copy_(loss, non_blocking=True)
            notes["loss"] = host
        summaries = self._summary.reduce(optimizer, self.family, self._lrs)
        self._queue.append(PendingRow(self.updates, notes, self._lrs, full_values, finite_full, summaries, state))
        # Under torch.distributed rows are written at once: check mode's collective must run on every rank alike.
        self._write_rows(wait=self._dist.distributed, stop_on_divergence=self.on_divergence == "stop")

    def _start_state(self, optimizer: torch.optim.Optimizer) -> None:
        """At the first recorded update: the state columns of the state the optimizer has now, in the header."""
        columns, described = discover(self._params, optimizer, self.family)
        self._state = StateReader(columns)
        self.meta["state"] = described
        if columns:
            self.columns = row_columns(len(optimizer.param_groups), [c for p in self._params for c in p.columns()],
                                       [column.name for column in columns])
        if self._writer is not None and (columns or described):
            try:
                self._writer.restart(self.meta, self.columns)
            except TraceWriteError as error:
                self._stop_recording(error)

    def _switched(self, name: str, error: float, ulps: float) -> None:
        """A parameter's recomputed d disagreed with its displacement: warn once, keep it for the trailer."""
        self.d_switched[name] = {"update": self.updates, "disagreement": error, "roundings": ulps}
        warnings.warn(
            f"tracer: parameter {name!r}: recomputed d disagrees with the displacement at update {self.updates} "
            f"(|theta - lr*d - theta_next| up to {error:.3g}, {ulps:.3g} times the rounding bound): "
            f"the optimizer does not run the {self.family.name} family's arithmetic; d measured for it from here on",
            stacklevel=4,
        )

    def _stop_recording(self, error: TraceWriteError) -> None:
        """A row could not be written: raise (``on_write_error="raise"``), or stop recording with one warning."""
        self.write_failure = str(error)
        self._queue.clear()
        if self.on_write_error == "raise":
            raise error
        warnings.warn(f"tracer: recording stopped, training goes on: {error}", RuntimeWarning, stacklevel=2)

    def _write_rows(self, *, wait: bool, stop_on_divergence: bool) -> None:
        """Write the queued rows in order: all of them if ``wait``, else all but a newest whose copy is not done."""
        while self._queue and self.write_failure is None:
            if not wait and len(self._queue) == 1 and not self._queue[0].summaries.ready():
                return
            row = self._queue.popleft()
            self._write(row)
            if self.diverged_at == row.update and self.on_divergence == "stop":
                self._queue.clear()  # the trace ends at the update that diverged
                if stop_on_divergence:
                    self.close("diverged")
                    loss = row.notes.get("loss")
                    raise DivergenceError(
                        f"the run diverged at update {row.update}: the loss, g, v, s or theta is no longer finite "
                        f"(loss={float(loss) if loss is not None else None!r}); the trace {self.path} ends there. "
                        f"Lower the learning rate, or pass on_divergence='continue' to keep recording"
                    )

    def _write(self, pending: PendingRow) -> None:
        """Assemble and write one row; note a divergence."""
        row, finite = assemble(pending, self._params)
        self.final.update(final_coordinates(pending, self._params))
        if self._writer is not None:
            try:
                self._writer.write_row(row)
            except TraceWriteError as error:
                self._stop_recording(error)
                return
        self.recorded += 1
        if self._dist.options.check and self._dist.distributed:
            drift = self._dist.check(row.update, self.columns, row.cells())
            if drift is not None:
                self.close("interrupted")
                raise RanksDifferError(f"{drift}; the trace {self.path} ends at this update")

        if not finite and self.diverged_at is None:
            self.diverged_at = row.update
