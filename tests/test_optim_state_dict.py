"""A state_dict moves between ours and torch's, both ways, and training continues identically."""

from __future__ import annotations

import copy
import io

import pytest
import torch
from optim_configs import (
    REPRESENTATIVE_CONFIGS,
    SHAPE_SETS,
    OptimConfig,
    assert_bitwise_equal_optimizers,
    make_params,
    set_grads,
)

STATE_DICT_CONFIGS = REPRESENTATIVE_CONFIGS + [
    OptimConfig("sgd", {"lr": 0.01, "momentum": 0.9, "dampening": 0.1}),
    OptimConfig("rmsprop", {"lr": 0.01}),
    OptimConfig("adam", {"lr": 0.01, "weight_decay": 0.1, "decoupled_weight_decay": True}),
    OptimConfig("adamw", {"lr": 0.01, "maximize": True}),
]
STEPS_BEFORE, STEPS_AFTER = 10, 15


def _through_bytes(state_dict: dict) -> dict:
    """Save and load with torch.save, as a checkpoint would."""
    buffer = io.BytesIO()
    torch.save(state_dict, buffer)
    buffer.seek(0)
    return torch.load(buffer)


@pytest.mark.parametrize("dtype", (torch.float32, torch.float64), ids=("float32", "float64"))
@pytest.mark.parametrize(
    ("source", "target"),
    [("torch", "tracer"), ("tracer", "torch")],
    ids=("torch-to-ours", "ours-to-torch"),
)
@pytest.mark.parametrize("config", STATE_DICT_CONFIGS, ids=lambda config: config.id)
def test_state_dict_moves_between_ours_and_torch_and_training_continues_identically(
    config, source, target, dtype
):
    shapes = SHAPE_SETS["several-tensors"]
    extra = {"torch": {"foreach": False}, "tracer": {}}
    source_params = make_params(shapes, dtype)
    source_optimizer = config.make(source_params, impl=source, **extra[source])
    for step in range(STEPS_BEFORE):
        set_grads([source_params], step)
        source_optimizer.step()

    target_params = [param.detach().clone().requires_grad_() for param in source_params]
    # A fresh target whose hyperparameters differ: loading must bring the saved ones back.
    fresh_kwargs = {**config.kwargs, "lr": 0.5}
    target_optimizer = OptimConfig(config.name, fresh_kwargs).make(
        target_params, impl=target, **extra[target]
    )
    target_optimizer.load_state_dict(_through_bytes(copy.deepcopy(source_optimizer.state_dict())))
    assert_bitwise_equal_optimizers(target_optimizer, source_optimizer, "right after loading")

    for step in range(STEPS_BEFORE, STEPS_BEFORE + STEPS_AFTER):
        set_grads([source_params, target_params], step)
        source_optimizer.step()
        target_optimizer.step()
        assert_bitwise_equal_optimizers(
            target_optimizer, source_optimizer, f"{config.id} step {step + 1}"
        )


@pytest.mark.parametrize("config", REPRESENTATIVE_CONFIGS, ids=lambda config: config.id)
def test_state_dict_has_torchs_layout(config):
    """Same state keys, and `step` the same 0-d float32 CPU tensor as torch's default."""
    state_dicts = []
    for impl, extra in (("tracer", {}), ("torch", {"foreach": False})):
        params = make_params(SHAPE_SETS["several-tensors"], torch.float32)
        optimizer = config.make(params, impl=impl, **extra)
        set_grads([params], 0)
        optimizer.step()
        state_dicts.append(optimizer.state_dict())
    ours, theirs = state_dicts
    assert ours["state"].keys() == theirs["state"].keys()
    for index, state in theirs["state"].items():
        assert ours["state"][index].keys() == state.keys()
        if "step" in state:
            step = ours["state"][index]["step"]
            assert (step.dtype, step.shape, step.device.type) == (torch.float32, (), "cpu")
            assert step.item() == 1.0
    # Ours keeps exactly torch's hyperparameters, less foreach/capturable/differentiable;
    # all of ours have fused (a native pass), which torch's RMSprop does not.
    torch_only = {"foreach", "capturable", "differentiable"}
    assert {key for key in ours["param_groups"][0]} == ({key for key in theirs["param_groups"][0]} - torch_only) | {"fused"}


def test_adamw_stays_decoupled_after_loading_an_adam_state_dict():
    params = make_params([(3,)], torch.float32)
    adam = torch.optim.Adam(params, weight_decay=0.1, foreach=False)
    from tracer.optim import AdamW

    adamw = AdamW(make_params([(3,)], torch.float32))
    adamw.load_state_dict(adam.state_dict())
    assert adamw.param_groups[0]["decoupled_weight_decay"] is True
