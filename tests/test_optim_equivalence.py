"""Ours against torch.optim: bitwise against the for-loop, within tolerances against foreach and fused.

torch's for-loop implementation (foreach=False) is the ground truth: after
every step, parameters and every state tensor must be torch.equal to it.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from optim_configs import (
    ALL_CONFIGS,
    DTYPES,
    FAST_VARIANT_CONFIGS,
    REPRESENTATIVE_CONFIGS,
    SCHEDULERS,
    SHAPE_SETS,
    TORCH_FAST_VARIANTS,
    OptimConfig,
    run_side_by_side,
)

dtype_params = pytest.mark.parametrize(
    "dtype", DTYPES, ids=lambda dtype: str(dtype).removeprefix("torch.")
)
shapes_params = pytest.mark.parametrize("shapes", SHAPE_SETS.values(), ids=SHAPE_SETS.keys())


@pytest.mark.parametrize("config", ALL_CONFIGS, ids=lambda config: config.id)
@dtype_params
@shapes_params
def test_every_flag_combination_matches_torch_for_loop_bitwise(config, dtype, shapes):
    run_side_by_side(config, dtype, shapes)


# One call runs the config without a scheduler and under each of them (the
# failure report names the scheduler).
@pytest.mark.parametrize("config", REPRESENTATIVE_CONFIGS, ids=lambda config: config.id)
@dtype_params
@shapes_params
def test_with_every_scheduler_matches_torch_for_loop_bitwise(config, dtype, shapes):
    run_side_by_side(config, dtype, shapes, schedulers=SCHEDULERS)


# torch's foreach and fused variants compute the same algebra in another order
# (foreach: whole-list operations with the bias corrections folded differently,
# e.g. Adam's denom = sqrt(s) / (sqrt(bc2) * step_size) + eps / step_size;
# fused: one vectorized kernel that may contract a*b+c into an FMA), so each
# operation may round differently in its last bit, and the differences carry
# over from step to step. Measured with assert_optimizers_match's gradients
# over every config here, 25 steps, both dtypes (its unit: ulps of the
# reference value in its dtype, tracer.ulps): foreach bit for bit; fused at
# most 249 (SGD with momentum, float32; Adam at most 4, AdamW 14), and at most
# 8 under ATEN_CPU_CAPABILITY=default. A difference of a few ulps of the
# operands counts hundreds of ulps where a result is near zero (a momentum
# buffer changing sign). The tolerance, 2048 ulps, leaves a margin of ~8 for
# other machines' kernels.
FAST_VARIANT_ULPS = 2048
FAST_VARIANT_CASES = [
    pytest.param(config, variant, id=f"{config.id}-{variant}")
    for config in FAST_VARIANT_CONFIGS
    for variant in TORCH_FAST_VARIANTS[config.name]
]


@pytest.mark.parametrize(("config", "variant"), FAST_VARIANT_CASES)
@dtype_params
def test_agrees_with_torch_foreach_and_fused_within_tolerance(config, variant, dtype):
    run_side_by_side(
        config,
        dtype,
        SHAPE_SETS["several-tensors"],
        reference={variant: True},
        ulps=FAST_VARIANT_ULPS,
    )


# ---------------------------------------------------------------- random configurations

_optimizer_configs = st.one_of(
    st.builds(
        lambda lr, momentum, dampening, nesterov, weight_decay, maximize: OptimConfig(
            "sgd",
            {
                "lr": lr,
                "momentum": momentum,
                "dampening": 0.0 if nesterov else dampening,
                "nesterov": nesterov and momentum > 0,
                "weight_decay": weight_decay,
                "maximize": maximize,
            },
        ),
        st.floats(0.0, 1.0),
        st.sampled_from([0.0, 0.5, 0.9, 0.99]),
        st.floats(0.0, 1.0),
        st.booleans(),
        st.floats(0.0, 1.0),
        st.booleans(),
    ),
    st.builds(
        lambda lr, alpha, eps, weight_decay, momentum, centered, maximize: OptimConfig(
            "rmsprop",
            {
                "lr": lr,
                "alpha": alpha,
                "eps": eps,
                "weight_decay": weight_decay,
                "momentum": momentum,
                "centered": centered,
                "maximize": maximize,
            },
        ),
        st.floats(0.0, 1.0),
        st.floats(0.5, 0.999),
        st.sampled_from([1e-8, 1e-6, 1e-3]),
        st.floats(0.0, 1.0),
        st.sampled_from([0.0, 0.5, 0.9]),
        st.booleans(),
        st.booleans(),
    ),
    st.builds(
        lambda name, lr, beta1, beta2, eps, weight_decay, amsgrad, maximize: OptimConfig(
            name,
            {
                "lr": lr,
                "betas": (beta1, beta2),
                "eps": eps,
                "weight_decay": weight_decay,
                "amsgrad": amsgrad,
                "maximize": maximize,
            },
        ),
        st.sampled_from(["adam", "adamw"]),
        st.floats(0.0, 1.0),
        st.floats(0.0, 0.99),
        st.floats(0.0, 0.9999),
        st.sampled_from([1e-8, 1e-6, 1e-3]),
        st.floats(0.0, 1.0),
        st.booleans(),
        st.booleans(),
    ),
)
_shape_lists = st.lists(st.lists(st.integers(1, 5), max_size=3).map(tuple), min_size=1, max_size=4)


@settings(max_examples=40, deadline=None)
@given(
    config=_optimizer_configs,
    shapes=_shape_lists,
    dtype=st.sampled_from(DTYPES),
    steps=st.integers(1, 12),
    seed=st.integers(0, 2**16),
)
def test_random_valid_configurations_match_torch_for_loop_bitwise(
    config, shapes, dtype, steps, seed
):
    run_side_by_side(config, dtype, shapes, steps=steps, seed=seed)


# ---------------------------------------------------------------- complex parameters

COMPLEX_CONFIGS = [
    OptimConfig("sgd", {"lr": 0.01, "momentum": 0.9, "weight_decay": 0.1, "maximize": True}),
    OptimConfig("rmsprop", {"lr": 0.01, "momentum": 0.5, "centered": True, "weight_decay": 0.1}),
    OptimConfig("adam", {"lr": 0.01, "amsgrad": True, "weight_decay": 0.1}),
    OptimConfig("adamw", {"lr": 0.01, "amsgrad": True, "maximize": True}),
]


@pytest.mark.parametrize("config", COMPLEX_CONFIGS, ids=lambda config: config.id)
@pytest.mark.parametrize(
    "dtype", (torch.complex64, torch.complex128), ids=("complex64", "complex128")
)
def test_complex_parameters_match_torch_for_loop_bitwise(config, dtype):
    run_side_by_side(config, dtype, SHAPE_SETS["several-tensors"])


# ---------------------------------------------------------------- tensor hyperparameters

TENSOR_HYPERPARAMETER_CONFIGS = [
    OptimConfig("sgd", {"lr": torch.tensor(0.01), "momentum": 0.9, "weight_decay": 0.1}),
    OptimConfig("rmsprop", {"lr": torch.tensor([0.01]), "momentum": 0.5, "centered": True}),
    OptimConfig(
        "adam",
        {
            "lr": torch.tensor(0.01),
            "betas": (torch.tensor(0.9), torch.tensor([0.999])),
            "amsgrad": True,
        },
    ),
    OptimConfig("adamw", {"lr": torch.tensor(0.01), "weight_decay": 0.1}),
]


@pytest.mark.parametrize("config", TENSOR_HYPERPARAMETER_CONFIGS, ids=lambda config: config.id)
@dtype_params
def test_tensor_lr_and_betas_match_torch_for_loop_bitwise(config, dtype):
    run_side_by_side(
        config, dtype, SHAPE_SETS["several-tensors"], schedulers=("StepLR", "OneCycleLR")
    )
