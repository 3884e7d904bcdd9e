"""Test helper: compare a freshly written trace with a committed reference trace.

::

    def test_adam_orbit(tmp_path):
        fresh = run_experiment(RunConfig(..., out=tmp_path / "adam.trace.csv"))
        assert_trace_matches(fresh, "logs/adam.trace.csv", cross_platform=Tolerance(ulps=64))

Bit for bit when both traces were made on the same platform (same kernel
fingerprint, ``tracer.platform``); across platforms only within the
``cross_platform`` tolerance the caller declares (measured, not guessed).

Regenerating the committed traces after an intended change: run the tests
with the environment variable ``TRACER_REGENERATE=1``; each call then copies
the fresh trace over the committed one instead of comparing, and passes::

    TRACER_REGENERATE=1 .venv/bin/python -m pytest tests/
    git diff --stat logs/    # review, then commit the new references
"""

from __future__ import annotations

import os
import pathlib
import shutil
from typing import Sequence

from tracer.diff import Tolerance, diff_traces
from tracer.platform import describe_platform, fingerprint_of, same_platform
from tracer.trace import load_trace

REGENERATE_VARIABLE = "TRACER_REGENERATE"


def __getattr__(name: str):
    """``assert_optimizers_match`` and ``compare_optimizers`` (tracer.optimizer_check), imported on first
    use: they need torch, and comparing traces here must not import it."""
    if name in ("assert_optimizers_match", "compare_optimizers"):
        from tracer import optimizer_check

        return getattr(optimizer_check, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def regenerating() -> bool:
    """Whether ``TRACER_REGENERATE=1`` asks to rewrite the committed traces."""
    return os.environ.get(REGENERATE_VARIABLE, "") == "1"


def assert_trace_matches(
    fresh: str | os.PathLike,
    committed: str | os.PathLike,
    *,
    rtol: float = 0.0,
    atol: float = 0.0,
    columns: Sequence[str] | None = None,
    cross_platform: Tolerance | None = None,
) -> str:
    """Fail with the diff report unless ``fresh`` matches ``committed``; return which comparison applied.

    When both traces carry the same platform fingerprint (``tracer.platform``)
    they must agree bit for bit, or within ``rtol``/``atol`` if given. When
    the fingerprints differ, or a trace has none (written before traces
    recorded their platform: "platform unknown"), bit-for-bit equality is not
    to be expected: they are compared within ``cross_platform``, a measured
    tolerance the caller declares, and without one the assertion fails saying
    so. Metadata differences are shown in the report but do not fail (see
    ``tracer.diff``). When the environment variable ``TRACER_REGENERATE=1``
    is set, the fresh trace is copied over the committed one instead (the
    directory is created if needed) and nothing is compared.

    Returns:
        One line saying which comparison applied, e.g. ``"bit for bit on
        platform 37da3e4cd346"``.

    Raises:
        AssertionError: the traces differ beyond the tolerance that applies,
            the platforms differ and no ``cross_platform`` tolerance is given,
            or the committed trace is missing.
    """
    fresh, committed = pathlib.Path(fresh), pathlib.Path(committed)
    if regenerating():
        committed.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(fresh, committed)
        return f"regenerated {committed} from {fresh} ({REGENERATE_VARIABLE}=1)"
    if not committed.exists():
        raise AssertionError(
            f"no committed trace {committed}; create it by running the tests with {REGENERATE_VARIABLE}=1"
        )
    fresh_trace, committed_trace = load_trace(fresh), load_trace(committed)
    if same_platform(fresh_trace.meta, committed_trace.meta):
        tolerance = Tolerance(rtol=rtol, atol=atol)
        applied = f"{tolerance} on the same platform {fingerprint_of(committed_trace.meta)}"
    elif cross_platform is None:
        raise AssertionError(
            f"trace {fresh} and the committed {committed} come from different platforms, so bit-for-bit "
            f"equality does not apply: fresh {describe_platform(fresh_trace.meta)}; committed "
            f"{describe_platform(committed_trace.meta)}. Declare a measured tolerance with "
            f"assert_trace_matches(..., cross_platform=Tolerance(ulps=..., rtol=..., atol=...)) "
            f"(measure it with `tracer diff FRESH COMMITTED`), or regenerate the committed trace on "
            f"this platform with {REGENERATE_VARIABLE}=1"
        )
    else:
        tolerance = cross_platform
        applied = (f"{tolerance} across platforms (fresh {fingerprint_of(fresh_trace.meta) or 'unknown'}, "
                   f"committed {fingerprint_of(committed_trace.meta) or 'unknown'})")
    result = diff_traces(fresh_trace, committed_trace, rtol=tolerance.rtol, atol=tolerance.atol,
                         ulps=tolerance.ulps, columns=columns)
    if not result.equal:
        raise AssertionError(
            f"trace {fresh} differs from the committed {committed} beyond {applied} "
            f"(if the change is intended, regenerate with {REGENERATE_VARIABLE}=1):\n{result.report()}"
        )
    return applied


def record_small_run(
    make_optimizer,
    path: str | os.PathLike | None,
    *,
    steps: int = 24,
    recorder_options: dict | None = None,
    shapes: Sequence[tuple[int, ...]] = ((), ()),
    loss_scale: float = 1.0,
):
    """Train a tiny regression (one parameter per shape in ``shapes``) for ``steps`` updates.

    The toolkit's own tests use it to trace ours and torch's optimizers on the
    same numbers without depending on ``tracer.problems``: 64 fixed samples,
    the prediction is ``sum_k (x * w_k).sum-over-trailing-dims`` and the loss
    a mean squared error times ``loss_scale``. ``make_optimizer(params)``
    builds the optimizer; with ``path`` None nothing is traced. Returns the
    parameters (detached clones) after the last step.
    """
    import torch

    from tracer.recorder import Recorder

    generator = torch.Generator().manual_seed(1234)
    x = torch.rand(64, generator=generator) * 2 - 1
    y = 1.3 * x + 0.4 + 0.05 * torch.randn(64, generator=generator)
    starts = (0.1, 1.8)
    params = []
    for k, shape in enumerate(shapes):
        value = torch.full(shape, starts[k % 2]) + 0.01 * torch.arange(max(1, int(torch.Size(shape).numel()))).reshape(shape)
        params.append(value.clone().requires_grad_(True))
    names = [f"w{k}" for k in range(len(params))]
    optimizer = make_optimizer(params)

    def loop(recorder=None):
        for step in range(steps):
            prediction = sum((p.reshape(-1).sum() if k % 2 else x * p.reshape(-1).mean()) for k, p in enumerate(params))
            loss = loss_scale * ((prediction - y) ** 2).mean()
            optimizer.zero_grad()
            loss.backward()
            if recorder is not None:
                recorder.note(loss=loss.item(), epoch=step // 8, batch=step % 8)
            optimizer.step()

    if path is None:
        loop()
    else:
        with Recorder(optimizer, path, named_parameters=zip(names, params), **(recorder_options or {})) as recorder:
            loop(recorder)
    return [p.detach().clone() for p in params]
