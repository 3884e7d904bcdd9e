"""Plots and animations from trace files; never imports torch.

    render_figure("paths", ["logs/adam.trace.csv", "logs/sgd.trace.csv"], "figures/paths.gif",
                  xlim=(0, 2.5), ylim=(0, 2.5))

Each kind declares the columns it reads; a trace that lacks them, or is of a
problem the kind cannot draw, fails with a RenderError naming what is missing,
before anything is drawn. The file is written to a temporary name beside `out`
and moved over it only when drawing succeeded. Figures are drawn on Agg
canvases, never through pyplot's global state.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from tracer.errors import RenderError
from tracer.render.common import (
    FigureKind, RenderOptions, atomic_output, check_columns, load_traces, output_format, trace_name,
)
from tracer.render.fit import draw_fit, requires_fit
from tracer.render.internals import draw_internals
from tracer.render.loss import draw_loss, requires_loss
from tracer.render.paths import (
    draw_first_steps, draw_lr_path, draw_paths, requires_internals, requires_lr_path, requires_paths,
)
from tracer.render.state import draw_state, requires_state
from tracer.render.plots import (
    draw_dashboard, draw_gradients, draw_lr, draw_step_size, requires_dashboard, requires_gradients,
    requires_lr, requires_step_size,
)
from tracer.trace import Trace

KINDS: dict[str, FigureKind] = {
    kind.name: kind
    for kind in (
        FigureKind("step-size", "effective step size lr*|d| vs update", draw_step_size, requires_step_size),
        FigureKind("first-steps", "the first k updates as arrows on the loss contour (or two chosen coordinates)", draw_first_steps,
                   requires_paths),
        FigureKind("paths", "paths on the loss contour or two chosen coordinates (animated as .gif/.mp4)", draw_paths, requires_paths,
                   animated=True),
        FigureKind("fit", "the fitted orbit of one orbit trace", draw_fit, requires_fit, max_traces=1),
        FigureKind("gradients", "g of each traced coordinate vs update", draw_gradients, requires_gradients),
        FigureKind("lr", "learning rate vs update (or epoch)", draw_lr, requires_lr),
        FigureKind("loss", "loss and learning rate vs update (log scale where they span decades)", draw_loss,
                   requires_loss),
        FigureKind("internals", "g, v, sqrt(s) and the step at the current point, step size and lr panels "
                   "(several traces: side by side at the same update)", draw_internals, requires_internals,
                   animated=True),
        FigureKind("lr-path", "paths on the contour coloured by the learning rate", draw_lr_path,
                   requires_lr_path),
        FigureKind("dashboard", "per-tensor norms and cosines vs update (summary traces)", draw_dashboard,
                   requires_dashboard),
        FigureKind("state", "every optimizer state tensor by its key vs update (norms, or values)", draw_state,
                   requires_state),
    )
}
FIGURE_KINDS: tuple[str, ...] = tuple(KINDS)


def render_figure(kind: str, traces: Sequence[Trace | str | Path], out: str | Path, **options: Any) -> Path:
    """Render figure `kind` of `traces` (Trace objects or paths) into `out`; returns `out`.

    The format follows `out`'s extension: .png, .svg, .pdf, and for the animated
    kinds ("paths", "internals") also .gif and .mp4. Options: xlim, ylim,
    updates (first, last), first_steps, frames, fps, size (w, h) in pixels, dpi
    (default: the kind's layout at `size`, or at about 1100 px wide for a still
    and 800 px for an animation), title, labels, colors, against ("update" or
    "epoch", for "lr"), coordinates: for the path figures the two (x, y) drawn
    (names as in meta["coordinates"]; default the problem surface's, else the
    first two traced), for "gradients" the coordinates drawn (default the first
    8, with a note of how many are left out), smooth (an int >= 1, "dashboard":
    the rolling mean drawn over the faint per-update values, 1 = off; default
    about 1/50 of the updates), yscale ("linear" or "log": "step-size", "lr",
    "gradients", the loss of "loss"; default log for step sizes and losses that span more than two
    decades). "internals" of several traces draws them side by side at the same update.
    In the dashboard the colours name the tensors, so `colors` does not apply.
    Every kind draws traces without notes (no epoch, batch or loss).
    """
    if kind not in KINDS:
        raise RenderError(f"unknown figure kind {kind!r}; accepted: {', '.join(FIGURE_KINDS)}")
    figure_kind = KINDS[kind]
    parsed = RenderOptions.from_mapping(options)
    out = Path(out)
    fmt = output_format(out, figure_kind)
    loaded = load_traces(traces)
    if figure_kind.max_traces is not None and len(loaded) > figure_kind.max_traces:
        raise RenderError(f"figure {kind!r} draws at most {figure_kind.max_traces} trace(s), got {len(loaded)}")
    if parsed.surface is not None:
        return _render_on_surface(figure_kind, loaded, parsed, out, fmt)
    for trace in loaded:
        if len(trace) == 0:
            raise RenderError(f"trace {trace_name(trace)} has no update to draw")
        check_columns(figure_kind, trace, parsed)
    with atomic_output(out) as temporary:
        figure_kind.draw(loaded, parsed, temporary, fmt)
    return out


def _render_on_surface(kind: FigureKind, traces: Sequence[Trace], options: RenderOptions, out: Path, fmt: str) -> Path:
    """paths / internals drawn on a `tracer landscape` surface file (tracer.render.landscape)."""
    from tracer.render.landscape import draw_landscape

    if kind.name not in ("paths", "internals"):
        raise RenderError(f"--surface applies to the paths and internals figures, not {kind.name!r}")
    with atomic_output(out) as temporary:
        draw_landscape(kind.name, traces, options, temporary, fmt)
    return out


__all__ = ["FIGURE_KINDS", "KINDS", "render_figure"]
