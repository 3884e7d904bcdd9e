"""A run's path on its own loss landscape: the plane of its snapshots and the loss over it.

``find_plane`` (numpy) finds the plane of one or several runs' snapshots;
``evaluate_surface`` (torch) evaluates a model's loss over a grid on it;
``landscape`` does both for trace files and writes the surface file that
``tracer render paths|internals --surface FILE`` draws. The command is
``tracer landscape`` (``tracer.landscape.cli``).
"""

from tracer.landscape.plane import NORMALIZATIONS, Plane, Snapshots, find_plane, load_snapshots
from tracer.landscape.surface import (
    DEFAULT_GRID, SURFACE_FORMAT, evaluate_surface, grid_axes, landscape, run_arrays, write_surface,
)

__all__ = [
    "DEFAULT_GRID", "NORMALIZATIONS", "Plane", "SURFACE_FORMAT", "Snapshots", "evaluate_surface", "find_plane",
    "grid_axes", "landscape", "load_snapshots", "run_arrays", "write_surface",
]
