"""The recorder's parts, each owning its records and buffers.

- ``plan``: everything decided before the first update (``plan_recording``), and the rules of a recording.
- ``selection``: which parameters and coordinates are traced, and how (full or summary).
- ``full``: full granularity: every traced coordinate's theta, g, v, s, d, theta_next as floats.
- ``summary``: summary granularity: per-tensor norms, largest |d| and cosines.
- ``state``: every optimizer state tensor, by key.
- ``rows``: a recorded update's values made into its ``tracer.trace.TraceRow``.
- ``snapshots``: snapshots of the whole model for ``tracer landscape``.
- ``distributed``: under torch.distributed (DDP, ZeRO, FSDP2): the strategy, the rank's role and its
  collectives; check mode.
- ``sharding``: what each rank reduces of each tensor and how the ranks' partial reductions combine.
- ``distributed_full``: coordinates traced in full where they live on one rank (ZeRO, FSDP2).

Imports go one way: ``distributed`` uses ``distributed_full``, both use ``sharding``.

``tracer.recorder.Recorder`` orchestrates them: life cycle, step hooks and the
divergence and write-failure policies.
"""
