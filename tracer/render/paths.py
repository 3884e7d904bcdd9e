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
from tracer.render.contour import CoordinatePlane, draw_background, fitted_range, label_colorbar, loss_name, plane_of
from tracer.trace import Trace

CONSTANT_LR_COLOR = "#cc4778"  # plasma's middle: the colour of the lr when it does not change
PATH_SIZE = (640, 500)  # design sizes: pixels at 100 dpi (see common.new_figure)
LR_PATH_SIZE = (820, 500)  # two colour bars: the loss and the learning rate


def coordinate_columns(trace: Trace, options: RenderOptions, *quantities: str) -> list[str]:
    """`<x>.<q>`, `<y>.<q>` for the two coordinates drawn (RenderError if they are not traced)."""
    plane = plane_of(trace, options.coordinates)
    return [f"{name}.{q}" for q in quantities for name in (plane.x_name, plane.y_name)]


def requires_paths(trace: Trace, options: RenderOptions) -> list[str]:
    return coordinate_columns(trace, options, "theta")


def requires_lr_path(trace: Trace, options: RenderOptions) -> list[str]:
    return coordinate_columns(trace, options, "theta") + figure_lr_columns(trace)[:1]


def requires_internals(trace: Trace, options: RenderOptions) -> list[str]:
    return coordinate_columns(trace, options, "theta", "g", "d") + ["step_size"] + figure_lr_columns(trace)[:1]


def surface_title(plane: CoordinatePlane, what: str) -> str:
    """"Paths on f(x, y) = x**2 + 10*y**2" for a formula; "Paths on the loss surface" for a data loss."""
    if plane.surface is None:
        return what
    formula = plane.surface.formula
    if formula is None:
        return f"{what} on the loss surface"
    return f"{what} on f(x, y) = {formula if len(formula) <= 48 else formula[:45] + '...'}"


def shared_plane(traces: Sequence[Trace], options: RenderOptions) -> CoordinatePlane:
    """The one plane every trace is drawn on: same coordinates, and one problem under a contour."""
    planes = [plane_of(t, options.coordinates) for t in traces]
    pairs = {(p.x_name, p.y_name) for p in planes}
    if len(pairs) > 1:
        listed = ", ".join(f"{x},{y}" for x, y in sorted(pairs))
        raise RenderError(f"the traces draw different coordinates by default ({listed}); pick two with coordinates")
    # The start (x0, y0) moves the path, not the surface: runs from several starts share a contour.
    problems = {_problem_text(t.meta.get("problem")) for t in traces}
    if planes[0].surface is not None and len(problems) > 1:
        raise RenderError(f"traces of different problems cannot share one contour: {'; '.join(sorted(problems))}")
    return planes[0]


def _problem_text(problem: dict | None) -> str:
    """The problem without its start, in a few words (a callable's sampled grid left out)."""
    shown = {k: v for k, v in (problem or {}).items() if k not in ("x0", "y0", "sampled")}
    return ", ".join(f"{k} {v}" for k, v in shown.items())


@dataclass
class ContourScene:
    figure: Figure
    ax: Any
    plane: CoordinatePlane
    paths: list[TracePath]
    labels: list[str]
    colors: list[str]
    grid: Any = None  # the figure's gridspec when the contour shares the figure with panels
    image: Any = None  # the contour's image (None: a plain plane), for a colour bar drawn later


