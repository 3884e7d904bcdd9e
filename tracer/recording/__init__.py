"""The recorder's parts, each owning its records and buffers.

- ``selection``: which parameters and coordinates are traced, and how (full or summary).
- ``full``: full granularity: every traced coordinate's theta, g, v, s, d, theta_next as floats.
- ``summary``: summary granularity: per-tensor norms, largest |d| and cosines.

``tracer.recorder.Recorder`` orchestrates them: life cycle, step hooks, row
assembly and the divergence policy.
"""
