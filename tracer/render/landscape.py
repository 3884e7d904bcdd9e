"""Paths on a run's own loss landscape: `tracer render paths|internals TRACE... --surface FILE`.

The surface file (written by `tracer landscape`, read here with numpy only)
holds a plane through parameter space, the loss over a grid on it, and each
run's snapshots projected on it with g, v, d and the step at each snapshot
update. The figure draws the loss contour of the plane, the axes named by the
share of the runs' variance each direction explains, and each trace's path;
at the current point of each path, -g, -v and the step (theta_next - theta)
projected on the plane, as arrows (one scale per quantity for the whole
animation, so lengths compare across frames). `internals` (one trace) adds the
trace's loss and step size per update beside it, with a cursor.

The traces name the runs: each is matched to the surface file's run of the
same trace file name.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from matplotlib import colormaps
from matplotlib.colors import BoundaryNorm
from matplotlib.lines import Line2D

from tracer.errors import RenderError
from tracer.npz_files import read_npz
from tracer.render.animate import DEFAULT_FRAMES, FrameText, frame_indices, write_animation
from tracer.render.common import RenderOptions, label_update_axis, literal, new_figure, save_still, trace_name, trace_styles
from tracer.render.contour import CONTOUR_CMAP, contour_levels
from tracer.trace import Trace

SURFACE_FORMAT = "tracer-surface"
PATHS_SIZE = (700, 560)
INTERNALS_SIZE = (1100, 520)
ARROW_COLORS = {"g": "#d62728", "v": "#ff4fd8", "step": "#ffffff"}  # -g red, -v magenta, step white
ARROW_SHARE = 0.12  # an arrow of the 90th-percentile length spans this share of the plot


@dataclass(frozen=True)
class SurfaceRun:
    """One run of a surface file: points (n + 1, 2) after `done` updates; g, v, d, step (n, 2) at the snapshots."""

    trace: str
    label: str | None
    done: np.ndarray
    xy: np.ndarray
    g: np.ndarray
    v: np.ndarray
    step: np.ndarray


@dataclass(frozen=True)
class SurfaceFile:
    """A surface file read back: grid, loss, explained variance, runs."""

    path: Path
    meta: dict
    x: np.ndarray
    y: np.ndarray
    loss: np.ndarray
    runs: list[SurfaceRun]

    @property
    def explained_variance(self) -> tuple[float, float]:
        first, second = self.meta["explained_variance"]
        return float(first), float(second)


def load_surface(path: str | Path) -> SurfaceFile:
    """Read a surface file; RenderError naming the file when it is missing or not one."""
    path = Path(path)
    arrays, meta = read_npz(path, what="surface", format_name=SURFACE_FORMAT,
                            missing_hint="write it with `tracer landscape`", error=RenderError)
    try:
        runs = [
            SurfaceRun(entry["trace"], entry.get("label"), arrays[f"run{i}_done"], arrays[f"run{i}_xy"],
                       arrays[f"run{i}_g"], arrays[f"run{i}_v"], arrays[f"run{i}_step"])
            for i, entry in enumerate(meta["runs"])
        ]
        loss = arrays["loss"]
        if loss.shape != (len(arrays["y"]), len(arrays["x"])):
            raise ValueError(f"loss of shape {loss.shape} for a {len(arrays['x'])}x{len(arrays['y'])} grid")
        return SurfaceFile(path, meta, arrays["x"], arrays["y"], loss, runs)
    except (KeyError, TypeError, ValueError) as error:
        raise RenderError(f"{path}: not a tracer surface file ({error})") from None


def _runs_of(surface: SurfaceFile, traces: Sequence[Trace]) -> list[SurfaceRun]:
    """Each trace's run in the surface file, matched by trace file name."""
    by_name = {run.trace: run for run in surface.runs}
    matched = []
    for trace in traces:
        name = Path(getattr(trace, "path", "") or "").name
        if name not in by_name:
            raise RenderError(
                f"trace {trace_name(trace)} is not one of the runs of surface {surface.path}: "
                f"{', '.join(sorted(by_name))}"
            )
        matched.append(by_name[name])
    return matched


