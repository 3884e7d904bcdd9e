"""The fitted orbit of one orbit trace (article Figs 4-8, 10, 11)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from tracer.errors import RenderError
from tracer.render.common import RenderOptions, new_figure, save_still, trace_name, trace_styles
from tracer.trace import Trace

FIT_WIDTH = 760  # design pixels (100 dpi), scaled to the still width (see common.new_figure)
# Design pixels around the axes: the legend stands right of the data, off it.
FIT_LEFT, FIT_RIGHT, FIT_TOP, FIT_BOTTOM = 78, 250, 40, 48
FIT_AXES_HEIGHT = (160, 520)  # the axes keep the data's aspect (1 AU is 1 AU both ways) within these
Y_BELOW = 0.25  # AU shown below the x axis: the ellipses' ends and the Sun, not the empty lower half


FIT_DRAWN_AU = 1e6
"""The largest |Wa| or |Wb| (AU) a fit figure draws; the orbits themselves are within 2 AU."""


def requires_fit(trace: Trace, options: RenderOptions) -> list[str]:
    problem = trace.meta.get("problem") or {}
    if problem.get("name") != "orbit":
        raise RenderError(
            f"figure 'fit' draws an orbit fit; trace {trace_name(trace)} is of problem "
            f"{problem.get('name')!r}, accepted: 'orbit'"
        )
    if trace.final and {"Wa", "Wb"} <= set(trace.final):
        return []
    return ["Wa.theta", "Wb.theta"]


def fitted_axes(trace: Trace) -> tuple[float, float]:
    """Final (Wa, Wb): from the trailer, else the last row's theta."""
    final = trace.final or {}
    if "Wa" in final and "Wb" in final and np.isfinite([final["Wa"], final["Wb"]]).all():
        return float(final["Wa"]), float(final["Wb"])
    wa, wb = trace["Wa.theta"], trace["Wb.theta"]
    finite = np.flatnonzero(np.isfinite(wa) & np.isfinite(wb))
    if finite.size == 0:
        raise RenderError(f"trace {trace_name(trace)} has no finite Wa, Wb to draw a fit from")
    return float(wa[finite[-1]]), float(wb[finite[-1]])


def _fit_limits(wa: float, wb: float) -> tuple[tuple[float, float], tuple[float, float]]:
    """x and y ranges (AU) holding both circular orbits' upper halves, the truth and the fit."""
    from tracer.problems.orbit import MARS_ORBIT_RADIUS, ORBIT_A, ORBIT_B, ORBIT_C

    pad = 0.12
    left = min(-MARS_ORBIT_RADIUS, -abs(wa) - ORBIT_C, -ORBIT_A - ORBIT_C) - pad
    right = max(MARS_ORBIT_RADIUS, abs(wa) - ORBIT_C) + pad
    top = max(MARS_ORBIT_RADIUS, abs(wb), ORBIT_B) + pad
    return (left, right), (-Y_BELOW, top)


def draw_fit(traces: Sequence[Trace], options: RenderOptions, out: Path, fmt: str) -> None:
    """Samples, the fitted upper half ellipse, the true one, Earth's and Mars' orbits, the Sun.

    The figure's height follows the data's aspect, so no empty band stands above the orbits,
    and the legend (with the final Wa, Wb) stands right of the axes, off the data."""
    from tracer.problems.orbit import (  # numpy only
        EARTH_ORBIT_RADIUS, MARS_ORBIT_RADIUS, ORBIT_A, ORBIT_B, load_orbit_samples, orbit_curve,
    )

    (trace,) = traces
    labels, colors = trace_styles(traces, options)
    wa, wb = fitted_axes(trace)
    if max(abs(wa), abs(wb)) > FIT_DRAWN_AU:  # axes spanning 1e292 AU beside a 1.5 AU orbit cannot be laid out
        raise RenderError(f"trace {trace_name(trace)}'s fit Wa={wa:.4g}, Wb={wb:.4g} is beyond {FIT_DRAWN_AU:g} AU, "
                          "too far from the orbits to draw; `tracer info` shows how the run went")
    x, y = load_orbit_samples()
    xlim, ylim = _fit_limits(wa, wb)
    xlim, ylim = options.xlim or xlim, options.ylim or ylim
    axes_width = FIT_WIDTH - FIT_LEFT - FIT_RIGHT
    axes_height = min(max(axes_width * (ylim[1] - ylim[0]) / (xlim[1] - xlim[0]), FIT_AXES_HEIGHT[0]),
                      FIT_AXES_HEIGHT[1])
    height = round(axes_height + FIT_TOP + FIT_BOTTOM)
    figure = new_figure(options, (FIT_WIDTH, height))
    figure.subplots_adjust(left=FIT_LEFT / FIT_WIDTH, right=1 - FIT_RIGHT / FIT_WIDTH,
                           top=1 - FIT_TOP / height, bottom=FIT_BOTTOM / height)
    ax = figure.add_subplot()
    circle = np.linspace(0.0, 2 * np.pi, 400)
    for radius, name, color in ((EARTH_ORBIT_RADIUS, "Earth's orbit", "#1f77b4"),
                                (MARS_ORBIT_RADIUS, "Mars' orbit", "#d62728")):
        ax.plot(radius * np.cos(circle), radius * np.sin(circle), color=color, lw=1, linestyle=":",
                label=name)
    ax.scatter(np.asarray(x, float), np.asarray(y, float), s=6, color="#7f7f7f", label="samples", zorder=3)
    ax.plot(*orbit_curve(ORBIT_A, ORBIT_B), color="black", lw=1.5, linestyle="--",
            label=f"truth a={ORBIT_A:.4f}, b={ORBIT_B:.4f}", zorder=4)
    ax.plot(*orbit_curve(wa, wb), color=colors[0], lw=2.2, label=f"fit Wa={wa:.4f}, Wb={wb:.4f}", zorder=5)
    ax.plot(0, 0, marker="o", markersize=12, color="#ffbf00", markeredgecolor="#b35900",
            linestyle="none", label="Sun", zorder=6)
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    ax.set_aspect("equal", adjustable="box")
    ax.set_xlabel("x (AU)")
    ax.set_ylabel("y (AU)")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, fontsize="small",
              title=labels[0], title_fontsize="small", alignment="left")
    ax.set_title(options.title if options.title is not None else f"Fitted orbit: {labels[0]}")
    save_still(figure, out, fmt)
