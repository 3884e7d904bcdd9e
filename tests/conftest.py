"""Test-wide settings.

Under CI (the CI environment variable set, as .ci/run's environment has it)
hypothesis runs derandomized: the same examples every run, so a submission's
verdict does not depend on luck. Locally it explores new examples each run,
which is how it finds bugs (it found the scheduler-range canonical form).

The device the tests' tensors live on is set here, once: TRACER_TEST_DEVICE
(default cpu). ``TRACER_TEST_DEVICE=cuda make test`` makes CUDA torch's
default device, so every tensor a test creates without naming a device (the
recorder's and optimizers' tests name none) is made there; ``make gpu`` runs
those tests so and the CUDA benchmarks in one command.
"""

import os

import pytest
from hypothesis import settings

TEST_DEVICE = os.environ.get("TRACER_TEST_DEVICE", "cpu")
if TEST_DEVICE != "cpu":
    import torch  # only here: the renderer's tests check that rendering alone never imports torch

    try:
        available = torch.device(TEST_DEVICE).type != "cuda" or torch.cuda.is_available()
    except RuntimeError as error:
        raise pytest.UsageError(f"TRACER_TEST_DEVICE={TEST_DEVICE!r} is not a torch device ({error}); accepted: cpu, cuda, cuda:N")
    if not available:
        raise pytest.UsageError(f"TRACER_TEST_DEVICE={TEST_DEVICE!r} but torch.cuda.is_available() is False here")
    torch.set_default_device(TEST_DEVICE)


@pytest.fixture
def device() -> str:
    """The device the tests run on (TRACER_TEST_DEVICE, default cpu)."""
    return TEST_DEVICE

settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")
