"""tracer.ulps: the one definition of a difference in ulps, used by `tracer diff` and `tracer check-optimizer`."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import tracer.diff
import tracer.optimizer_check.compare
from tracer.errors import TracerError
from tracer.ulps import PRECISIONS, precision_of, ulp, ulps_between

SAMPLES = np.concatenate([
    np.random.default_rng(0).standard_normal(2000) * np.logspace(-40, 30, 2000),
    [0.0, -0.0, 1.0, 2.0, 0.5, 3.0, 1e-45, 1e-310, 6e-8, 65504.0, 1e30],
])


@pytest.mark.parametrize("name", ["float16", "float32", "float64"])
def test_ulp_is_numpys_spacing_of_the_value_in_that_precision(name):
    with np.errstate(over="ignore"):
        rounded = np.abs(SAMPLES).astype(name)
    finite = np.isfinite(rounded) & (rounded < np.finfo(name).max)
    expected = np.spacing(rounded[finite]).astype(np.float64)
    assert np.array_equal(ulp(SAMPLES[finite], name), expected)
    assert np.all(np.isinf(ulp(SAMPLES[~np.isfinite(rounded)], name)))  # beyond the precision's range


def test_bfloat16_ulp_is_the_gap_to_the_next_bfloat16():
    values = torch.tensor(SAMPLES[np.abs(SAMPLES) < 3e38], dtype=torch.bfloat16).abs()
    following = (values.view(torch.int16) + 1).view(torch.bfloat16)  # the next bfloat16 away from zero
    gaps = (following.double() - values.double()).numpy()
    assert np.array_equal(ulp(values.double().numpy(), torch.bfloat16), gaps)


def test_ulps_between_counts_in_the_references_ulps():
    one = np.nextafter(np.float32(0.3), np.float32(1))
    assert ulps_between(float(one), float(np.float32(0.3)), "float32") == 1.0
    assert ulps_between(0.3 + 5 * np.spacing(0.3), 0.3, "float64") == 5.0
    assert ulps_between(np.nan, np.nan, "float64") == 0.0
    assert ulps_between(1.0, np.nan, "float64") == math.inf and ulps_between(np.nan, 1.0, "float64") == math.inf
    assert ulps_between(np.inf, np.inf, "float32") == 0.0 and ulps_between(1.0, np.inf, "float32") == math.inf


def test_precisions_are_named_as_numpy_and_torch_name_them():
    assert precision_of(np.float32) is precision_of("float32") is precision_of(torch.float32) is PRECISIONS["float32"]
    assert precision_of(np.dtype("float16")).mantissa_bits == 10 and precision_of(torch.bfloat16).mantissa_bits == 7
    with pytest.raises(TracerError, match=r"no ulps in torch.int32; accepted: float16, bfloat16, float32, float64"):
        precision_of(torch.int32)


def test_diff_and_check_optimizer_share_the_definition():
    assert tracer.diff.ulp is ulp
    assert tracer.optimizer_check.compare.ulps_between is ulps_between