def _scale(vectors: Sequence[np.ndarray], span: float) -> float:
    """One factor for a quantity over the whole run: its 90th-percentile length becomes ARROW_SHARE of the span."""
    lengths = np.concatenate([np.hypot(v[:, 0], v[:, 1]) for v in vectors])
    lengths = lengths[np.isfinite(lengths) & (lengths > 0)]
    return ARROW_SHARE * span / float(np.percentile(lengths, 90)) if lengths.size else 0.0


def draw_landscape(kind: str, traces: Sequence[Trace], options: RenderOptions, out: Path, fmt: str) -> None:
    """`paths` or `internals` of the traces on the surface file `options.surface`."""
    surface = load_surface(options.surface)
    runs = _runs_of(surface, traces)
    internals = kind == "internals"
    animated = fmt in ("gif", "mp4")
    labels, colors = trace_styles(traces, options)
    figure = new_figure(options, INTERNALS_SIZE if internals else PATHS_SIZE, animated=animated)
    if internals:
        spec = figure.add_gridspec(2, 2, width_ratios=[1.6, 1], hspace=0.35, wspace=0.35, left=0.07, right=0.97)
        ax = figure.add_subplot(spec[:, 0])
    else:
        ax = figure.add_subplot()
        # The colour bar's ticks and label stand to its right and need about 0.9 inch at any size.
        figure.subplots_adjust(right=1 - min(0.2, 0.9 / figure.get_figwidth()))

    # The static background: contour, colour bar, axes named by their explained variance.
    xlim = options.xlim or (float(surface.x[0]), float(surface.x[-1]))
    ylim = options.ylim or (float(surface.y[0]), float(surface.y[-1]))
    levels = contour_levels(surface.loss)
    cmap = colormaps[CONTOUR_CMAP]
    filled = ax.contourf(surface.x, surface.y, np.clip(surface.loss, levels[0], levels[-1]), levels=levels,
                         cmap=cmap, norm=BoundaryNorm(levels, cmap.N))
    bar = figure.colorbar(filled, ax=ax, pad=0.02, fraction=0.05)
    # The loss's name is the surface file's own text: drawn literally, never read as mathtext.
    bar.set_label(f"loss{': ' + literal(str(surface.meta['loss'])) if surface.meta.get('loss') else ''}", fontsize="small")
    if levels[0] > 0 and levels[-1] / levels[0] > 10:
        ticks = levels[:: max(1, len(levels) // 6)]
        bar.set_ticks(ticks, labels=[f"{t:.2g}" for t in ticks])
    first, second = surface.explained_variance
    normalized = " (filter-normalised)" if surface.meta.get("normalization") == "filter" else ""
    ax.set_xlabel(f"direction 1: {first:.1%} of the variance{normalized}")
    ax.set_ylabel(f"direction 2: {second:.1%} of the variance")
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    what = "Inside the optimizer on its loss landscape" if internals else "Paths on the loss landscape"
    ax.set_title(options.title if options.title is not None else f"{what} ({surface.meta.get('parameters')} parameters)")
    for index, start in enumerate(sorted({tuple(run.xy[0]) for run in runs})):
        ax.plot(*start, marker="o", markersize=8, color="white", markeredgecolor="black", linestyle="none",
                label="start" if index == 0 else None, zorder=4)

    span = min(xlim[1] - xlim[0], ylim[1] - ylim[0])
    scales = {q: _scale([getattr(run, q) for run in runs], span) for q in ARROW_COLORS}
    # Arrows at the points where g, v, step were taken (all but the final point); -g and -v point downhill.
    arrows = {q: [getattr(run, q) * (-1.0 if q in ("g", "v") else 1.0) * scales[q] for run in runs]
              for q in ARROW_COLORS}
    lines, heads = [], []
    for label, color in zip(labels, colors):
        (line,) = ax.plot([], [], color=color, lw=1.8, label=label, zorder=5)
        (head,) = ax.plot([], [], marker="o", markersize=7, color=color, markeredgecolor="black",
                          linestyle="none", zorder=8)
        lines.append(line)
        heads.append(head)
    count = len(runs) * len(ARROW_COLORS)
    quiver = ax.quiver(np.zeros(count), np.zeros(count), np.zeros(count), np.zeros(count),
                       color=[c for _ in runs for c in ARROW_COLORS.values()], angles="xy", scale_units="xy",
                       scale=1, width=0.006, minlength=0, edgecolor="black", linewidth=0.5, zorder=7)
    legend = [Line2D([], [], color=color, lw=1.8, label=label) for label, color in zip(labels, colors)]
    legend += [Line2D([], [], marker="o", markersize=7, color="white", markeredgecolor="black", linestyle="none",
                      label="start")]
    legend += [Line2D([], [], color=ARROW_COLORS["g"], lw=3, label=f"−g ×{scales['g']:.3g}"),
               Line2D([], [], color=ARROW_COLORS["v"], lw=3, label=f"−v ×{scales['v']:.3g}"),
               Line2D([], [], color=ARROW_COLORS["step"], lw=3, label=f"step ×{scales['step']:.3g}")]
    ax.legend(handles=legend, loc="upper left", fontsize="x-small", facecolor="#bbbbbb", framealpha=0.85)

    panels = []
    if internals:
        (trace,) = traces
        updates = trace["update"]
        for position, (column, name) in enumerate((("loss", "loss (mini-batch)"), ("step_size", "step size  lr·|d|"))):
            panel = figure.add_subplot(spec[position, 1])
            values = trace[column] if column in trace else np.full(len(trace), np.nan)
            panel.plot(updates, values, color=colors[0], lw=0.8)
            panel.set_ylabel(name)
            if np.nanmin(values, initial=np.inf) > 0 and np.nanmax(values, initial=0) / np.nanmin(values) > 100:
                panel.set_yscale("log")
            if position == 1:
                label_update_axis(panel)
            cursor = panel.axvline(updates[0], color="black", lw=1)
            panels.append(cursor)

    timeline = np.unique(np.concatenate([run.done for run in runs]))
    frames = timeline[frame_indices(len(timeline), options.frames or DEFAULT_FRAMES)]
    caption = FrameText(ax, 0.02, 0.03 + 0.0, width=len(f"update {int(timeline[-1])}") + 1)
    caption.artist.set_va("bottom")

    def update(frame: int) -> None:
        done = int(frames[frame])
        offsets, vectors = [], []
        for index, (run, line, head) in enumerate(zip(runs, lines, heads)):
            shown = max(1, int(np.searchsorted(run.done, done, side="right")))
            line.set_data(run.xy[:shown, 0], run.xy[:shown, 1])
            head.set_data(run.xy[shown - 1:shown, 0], run.xy[shown - 1:shown, 1])
            at = min(shown - 1, len(run.g) - 1)  # the final point has no g: keep the last snapshot's arrows
            for quantity in ARROW_COLORS:
                offsets.append(run.xy[at])
                vectors.append(arrows[quantity][index][at])
        vectors = np.nan_to_num(np.array(vectors), nan=0.0, posinf=0.0, neginf=0.0)
        quiver.set_offsets(np.array(offsets))
        quiver.set_UVC(vectors[:, 0], vectors[:, 1])
        for cursor in panels:
            cursor.set_xdata([max(done, 1), max(done, 1)])
        caption.set_text(f"update {done}")

    moving = lines + heads + [quiver] + panels
    if not animated:
        update(len(frames) - 1)
        save_still(figure, out, fmt)
        return
    write_animation(out, fmt, figure, moving, update, len(frames), options.fps,
                    colors + ["black"] + list(ARROW_COLORS.values()), texts=[caption])
