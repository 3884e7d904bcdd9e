"""The fitted orbit of one orbit trace (article Figs 4-8, 10, 11)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from tracer.errors import RenderError
from tracer.render.common import RenderOptions, new_figure, save_still, trace_name, trace_styles

FIT_SIZE = (760, 520)
EARTH_RADIUS = 1.0  # AU, circular orbit
MARS_RADIUS = 1.5237


def requires_fit(trace: Any, options: RenderOptions) -> list[str]:
    problem = trace.meta.get("problem") or {}
    if problem.get("name") != "orbit":
        raise RenderError(
            f"figure 'fit' draws an orbit fit; trace {trace_name(trace)} is of problem "
            f"{problem.get('name')!r}, accepted: 'orbit'"
        )
    if trace.final and {"Wa", "Wb"} <= set(trace.final):
        return []
    return ["Wa.theta", "Wb.theta"]


def fitted_axes(trace: Any) -> tuple[float, float]:
    """Final (Wa, Wb): from the trailer, else the last row's theta."""
    final = trace.final or {}
    if "Wa" in final and "Wb" in final and np.isfinite([final["Wa"], final["Wb"]]).all():
        return float(final["Wa"]), float(final["Wb"])
    wa, wb = trace["Wa.theta"], trace["Wb.theta"]
    finite = np.flatnonzero(np.isfinite(wa) & np.isfinite(wb))
    if finite.size == 0:
        raise RenderError(f"trace {trace_name(trace)} has no finite Wa, Wb to draw a fit from")
    return float(wa[finite[-1]]), float(wb[finite[-1]])


def draw_fit(traces: Sequence[Any], options: RenderOptions, out: Path, fmt: str) -> None:
    """Samples, the fitted upper half ellipse, the true one, Earth's and Mars' orbits, the Sun."""
    from tracer.problems.orbit import ORBIT_A, ORBIT_B, ORBIT_C, load_orbit_samples, orbit_curve  # numpy only

    (trace,) = traces
    labels, colors = trace_styles(traces, options)
    wa, wb = fitted_axes(trace)
    x, y = load_orbit_samples()
    figure = new_figure(options, FIT_SIZE)
    ax = figure.add_subplot()
    circle = np.linspace(0.0, 2 * np.pi, 400)
    for radius, name, color in ((EARTH_RADIUS, "Earth's orbit", "#1f77b4"),
                                (MARS_RADIUS, "Mars' orbit", "#d62728")):
        ax.plot(radius * np.cos(circle), radius * np.sin(circle), color=color, lw=1, linestyle=":",
                label=name)
    ax.scatter(np.asarray(x, float), np.asarray(y, float), s=6, color="#7f7f7f", label="samples", zorder=3)
    ax.plot(*orbit_curve(ORBIT_A, ORBIT_B), color="black", lw=1.5, linestyle="--",
            label=f"truth  a={ORBIT_A:.4f}, b={ORBIT_B:.4f}", zorder=4)
    ax.plot(*orbit_curve(wa, wb), color=colors[0], lw=2.2,
            label=f"fit: {labels[0]}", zorder=5)
    ax.plot(0, 0, marker="o", markersize=12, color="#ffbf00", markeredgecolor="#b35900",
            linestyle="none", label="Sun", zorder=6)
    ax.text(0.02, 0.97, f"Wa = {wa:.4f}\nWb = {wb:.4f}", transform=ax.transAxes, va="top",
            fontsize="medium", bbox=dict(boxstyle="round", facecolor="white", alpha=0.9))
    reach = max(MARS_RADIUS, abs(wa) + ORBIT_C, abs(wb)) * 1.08
    ax.set_xlim(*(options.xlim or (-reach, reach)))
    ax.set_ylim(*(options.ylim or (-0.25 * reach, reach)))
    ax.set_aspect("equal", adjustable="box")
    ax.set_xlabel("x (AU)")
    ax.set_ylabel("y (AU)")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize="x-small")
    ax.set_title(options.title if options.title is not None else f"Fitted orbit: {labels[0]}")
    save_still(figure, out, fmt)
