"""Path figures: first-steps, paths (still or animated), lr-path, internals.

All of them share one scene: two coordinates of the traces (the `coordinates`
option, by default the problem surface's), over a range given or fitted to the
paths, the start marked; the background is the loss contour with the true
minimum when the problem has a surface over those two coordinates, a plain
plane otherwise (a user's own model): `tracer.render.contour`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from matplotlib.collections import LineCollection
from matplotlib.colors import LogNorm, Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from tracer.errors import RenderError
from tracer.render.animate import DEFAULT_FRAMES, FrameText, frame_indices, write_animation
from tracer.render.common import (
    LINE_STYLES, RenderOptions, TracePath, divergence_marker, is_animated, figure_lr_columns, new_figure,
    place_in_clear_corners, save_still, trace_path, trace_styles,
)
from tracer.render.contour import CoordinatePlane, draw_background, fitted_range, plane_of

CONSTANT_LR_COLOR = "#cc4778"  # plasma's middle: the colour of the lr when it does not change
PATH_SIZE = (640, 500)  # design sizes: pixels at 100 dpi (see common.new_figure)
INTERNALS_SIZE = (1000, 500)


def coordinate_columns(trace: Any, options: RenderOptions, *quantities: str) -> list[str]:
    """`<x>.<q>`, `<y>.<q>` for the two coordinates drawn (RenderError if they are not traced)."""
    plane = plane_of(trace, options.coordinates)
    return [f"{name}.{q}" for q in quantities for name in (plane.x_name, plane.y_name)]


def requires_paths(trace: Any, options: RenderOptions) -> list[str]:
    return coordinate_columns(trace, options, "theta")


def requires_lr_path(trace: Any, options: RenderOptions) -> list[str]:
    return coordinate_columns(trace, options, "theta") + figure_lr_columns(trace)[:1]


def requires_internals(trace: Any, options: RenderOptions) -> list[str]:
    return coordinate_columns(trace, options, "theta", "g", "d") + ["step_size"] + figure_lr_columns(trace)[:1]


def shared_plane(traces: Sequence[Any], options: RenderOptions) -> CoordinatePlane:
    """The one plane every trace is drawn on: same coordinates, and one problem under a contour."""
    planes = [plane_of(t, options.coordinates) for t in traces]
    pairs = {(p.x_name, p.y_name) for p in planes}
    if len(pairs) > 1:
        listed = ", ".join(f"{x},{y}" for x, y in sorted(pairs))
        raise RenderError(f"the traces draw different coordinates by default ({listed}); pick two with coordinates")
    problems = {repr(t.meta.get("problem")) for t in traces}
    if planes[0].surface is not None and len(problems) > 1:
        raise RenderError(f"traces of different problems cannot share one contour: {', '.join(sorted(problems))}")
    return planes[0]


@dataclass
class ContourScene:
    figure: Figure
    ax: Any
    plane: CoordinatePlane
    paths: list[TracePath]
    labels: list[str]
    colors: list[str]
    grid: Any = None  # the figure's gridspec when the contour shares the figure with panels


def contour_scene(traces: Sequence[Any], options: RenderOptions, *, default_size: tuple[int, int],
                  animated: bool = False, plane: CoordinatePlane | None = None, paths: list[TracePath] | None = None,
                  cmap: str = "viridis", grid: tuple[int, int] | None = None, title: str = "",
                  colorbar: bool = True) -> ContourScene:
    """Figure, background axes and each trace's path; the range is options' or fitted."""
    plane = plane if plane is not None else shared_plane(traces, options)
    if paths is None:
        paths = [trace_path(t, plane.x_name, plane.y_name, options.updates) for t in traces]
    labels, colors = trace_styles(traces, options)
    fitted = fitted_range([p.xy for p in paths] + plane.landmarks)
    xlim = options.xlim or fitted[0]
    ylim = options.ylim or fitted[1]
    figure = new_figure(options, default_size, animated=animated)
    width = figure.get_figwidth()  # inches: tick labels and axis labels are sized in points, not in pixels
    spec = None
    if grid is None:
        ax = figure.add_subplot()
        if colorbar:
            # The colour bar is carved out of the axes; its tick labels ("1.3e+03")
            # and its label stand to its right and need about an inch whatever the
            # figure's size (matplotlib's default right margin is 10%).
            figure.subplots_adjust(right=1 - min(0.22, 1.05 / width))
    else:
        # The panels beside the contour carry their ticks and labels on their right (see
        # draw_internals), so the gap holds only the colour bar's ticks and label, whatever
        # the panels' numbers. Margins and gap are in inches, capped so that a small
        # figure keeps room for the contour.
        left, right = min(0.125, 0.75 / width), 1 - min(0.12, 1.05 / width)
        inner = (right - left) * width
        gap = min(1.0, inner / 5)  # the colour bar's tick labels and its label
        spec = figure.add_gridspec(*grid, width_ratios=[1.7, 1], hspace=0.35, left=left, right=right,
                                   wspace=2 * gap / (inner - gap))  # wspace: a fraction of the mean width
        ax = figure.add_subplot(spec[:, 0])
    draw_background(ax, plane, xlim, ylim, cmap=cmap, colorbar=colorbar)
    starts = {tuple(p.xy[0]) for p in paths}
    for index, start in enumerate(sorted(starts)):
        ax.plot(*start, marker="o", markersize=8, color="white", markeredgecolor="black",
                linestyle="none", label="start" if index == 0 else None, zorder=4)
    ax.set_title(options.title if options.title is not None else title)
    return ContourScene(figure, ax, plane, paths, labels, colors, spec)


def _marked_points(scene: ContourScene, *extra: np.ndarray) -> list[np.ndarray]:
    """The points a legend or the clock must not hide: starts, minimum, ends (and `extra`)."""
    return [p.xy[:1] for p in scene.paths] + [p.xy[-1:] for p in scene.paths] + scene.plane.landmarks + list(extra)


def draw_first_steps(traces: Sequence[Any], options: RenderOptions, out: Path, fmt: str) -> None:
    """The first k updates of each trace as arrows on the zoomed contour (article Fig 2)."""
    k = options.first_steps
    first = options.updates[0] if options.updates else 1
    window = (first, first + k - 1)
    plane = shared_plane(traces, options)
    paths = [trace_path(t, plane.x_name, plane.y_name, window) for t in traces]
    scene = contour_scene(traces, options, default_size=PATH_SIZE, plane=plane, paths=paths,
                          title=f"The first {k} updates")
    for path, label, color in zip(scene.paths, scene.labels, scene.colors):
        for start, end in zip(path.xy[:-1], path.xy[1:]):
            scene.ax.annotate("", xy=end, xytext=start, zorder=5,
                              arrowprops=dict(arrowstyle="-|>", color=color, lw=2, mutation_scale=16,
                                              shrinkA=0, shrinkB=0))
        scene.ax.plot([], [], color=color, lw=2, label=label)
    legend = scene.ax.legend(fontsize="small")
    place_in_clear_corners(scene.ax, [legend], _marked_points(scene), [p.xy for p in scene.paths])
    save_still(scene.figure, out, fmt)


def draw_paths(traces: Sequence[Any], options: RenderOptions, out: Path, fmt: str) -> None:
    """Paths on the loss contour (or the plain plane of two coordinates): an animation
    (.gif, .mp4) or the whole paths as a still."""
    animated = is_animated(fmt)
    plane = shared_plane(traces, options)
    scene = contour_scene(traces, options, default_size=PATH_SIZE, animated=animated, plane=plane,
                          title="Paths on the loss surface" if plane.surface is not None else "Paths")
    ax = scene.ax
    lines, heads = [], []
    for label, color in zip(scene.labels, scene.colors):
        (line,) = ax.plot([], [], color=color, lw=1.8, label=label, zorder=5)
        (head,) = ax.plot([], [], marker="o", markersize=7, color=color, markeredgecolor="black",
                          linestyle="none", zorder=6)
        lines.append(line)
        heads.append(head)
    crosses = [divergence_marker(ax, color, path.diverged_at) for path, color in zip(scene.paths, scene.colors)]
    legend = ax.legend(fontsize="x-small", framealpha=0.75)
    first = min(int(p.updates[0]) for p in scene.paths)
    # The clock runs on to the update at which a run diverged, where its X appears.
    last = max(max(int(p.updates[-1]), p.diverged_at or 0) for p in scene.paths)
    timeline = first + frame_indices(last - first + 1, options.frames or DEFAULT_FRAMES)
    clock = max(traces, key=len)
    caption = FrameText(ax, 0.02, 0.97, width=len(_clock_text(clock, last)) + 1)
    place_in_clear_corners(ax, [legend, caption.artist], _marked_points(scene), [p.xy for p in scene.paths])

    def update(frame: int) -> None:
        done = int(timeline[frame])
        for path, line, head, cross in zip(scene.paths, lines, heads, crosses):
            shown = max(1, int(np.searchsorted(path.updates, done, side="right")))
            line.set_data(path.xy[:shown, 0], path.xy[:shown, 1])
            head.set_data(path.xy[shown - 1:shown, 0], path.xy[shown - 1:shown, 1])
            if path.diverged and done >= path.diverged_at:
                cross.set_data(path.xy[-1:, 0], path.xy[-1:, 1])
        caption.set_text(_clock_text(clock, done))

    if not animated:
        update(len(timeline) - 1)
        save_still(scene.figure, out, fmt)
        return
    # Per frame the cost is per artist: crosses join only for paths that diverged.
    moving = lines + heads + [c for c, p in zip(crosses, scene.paths) if p.diverged]
    write_animation(out, fmt, scene.figure, moving, update, len(timeline), options.fps,
                    scene.colors + ["black", "white"], texts=[caption])


def _clock_text(trace: Any, done: int) -> str:
    """'epoch e  batch b  update u' after `done` updates (read from the trace's rows); 'update u'
    alone when the trace has no epoch and batch (recorded without `note(epoch=, batch=)`)."""
    done = max(int(done), 0)
    row = min(done, len(trace)) - 1
    if row < 0 or "epoch" not in trace or "batch" not in trace:
        epoch = batch = 0.0
        noted = "epoch" in trace and "batch" in trace and bool(np.isfinite(trace["epoch"][:1]).all())
    else:
        epoch, batch = trace["epoch"][row], trace["batch"][row]
        noted = bool(np.isfinite(epoch) and np.isfinite(batch))
    if not noted:
        return f"update {done}"
    return f"epoch {int(epoch)}  batch {int(batch)}  update {done}"


def draw_lr_path(traces: Sequence[Any], options: RenderOptions, out: Path, fmt: str) -> None:
    """Paths coloured by the learning rate in effect at each update, so a schedule shows.

    A learning rate that never changes gets one colour and no colour bar: the legend says it."""
    # A grey contour without its colour bar: the one colour scale is the learning rate's.
    scene = contour_scene(traces, options, default_size=PATH_SIZE, cmap="Greys", colorbar=False,
                          title="Paths coloured by the learning rate")
    rates = [t[figure_lr_columns(t)[0]][p.rows] for t, p in zip(traces, scene.paths)]
    finite = np.concatenate([r[np.isfinite(r)] for r in rates])
    if finite.size == 0:
        raise RenderError("no finite learning rate to colour the paths with")
    low, high = float(finite.min()), float(finite.max())
    constant = high == low
    norm = LogNorm(low, high) if low > 0 and not constant else Normalize(low, high if not constant else low + 1)
    mappable = None
    crosses = []
    for index, (path, rate, label, color) in enumerate(zip(scene.paths, rates, scene.labels, scene.colors)):
        style = LINE_STYLES[index % len(LINE_STYLES)]
        segments = np.stack([path.xy[:-1], path.xy[1:]], axis=1)
        if constant:
            collection = LineCollection(segments, colors=CONSTANT_LR_COLOR, linewidths=2.4, linestyles=style, zorder=5)
        else:
            collection = LineCollection(segments, cmap="plasma", norm=norm, linewidths=2.4, linestyles=style, zorder=5)
            collection.set_array(rate[:-1] if len(rate) > 1 else rate)
        mappable = scene.ax.add_collection(collection)
        scene.ax.plot(*path.xy[-1], marker="o", markersize=8, color=color, markeredgecolor="black",
                      linestyle="none", zorder=6)
        if path.diverged:
            divergence_marker(scene.ax, color, path.diverged_at, path.xy[-1])
            crosses.append(path.xy[-1:])
        scene.ax.plot([], [], color=CONSTANT_LR_COLOR if constant else "black", linestyle=style, marker="o",
                      markerfacecolor=color, markeredgecolor="black", label=f"{label} (end ●)")
    if constant:
        scene.ax.plot([], [], color=CONSTANT_LR_COLOR, lw=2.4, label=f"learning rate constant: {low:g}")
    else:
        bar = scene.figure.colorbar(mappable, ax=scene.ax, pad=0.02, fraction=0.05)
        bar.set_label("learning rate")
    legend = scene.ax.legend(fontsize="x-small", framealpha=0.75)
    place_in_clear_corners(scene.ax, [legend], _marked_points(scene, *crosses), [p.xy for p in scene.paths])
    save_still(scene.figure, out, fmt)


def draw_internals(traces: Sequence[Any], options: RenderOptions, out: Path, fmt: str) -> None:
    """At the current point: -g, -v and the step -lr*d as arrows, sqrt(s) as whiskers per axis
    (each projected on the two coordinates drawn), next to step size and lr panels with a
    moving cursor. The step size panel is lr*|d| over every traced coordinate."""
    (trace,) = traces
    animated = is_animated(fmt)
    plane = plane_of(trace, options.coordinates)
    x, y = plane.x_name, plane.y_name
    # One point per row (no point after the last update: it has no g, v, d of its own).
    path = trace_path(trace, x, y, options.updates, with_final=False)
    rows = path.rows
    scene = contour_scene(traces, options, default_size=INTERNALS_SIZE, animated=animated, plane=plane,
                          paths=[path], grid=(2, 2), title="Inside the optimizer")
    figure, ax, color = scene.figure, scene.ax, scene.colors[0]

    def vectors(quantity: str) -> np.ndarray:
        columns = [f"{x}.{quantity}", f"{y}.{quantity}"]
        if not all(c in trace for c in columns):
            return np.full((len(rows), 2), np.nan)
        return np.column_stack([trace[c][rows] for c in columns])

    lr = trace[figure_lr_columns(trace)[0]][rows]
    gradient, momentum, direction = vectors("g"), vectors("v"), vectors("d")
    root_s = np.sqrt(vectors("s"))
    step = -lr[:, None] * direction
    span = min(np.ptp(ax.get_xlim()), np.ptp(ax.get_ylim()))

    def scale(*arrays: np.ndarray) -> float:
        # One factor per quantity for the whole run, so lengths compare across frames; fitted
        # to the 90th percentile, as the first updates' gradients dwarf the later ones.
        lengths = np.concatenate([np.hypot(a[:, 0], a[:, 1]) for a in arrays])
        lengths = lengths[np.isfinite(lengths) & (lengths > 0)]
        return 0.15 * span / float(np.percentile(lengths, 90)) if lengths.size else 0.0

    g_scale, v_scale, step_scale = scale(gradient, root_s), scale(momentum), scale(step)
    arrows = np.stack([-gradient * g_scale, -momentum * v_scale, step * step_scale], axis=1)
    arrows = np.nan_to_num(arrows, nan=0.0, posinf=0.0, neginf=0.0)
    arrow_colors = ["#d62728", "#ff7f0e", "#ffffff"]
    quiver = ax.quiver(np.zeros(3), np.zeros(3), np.zeros(3), np.zeros(3), color=arrow_colors,
                       angles="xy", scale_units="xy", scale=1, width=0.006, minlength=0,
                       edgecolor="black", linewidth=0.5, zorder=7)
    (trail,) = ax.plot([], [], color=color, lw=1.5, zorder=5)
    (whiskers,) = ax.plot([], [], color="#17becf", lw=2.2, zorder=6)
    (head,) = ax.plot([], [], marker="o", markersize=7, color=color, markeredgecolor="black",
                      linestyle="none", zorder=8)
    cross = divergence_marker(ax, color, path.diverged_at)
    legend = [
        Line2D([], [], color=color, lw=1.5, label=scene.labels[0]),
        Line2D([], [], color=arrow_colors[0], lw=3, label=f"−g ×{g_scale:.3g}"),
        Line2D([], [], color=arrow_colors[1], lw=3, label=f"−v ×{v_scale:.3g}"),
        Line2D([], [], color=arrow_colors[2], lw=3, label=f"step −lr·d ×{step_scale:.3g}",
               path_effects=None, markeredgecolor="black"),
        Line2D([], [], color="#17becf", lw=2.2, label=f"±√s per axis ×{g_scale:.3g}"),
        *([cross] if path.diverged else []),
    ]
    legend = ax.legend(handles=legend, fontsize="x-small", facecolor="#bbbbbb")

    spec = scene.grid
    updates = trace["update"][rows]
    panels = []
    for position, (values, name) in enumerate(((trace["step_size"][rows], "step size  lr·|d|"), (lr, "lr"))):
        panel = figure.add_subplot(spec[position, 1])
        panel.plot(updates, values, color=color, lw=1.2)
        panel.yaxis.tick_right()  # away from the contour's colour bar and its label
        panel.yaxis.set_label_position("right")
        panel.set_ylabel(name)
        panel.set_xlim(updates[0], max(updates[-1], updates[0] + 1))
        if position == 1:
            panel.set_xlabel("update")
        cursor = panel.axvline(updates[0], color="black", lw=1)
        (dot,) = panel.plot([], [], marker="o", markersize=5, color=color, markeredgecolor="black",
                            linestyle="none")
        panels.append((values, cursor, dot))
    caption = FrameText(ax, 0.02, 0.97, width=len(_clock_text(trace, int(updates[-1]))) + 1)
    place_in_clear_corners(ax, [legend, caption.artist], _marked_points(scene), [path.xy])
    frames = frame_indices(len(rows), options.frames or DEFAULT_FRAMES)

    def update(frame: int) -> None:
        index = int(frames[frame])
        point = path.xy[index]
        trail.set_data(path.xy[: index + 1, 0], path.xy[: index + 1, 1])
        head.set_data([point[0]], [point[1]])
        quiver.set_offsets(np.repeat(point[None, :], 3, axis=0))
        quiver.set_UVC(arrows[index, :, 0], arrows[index, :, 1])
        half = np.nan_to_num(root_s[index] * g_scale)
        whiskers.set_data([point[0] - half[0], point[0] + half[0], np.nan, point[0], point[0]],
                          [point[1], point[1], np.nan, point[1] - half[1], point[1] + half[1]])
        for values, cursor, dot in panels:
            cursor.set_xdata([updates[index], updates[index]])
            dot.set_data([updates[index]], [values[index]])
        if path.diverged and index == len(rows) - 1:  # the last finite point, the row before the divergence
            cross.set_data([point[0]], [point[1]])
        caption.set_text(_clock_text(trace, int(updates[index])))

    moving = [trail, whiskers, quiver, head, cross] + [a for _, c, d in panels for a in (c, d)]
    if not animated:
        update(len(frames) - 1)
        save_still(figure, out, fmt)
        return
    write_animation(out, fmt, figure, moving, update, len(frames), options.fps,
                    [color, "black", "#17becf"] + arrow_colors, texts=[caption])
