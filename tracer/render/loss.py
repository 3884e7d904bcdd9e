"""The loss figure: the loss and the learning rate against the update, for one trace or several.

Two panels sharing the update axis: the loss the trace noted at each update
(top) and the learning rate in effect (bottom, a step line: it is constant
between scheduler steps). Each y axis is logarithmic where its positive values
span more than two decades (`plots.log_scale_suits`), unless `yscale` says
otherwise for the loss. One colour per trace, as in every other figure.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from tracer.errors import RenderError
from tracer.render.common import (
    RenderOptions, figure_lr_columns, label_update_axis, new_figure, save_still, trace_name, trace_styles,
)
from tracer.render.plots import _mark_diverged, log_scale_suits, plotted_rows
from tracer.trace import Trace

LOSS_SIZE = (800, 560)  # design size: pixels at 100 dpi (see common.new_figure)


def requires_loss(trace: Trace, options: RenderOptions) -> list[str]:
    if "loss" in trace and not np.isfinite(trace["loss"]).any():
        raise RenderError(f"figure 'loss' needs the loss, and trace {trace_name(trace)} noted none "
                          "(record it with recorder.note(loss=...) before each step)")
    return ["update", "loss"] + figure_lr_columns(trace)[:1]


def draw_loss_and_lr(axes: Sequence[Any], traces: Sequence[Trace], options: RenderOptions,
                     labels: Sequence[str], colors: Sequence[str], *, legend: bool = True) -> bool:
    """Loss on axes[0], lr on axes[1], one line per trace against the update; returns whether the lr
    is one constant value (then it has that one tick). The dashboard draws the same two panels
    through this function."""
    loss_ax, lr_ax = axes
    losses, rates = [], []
    for trace, label, color in zip(traces, labels, colors):
        rows = plotted_rows(trace, options.updates)
        update = trace["update"][rows]
        loss = trace["loss"][rows]
        rate = trace[figure_lr_columns(trace)[0]][rows]
        losses.append(loss)
        rates.append(rate)
        loss_ax.plot(update, loss, color=color, lw=1.4, label=label)
        _mark_diverged(loss_ax, trace, update, loss, color)
        lr_ax.plot(update, rate, color=color, lw=1.4, drawstyle="steps-post", label=label)
    loss_scale = options.yscale or ("log" if log_scale_suits(losses) else "linear")
    loss_ax.set_yscale(loss_scale)
    lr_ax.set_yscale("log" if log_scale_suits(rates) else "linear")
    loss_ax.set_ylabel("loss" + ("  (log scale)" if loss_scale == "log" else ""))
    lr_ax.set_ylabel("learning rate")
    drawn = np.concatenate(rates) if rates else np.empty(0)
    constant = np.unique(drawn[np.isfinite(drawn)])
    if constant.size == 1:  # one tick at the value: ticks 5% either side would read as a change that never was
        lr_ax.set_yticks(constant)
        lr_ax.set_ylabel("learning rate\n(constant)")
    label_update_axis(lr_ax)
    for ax in axes:
        ax.grid(True, alpha=0.3)
    if legend:
        loss_ax.legend(loc="best", fontsize="small")
    return constant.size == 1


def draw_loss(traces: Sequence[Trace], options: RenderOptions, out: Path, fmt: str) -> None:
    """The loss and the learning rate against the update (a still)."""
    labels, colors = trace_styles(traces, options)
    figure = new_figure(options, LOSS_SIZE)
    loss_ax, lr_ax = figure.subplots(2, 1, sharex=True, height_ratios=[2.2, 1])
    draw_loss_and_lr((loss_ax, lr_ax), traces, options, labels, colors)
    loss_ax.set_title(options.title if options.title is not None else "Loss and learning rate")
    figure.set_layout_engine("constrained")
    save_still(figure, out, fmt)

