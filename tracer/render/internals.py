"""The internals figure: what the optimizer holds at the current point, drawn on the contour.

At the point theta of the drawn update, as arrows and whiskers projected on
the two coordinates drawn:

- `-g`, the negative gradient; `-v`, the negative momentum buffer / first
  moment; `±√s` per axis, the root of the running average of g² (whiskers):
  all three are in the gradient's units and share ONE scale, so their lengths
  compare (the legend says by how much they are magnified);
- the step `-lr·d`, in the parameters' units (lr times shorter than g for
  SGD): its own scale, stated beside it.

An animation fits both scales to the whole run (the 90th-percentile length),
so lengths compare across frames; a still, which shows one update, to that
update's arrows.

Only what the optimizer has is drawn and listed: SGD has no v and no s, RMSprop
no v (without momentum), Momentum no s. One trace gets step-size and lr panels
with a cursor; several are drawn side by side at the same update, every panel
with the same range and the same two scales.

Text is at least MIN_TEXT_PIXELS tall at the default size (readable when
projected); the colour bar's label stands above it, so it cannot be read as
the label of the panel beside it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from matplotlib import rc_context
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from tracer.render.animate import DEFAULT_FRAMES, FrameText, frame_indices, write_animation
from tracer.render.common import (
    RenderOptions, TracePath, divergence_marker, is_animated, figure_lr_columns, label_update_axis, new_figure,
    place_in_clear_corners, save_still, trace_path, trace_styles,
)
from tracer.render.contour import CoordinatePlane, draw_background, fitted_range, loss_name, plane_of
from tracer.trace import Trace

INTERNALS_SIZE = (1000, 620)  # one trace: contour and two panels (design pixels at 100 dpi), legend below
SIDE_BY_SIDE_PANEL = (430, 690)  # several traces: one contour each, in a row, each legend below
MIN_TEXT_PIXELS = 10.5  # smallest text height in pixels: readable on a projector at the default size
ARROW_COLORS = {"g": "#d62728", "v": "#ff7f0e", "step": "#ffffff"}
ROOT_S_COLOR = "#17becf"
ARROW_SPAN = 0.15  # the 90th-percentile arrow is this fraction of the plot's smaller side


@dataclass(frozen=True)
class Internals:
    """One trace's quantities at each drawn row, on the plane's two coordinates (shape (n, 2))."""

    path: TracePath
    updates: np.ndarray  # update number of each row
    lr: np.ndarray
    gradient: np.ndarray
    momentum: np.ndarray | None  # None: the optimizer has no v
    root_s: np.ndarray | None  # None: the optimizer has no s
    step: np.ndarray
    step_size: np.ndarray


def internals_of(trace: Trace, plane: CoordinatePlane, options: RenderOptions) -> Internals:
    # One point per row (no point after the last update: it has no g, v, d of its own).
    path = trace_path(trace, plane.x_name, plane.y_name, options.updates, with_final=False)
    rows = path.rows

    def vectors(quantity: str) -> np.ndarray | None:
        """None when the trace has no such quantity: columns absent, or empty cells throughout."""
        columns = [f"{plane.x_name}.{quantity}", f"{plane.y_name}.{quantity}"]
        if not all(c in trace for c in columns):
            return None
        values = np.column_stack([trace[c][rows] for c in columns])
        return values if np.isfinite(values).any() else None

    lr = trace[figure_lr_columns(trace)[0]][rows]
    direction = vectors("d")
    s = vectors("s")
    return Internals(path=path, updates=trace["update"][rows].astype(int), lr=lr, gradient=vectors("g"),
                     momentum=vectors("v"), root_s=None if s is None else np.sqrt(s),
                     step=-lr[:, None] * direction, step_size=trace["step_size"][rows])


def _scale(arrays: Sequence[np.ndarray | None], span: float) -> float:
    """One magnification for all of `arrays`, fitted to their 90th-percentile length (the first
    updates' gradients dwarf the later ones), for the whole run so lengths compare across frames."""
    lengths = np.concatenate([np.hypot(a[:, 0], a[:, 1]) for a in arrays if a is not None] or [np.empty(0)])
    lengths = lengths[np.isfinite(lengths) & (lengths > 0)]
    return ARROW_SPAN * span / float(np.percentile(lengths, 90)) if lengths.size else 0.0


def _number(value: float) -> str:
    return f"{value:.3g}"


class InternalsArtists:
    """The moving arrows, whiskers, trail and head of one trace on one contour axes."""

    def __init__(self, ax: Any, internals: Internals, label: str, color: str, gradient_scale: float,
                 step_scale: float, fontsize: float, legend_columns: int) -> None:
        self.ax, self.internals, self.color = ax, internals, color
        zero = np.zeros_like(internals.step)
        self.arrows = np.stack([-internals.gradient * gradient_scale,
                                zero if internals.momentum is None else -internals.momentum * gradient_scale,
                                internals.step * step_scale], axis=1)
        self.arrows = np.nan_to_num(self.arrows, nan=0.0, posinf=0.0, neginf=0.0)
        self.half_root_s = None if internals.root_s is None else np.nan_to_num(internals.root_s * gradient_scale)
        colors = [ARROW_COLORS["g"], ARROW_COLORS["v"], ARROW_COLORS["step"]]
        self.quiver = ax.quiver(np.zeros(3), np.zeros(3), np.zeros(3), np.zeros(3), color=colors,
                                angles="xy", scale_units="xy", scale=1, width=0.006, minlength=0,
                                edgecolor="black", linewidth=0.5, zorder=7)
        (self.trail,) = ax.plot([], [], color=color, lw=1.5, zorder=5)
        (self.whiskers,) = ax.plot([], [], color=ROOT_S_COLOR, lw=2.2, zorder=6)
        (self.head,) = ax.plot([], [], marker="o", markersize=7, color=color, markeredgecolor="black",
                               linestyle="none", zorder=8)
        self.cross = divergence_marker(ax, color, internals.path.diverged_at)
        # Below the contour, where it hides neither the path nor the arrows.
        handles = self._handles(label, gradient_scale, step_scale)
        self.legend = ax.legend(handles=handles, fontsize=fontsize, title=self._scale_words(gradient_scale),
                                title_fontsize=fontsize, alignment="left",
                                loc="upper left" if legend_columns > 1 else "upper center",
                                bbox_to_anchor=(-0.02 if legend_columns > 1 else 0.5, -0.1),
                                ncols=legend_columns, frameon=False)

    def _handles(self, label: str, gradient_scale: float, step_scale: float) -> list[Line2D]:
        """Legend entries for what the optimizer has, and nothing else."""
        internals = self.internals
        handles = [Line2D([], [], color=self.color, lw=1.5, label=label),
                   Line2D([], [], color=ARROW_COLORS["g"], lw=3, label="−g  gradient")]
        if internals.momentum is not None:
            handles.append(Line2D([], [], color=ARROW_COLORS["v"], lw=3, label="−v  momentum"))
        if internals.root_s is not None:
            handles.append(Line2D([], [], color=ROOT_S_COLOR, lw=2.2, label="±√s  per axis"))
        handles.append(Line2D([], [], color=ARROW_COLORS["step"], lw=3, marker="s", markersize=4,
                              markeredgecolor="black", label=f"step −lr·d  (own scale ×{_number(step_scale)})"))
        if internals.path.diverged:
            handles.append(self.cross)
        return handles

    def _scale_words(self, gradient_scale: float) -> str:
        names = ["−g"] + (["−v"] if self.internals.momentum is not None else []) \
            + (["±√s"] if self.internals.root_s is not None else [])
        together = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
        shared = "drawn" if len(names) == 1 else "share one scale,"
        return f"{together} {shared} ×{_number(gradient_scale)}"

    @property
    def moving(self) -> list[Any]:
        return [self.trail, self.whiskers, self.quiver, self.head, self.cross]

    def show(self, done: int) -> int:
        """Draw the state at the last row with update <= `done`; returns that row's index."""
        internals = self.internals
        index = max(0, int(np.searchsorted(internals.updates, done, side="right")) - 1)
        xy = internals.path.xy
        point = xy[index]
        self.trail.set_data(xy[: index + 1, 0], xy[: index + 1, 1])
        self.head.set_data([point[0]], [point[1]])
        self.quiver.set_offsets(np.repeat(point[None, :], 3, axis=0))
        self.quiver.set_UVC(self.arrows[index, :, 0], self.arrows[index, :, 1])
        if self.half_root_s is not None:
            half = self.half_root_s[index]
            self.whiskers.set_data([point[0] - half[0], point[0] + half[0], np.nan, point[0], point[0]],
                                   [point[1], point[1], np.nan, point[1] - half[1], point[1] + half[1]])
        if internals.path.diverged and index == len(xy) - 1:  # the last finite point, before the divergence
            self.cross.set_data([point[0]], [point[1]])
        return index


@dataclass
class InternalsFigure:
    """A built internals figure: `update(frame)` sets every moving artist for frame `frame`."""

    figure: Figure
    views: list[InternalsArtists]
    update: Callable[[int], None]
    moving: list[Any]
    frames: int
    caption: FrameText
    key_colors: list[str]


def build_internals(traces: Sequence[Trace], options: RenderOptions, *, animated: bool = False) -> InternalsFigure:
    """The figure of one trace (contour and panels) or several side by side. Call inside
    `text_size(...)`'s rc_context (draw_internals does) so that every text is readable."""
    from tracer.render.paths import clock_text, shared_plane, start_markers

    plane = shared_plane(traces, options) if len(traces) > 1 else plane_of(traces[0], options.coordinates)
    all_internals = [internals_of(t, plane, options) for t in traces]
    labels, colors = trace_styles(traces, options)
    fitted = fitted_range([i.path.xy for i in all_internals] + plane.landmarks)
    xlim, ylim = options.xlim or fitted[0], options.ylim or fitted[1]
    single = len(traces) == 1
    figure = new_figure(options, internals_design(len(traces)), animated=animated)
    fontsize = text_points(figure)
    if single:
        axes, grid = _single_layout(figure)
    else:
        grid = None
        axes = list(figure.subplots(1, len(traces), sharex=True, sharey=True, squeeze=False)[0])
        figure.subplots_adjust(left=0.75 / figure.get_figwidth(), right=1 - 1.1 / figure.get_figwidth(),
                               wspace=0.08, bottom=2.1 / figure.get_figheight(), top=0.9)
    images = [draw_background(ax, plane, xlim, ylim, colorbar=single, label_on_top=True) for ax in axes]
    if not single and images[0] is not None:
        from tracer.render.contour import label_colorbar

        bar = figure.colorbar(images[0], ax=axes, pad=0.015, fraction=0.04)
        label_colorbar(bar, loss_name(plane), np.asarray(images[0].norm.boundaries), on_top=True)
    span = min(np.ptp(axes[0].get_xlim()), np.ptp(axes[0].get_ylim()))
    first = min(int(i.updates[0]) for i in all_internals)
    last = max(int(i.updates[-1]) for i in all_internals)
    # An animation keeps one scale for the whole run, so lengths compare across frames; a still
    # shows one update, and its arrows are fitted to that update's (else the first updates'
    # large gradients leave them a few pixels long).
    shown = [slice(None) if animated else slice(max(0, int(np.searchsorted(i.updates, last, "right")) - 1), None)
             for i in all_internals]
    # Shared by every panel: side by side, an arrow's length compares across optimizers too.
    gradient_scale = _scale([a[rows] for i, rows in zip(all_internals, shown)
                             for a in (i.gradient, i.momentum, i.root_s) if a is not None], span)
    step_scale = _scale([i.step[rows] for i, rows in zip(all_internals, shown)], span)
    views = []
    for ax, internals, trace, label, color in zip(axes, all_internals, traces, labels, colors):
        start_markers(ax, [internals.path])
        views.append(InternalsArtists(ax, internals, label, color, gradient_scale, step_scale, fontsize,
                                      legend_columns=3 if single else 1))
        if not single:
            ax.set_title(label, fontsize=fontsize * 1.1)
            if ax is not axes[0]:
                ax.set_ylabel("")
    title = options.title if options.title is not None else "Inside the optimizer"
    panels = _panels(figure, grid, all_internals[0], colors[0]) if single else []
    if single:
        axes[0].set_title(title)
    else:
        figure.suptitle(title)
    timeline = first + frame_indices(last - first + 1, options.frames or DEFAULT_FRAMES)
    clock = max(traces, key=len)
    caption = FrameText(axes[0], 0.02, 0.97, width=len(clock_text(clock, last)) + 1, fontsize=fontsize)
    view = views[0]
    marked = [view.internals.path.xy[:1], view.internals.path.xy[-1:]] + plane.landmarks
    place_in_clear_corners(axes[0], [caption.artist], marked, [view.internals.path.xy])

    def update(frame: int) -> None:
        done = int(timeline[frame])
        for view in views:
            index = view.show(done)
            for values, cursor, dot in panels:
                cursor.set_xdata([view.internals.updates[index]] * 2)
                dot.set_data([view.internals.updates[index]], [values[index]])
        caption.set_text(clock_text(clock, done))

    moving = [a for view in views for a in view.moving] + [a for _, c, d in panels for a in (c, d)]
    key_colors = colors + ["black", ROOT_S_COLOR] + list(ARROW_COLORS.values())
    return InternalsFigure(figure, views, update, moving, len(timeline), caption, key_colors)


def _single_layout(figure: Figure) -> tuple[list[Any], Any]:
    """The contour on the left, two panels on the right (their ticks and labels on their right,
    so the gap holds only the colour bar and its ticks); margins in inches, capped so that a
    small figure keeps room for the contour."""
    width = figure.get_figwidth()
    left, right = min(0.125, 0.75 / width), 1 - min(0.12, 1.05 / width)
    inner = (right - left) * width
    gap = min(0.8, inner / 6)  # the colour bar and its ticks (its label stands on top)
    spec = figure.add_gridspec(2, 2, width_ratios=[1.7, 1], hspace=0.35, left=left, right=right,
                               bottom=1.3 / figure.get_figheight(), top=0.93,
                               wspace=2 * gap / (inner - gap))  # wspace: a fraction of the mean width
    return [figure.add_subplot(spec[:, 0])], spec


def _panels(figure: Figure, spec: Any, internals: Internals, color: str) -> list[tuple[np.ndarray, Any, Any]]:
    """Step size and lr against the update, each with a cursor and a dot at the current update."""
    panels = []
    updates = internals.updates
    for position, (values, name) in enumerate(((internals.step_size, "step size  lr·|d|"), (internals.lr, "lr"))):
        panel = figure.add_subplot(spec[position, 1])
        panel.plot(updates, values, color=color, lw=1.2)
        panel.yaxis.tick_right()  # away from the contour's colour bar
        panel.yaxis.set_label_position("right")
        panel.set_ylabel(name)
        panel.set_xlim(updates[0], max(updates[-1], updates[0] + 1))
        if position == 1:
            label_update_axis(panel)
        cursor = panel.axvline(updates[0], color="black", lw=1)
        (dot,) = panel.plot([], [], marker="o", markersize=5, color=color, markeredgecolor="black",
                            linestyle="none")
        panels.append((values, cursor, dot))
    return panels


def internals_design(count: int) -> tuple[int, int]:
    """Design size of the figure of `count` traces."""
    return INTERNALS_SIZE if count == 1 else (SIDE_BY_SIDE_PANEL[0] * count + 120, SIDE_BY_SIDE_PANEL[1])


def text_points(figure: Figure) -> float:
    """The font size in points that is MIN_TEXT_PIXELS tall at the figure's dpi (at least 10 pt)."""
    return max(10.0, MIN_TEXT_PIXELS * 72.0 / figure.dpi)


def text_size(options: RenderOptions, design: tuple[int, int], animated: bool) -> dict[str, float]:
    """rcParams that make every default-sized text (ticks, labels) at least MIN_TEXT_PIXELS."""
    probe = new_figure(options, design, animated=animated)
    return {"font.size": text_points(probe)}


def draw_internals(traces: Sequence[Trace], options: RenderOptions, out: Path, fmt: str) -> None:
    """At the current point: -g, -v and ±√s (one scale), the step -lr*d (its own), next to step
    size and lr panels with a moving cursor; several traces side by side at the same update."""
    animated = is_animated(fmt)
    design = internals_design(len(traces))
    # Tick labels are made when drawn: the size must hold while saving too.
    with rc_context(text_size(options, design, animated)):
        built = build_internals(traces, options, animated=animated)
        if not animated:
            built.update(built.frames - 1)
            save_still(built.figure, out, fmt)
            return
        write_animation(out, fmt, built.figure, built.moving, built.update, built.frames, options.fps,
                        built.key_colors, texts=[built.caption])