def contour_scene(traces: Sequence[Trace], options: RenderOptions, *, default_size: tuple[int, int],
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
    image = draw_background(ax, plane, xlim, ylim, cmap=cmap, colorbar=colorbar)
    start_markers(ax, paths)
    ax.set_title(options.title if options.title is not None else title)
    return ContourScene(figure, ax, plane, paths, labels, colors, spec, image)


def start_markers(ax: Any, paths: Sequence[TracePath]) -> None:
    """A white dot at each different start point, the first labelled "start"."""
    starts = {tuple(p.xy[0]) for p in paths}
    for index, start in enumerate(sorted(starts)):
        ax.plot(*start, marker="o", markersize=8, color="white", markeredgecolor="black",
                linestyle="none", label="start" if index == 0 else None, zorder=4)


def _marked_points(scene: ContourScene, *extra: np.ndarray) -> list[np.ndarray]:
    """The points a legend or the clock must not hide: starts, minimum, ends (and `extra`)."""
    return [p.xy[:1] for p in scene.paths] + [p.xy[-1:] for p in scene.paths] + scene.plane.landmarks + list(extra)


def draw_first_steps(traces: Sequence[Trace], options: RenderOptions, out: Path, fmt: str) -> None:
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


def draw_paths(traces: Sequence[Trace], options: RenderOptions, out: Path, fmt: str) -> None:
    """Paths on the loss contour (or the plain plane of two coordinates): an animation
    (.gif, .mp4) or the whole paths as a still."""
    animated = is_animated(fmt)
    plane = shared_plane(traces, options)
    scene = contour_scene(traces, options, default_size=PATH_SIZE, animated=animated, plane=plane,
                          title=surface_title(plane, "Paths"))
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
    caption = FrameText(ax, 0.02, 0.97, width=len(clock_text(clock, last)) + 1)
    place_in_clear_corners(ax, [legend, caption.artist], _marked_points(scene), [p.xy for p in scene.paths])

    def update(frame: int) -> None:
        done = int(timeline[frame])
        for path, line, head, cross in zip(scene.paths, lines, heads, crosses):
            shown = max(1, int(np.searchsorted(path.updates, done, side="right")))
            line.set_data(path.xy[:shown, 0], path.xy[:shown, 1])
            head.set_data(path.xy[shown - 1:shown, 0], path.xy[shown - 1:shown, 1])
            if path.diverged and done >= path.diverged_at:
                cross.set_data(path.xy[-1:, 0], path.xy[-1:, 1])
        caption.set_text(clock_text(clock, done))

    if not animated:
        update(len(timeline) - 1)
        save_still(scene.figure, out, fmt)
        return
    # Per frame the cost is per artist: crosses join only for paths that diverged.
    moving = lines + heads + [c for c, p in zip(crosses, scene.paths) if p.diverged]
    write_animation(out, fmt, scene.figure, moving, update, len(timeline), options.fps,
                    scene.colors + ["black", "white"], texts=[caption])


def clock_text(trace: Trace, done: int) -> str:
    """'epoch e  batch b  update u' after `done` updates (read from the trace's rows); 'update u'
    alone when the trace has no epoch and batch (recorded without `note(epoch=, batch=)`) or one
    batch per epoch (a 2-D function: "epoch 999 batch 0" would only repeat the update)."""
    done = max(int(done), 0)
    row = min(done, len(trace)) - 1
    if row < 0 or "epoch" not in trace or "batch" not in trace:
        epoch = batch = 0.0
        noted = "epoch" in trace and "batch" in trace and bool(np.isfinite(trace["epoch"][:1]).all())
    else:
        epoch, batch = trace["epoch"][row], trace["batch"][row]
        noted = bool(np.isfinite(epoch) and np.isfinite(batch))
    if not noted or _one_batch_per_epoch(trace):
        return f"update {done}"
    return f"epoch {int(epoch)}  batch {int(batch)}  update {done}"


def _one_batch_per_epoch(trace: Trace) -> bool:
    if "batch" not in trace or len(trace) < 2:
        return False
    batches = trace["batch"]
    return bool(np.all(batches[np.isfinite(batches)] == 0))


def draw_lr_path(traces: Sequence[Trace], options: RenderOptions, out: Path, fmt: str) -> None:
    """Paths coloured by the learning rate in effect at each update, so a schedule shows.

    A learning rate that never changes gets one colour and no colour bar: the legend says it."""
    # A grey contour, dark meaning low as in every other figure, with its own scale beside the
    # learning rate's.
    scene = contour_scene(traces, options, default_size=LR_PATH_SIZE, cmap="Greys_r", colorbar=False,
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
    bars = _colorbar_axes(scene, (scene.image is not None) + (not constant))
    if scene.image is not None:
        loss_bar = scene.figure.colorbar(scene.image, cax=bars.pop(0))
        label_colorbar(loss_bar, loss_name(scene.plane), np.asarray(scene.image.norm.boundaries))
    if not constant:
        scene.figure.colorbar(mappable, cax=bars.pop(0)).set_label("learning rate")
    legend = scene.ax.legend(fontsize="x-small", framealpha=0.75)
    place_in_clear_corners(scene.ax, [legend], _marked_points(scene, *crosses), [p.xy for p in scene.paths])
    save_still(scene.figure, out, fmt)


def _colorbar_axes(scene: ContourScene, count: int) -> list[Any]:
    """`count` colour-bar axes in a row right of the contour, as tall as it, each followed by
    room for its ticks and label (inches, so at any size)."""
    figure, ax = scene.figure, scene.ax
    width = figure.get_figwidth()
    bar, room, pad = 0.2 / width, 0.95 / width, 0.12 / width
    figure.subplots_adjust(right=1 - 0.01 - count * (pad + bar + room))
    box = ax.get_position()
    return [figure.add_axes((box.x1 + pad + index * (pad + bar + room), box.y0, bar, box.height))
            for index in range(count)]
