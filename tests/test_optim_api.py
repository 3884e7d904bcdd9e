"""Everything torch.optim.Optimizer offers works with ours, and gives torch's numbers.

Closures, parameter groups with their own options, parameters without a
gradient, zero_grad, step hooks, build_optimizer.
"""

from __future__ import annotations

import copy
import importlib
import pickle

import pytest
import torch
from optim_configs import (
    REPRESENTATIVE_CONFIGS,
    TORCH_CLASSES,
    TRACER_CLASSES,
    OptimConfig,
    assert_bitwise_equal_optimizers,
    make_params,
    set_grads,
)

import tracer.optim

representative = pytest.mark.parametrize(
    "config", REPRESENTATIVE_CONFIGS, ids=lambda config: config.id
)


def _pair(config: OptimConfig, params_ours, params_theirs):
    return config.make(params_ours), config.make(params_theirs, impl="torch", foreach=False)


@representative
def test_closure_runs_with_grad_enabled_and_its_loss_is_returned(config):
    target = torch.tensor([1.0, -2.0, 3.0])
    params_ours, params_theirs = (
        make_params([(3,)], torch.float64),
        make_params([(3,)], torch.float64),
    )
    ours, theirs = _pair(config, params_ours, params_theirs)

    def closure_for(optimizer, param):
        def closure():
            optimizer.zero_grad()
            assert torch.is_grad_enabled()
            loss = ((param - target) ** 2).sum()
            loss.backward()
            return loss

        return closure

    for _ in range(10):
        with torch.no_grad():  # step enables grad for the closure even here
            loss_ours = ours.step(closure_for(ours, params_ours[0]))
            loss_theirs = theirs.step(closure_for(theirs, params_theirs[0]))
        assert torch.equal(loss_ours, loss_theirs)
        assert_bitwise_equal_optimizers(ours, theirs, "closure")
    assert ours.step() is None


@representative
def test_parameter_groups_with_their_own_options_and_add_param_group(config):
    overrides = {
        "sgd": {"lr": 0.1, "weight_decay": 0.0},
        "rmsprop": {"lr": 0.1, "alpha": 0.9, "centered": False},
        "adam": {"lr": 0.1, "betas": (0.5, 0.9), "amsgrad": False},
        "adamw": {"lr": 0.1, "weight_decay": 0.5},
    }[config.name]
    params_ours, params_theirs = (
        make_params([(3,), (2, 2), (5,)], torch.float32),
        make_params([(3,), (2, 2), (5,)], torch.float32),
    )
    ours = config.make([{"params": params_ours[:1]}, {"params": params_ours[1:2], **overrides}])
    theirs = config.make(
        [{"params": params_theirs[:1]}, {"params": params_theirs[1:2], **overrides}],
        impl="torch",
        foreach=False,
    )
    for step in range(12):
        if step == 5:  # a third group joins half way, with its own options
            ours.add_param_group({"params": params_ours[2:], **overrides})
            theirs.add_param_group({"params": params_theirs[2:], **overrides})
        set_grads([params_ours, params_theirs], step)
        ours.step()
        theirs.step()
        assert_bitwise_equal_optimizers(ours, theirs, f"step {step + 1}")
    assert ours.param_groups[1]["lr"] == 0.1 and ours.param_groups[0]["lr"] == config.kwargs["lr"]


@representative
def test_parameters_without_a_gradient_are_skipped_and_get_no_state(config):
    params_ours, params_theirs = (
        make_params([(3,), (4,)], torch.float32),
        make_params([(3,), (4,)], torch.float32),
    )
    ours, theirs = _pair(config, params_ours, params_theirs)
    frozen_before = params_ours[1].detach().clone()
    for step in range(5):
        set_grads([params_ours, params_theirs], step)
        params_ours[1].grad = params_theirs[1].grad = None
        ours.step()
        theirs.step()
        assert_bitwise_equal_optimizers(ours, theirs, f"step {step + 1}")
    assert torch.equal(params_ours[1], frozen_before)
    assert len(ours.state.get(params_ours[1], {})) == 0


@representative
@pytest.mark.parametrize("duplicate", ("deepcopy", "pickle"))
def test_a_copied_optimizer_continues_identically(config, duplicate):
    """deepcopy and pickle go through __getstate__/__setstate__, as checkpointing libraries do."""
    params = make_params([(3,), (2, 2)], torch.float64)
    optimizer = config.make(params)
    for step in range(3):
        set_grads([params], step)
        optimizer.step()
    if duplicate == "deepcopy":
        twin = copy.deepcopy(optimizer)
    else:
        twin = pickle.loads(pickle.dumps(optimizer))
    twin_params = [param for group in twin.param_groups for param in group["params"]]
    for step in range(3, 8):
        set_grads([params, twin_params], step)
        optimizer.step()
        twin.step()
        assert_bitwise_equal_optimizers(twin, optimizer, f"step {step + 1}")


@pytest.mark.parametrize("name", TRACER_CLASSES)
@pytest.mark.parametrize("set_to_none", (True, False))
def test_zero_grad(name, set_to_none):
    params = make_params([(3,), (2,)], torch.float32)
    optimizer = TRACER_CLASSES[name](params)
    set_grads([params], 0)
    optimizer.zero_grad(set_to_none=set_to_none)
    for param in params:
        if set_to_none:
            assert param.grad is None
        else:
            assert torch.equal(param.grad, torch.zeros_like(param))


@pytest.mark.parametrize("name", TRACER_CLASSES)
def test_step_hooks_fire_around_every_step(name):
    params = make_params([(3,)], torch.float32)
    optimizer = TRACER_CLASSES[name](params)
    calls = []
    optimizer.register_step_pre_hook(
        lambda opt, args, kwargs: calls.append(("pre", params[0].detach().clone()))
    )
    optimizer.register_step_post_hook(
        lambda opt, args, kwargs: calls.append(("post", params[0].detach().clone()))
    )
    global_hook = importlib.import_module(
        "torch.optim.optimizer"
    ).register_optimizer_step_post_hook(lambda opt, args, kwargs: calls.append(("global", None)))
    try:
        for step in range(3):
            set_grads([params], step)
            optimizer.step()
    finally:
        global_hook.remove()
    assert [kind for kind, _ in calls] == ["pre", "post", "global"] * 3
    # The pre hook sees the parameters before the update, the post hook after.
    assert not torch.equal(calls[0][1], calls[1][1])


@pytest.mark.parametrize("name", TRACER_CLASSES)
def test_step_leaves_grad_mode_as_it_was(name):
    params = make_params([(3,)], torch.float32)
    optimizer = TRACER_CLASSES[name](params)
    set_grads([params], 0)
    optimizer.step()
    assert torch.is_grad_enabled()
    assert params[0].grad_fn is None


def test_our_arithmetic_does_not_call_torch_optims_functional_implementations(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("called torch.optim's functional implementation")

    for module in map(
        importlib.import_module, ("torch.optim.sgd", "torch.optim.rmsprop", "torch.optim.adam")
    ):
        for attribute in dir(module):
            if attribute.startswith(
                ("_single_tensor_", "_multi_tensor_", "_fused_")
            ) or attribute in ("sgd", "rmsprop", "adam"):
                monkeypatch.setattr(module, attribute, forbidden)
    for config in REPRESENTATIVE_CONFIGS:
        params = make_params([(3,)], torch.float32)
        optimizer = config.make(params)
        set_grads([params], 0)
        optimizer.step()
    # The trap works: torch's own classes do call them.
    params = make_params([(3,)], torch.float32)
    set_grads([params], 0)
    with pytest.raises(AssertionError, match="functional implementation"):
        torch.optim.Adam(params, foreach=False).step()


# ---------------------------------------------------------------- build_optimizer


@pytest.mark.parametrize("name", tracer.optim.OPTIMIZER_NAMES)
@pytest.mark.parametrize("impl", tracer.optim.IMPLEMENTATIONS)
def test_build_optimizer_makes_ours_or_torchs_for_loop(name, impl):
    optimizer = tracer.optim.build_optimizer(
        name, [torch.zeros(2, requires_grad=True)], impl=impl, lr=0.05
    )
    expected = {"tracer": TRACER_CLASSES, "torch": TORCH_CLASSES}[impl][
        {"momentum": "sgd"}.get(name, name)
    ]
    assert type(optimizer) is expected
    group = optimizer.param_groups[0]
    assert group["lr"] == 0.05
    if impl == "torch":
        assert group["foreach"] is False
    if name == "momentum":
        assert (group["momentum"], group["dampening"]) == (0.9, 0)
    if name == "sgd":
        assert group["momentum"] == 0


def test_build_optimizer_momentum_is_overridable():
    optimizer = tracer.optim.build_optimizer(
        "momentum", [torch.zeros(2, requires_grad=True)], momentum=0.5, nesterov=True
    )
    assert optimizer.param_groups[0]["momentum"] == 0.5
    assert optimizer.param_groups[0]["nesterov"] is True




def test_tracer_optim_knows_nothing_of_tracing():
    """Importing and stepping tracer.optim (fused too) loads no module of the recording side beyond what
    ``import tracer`` itself loads (trace reading, numpy only): the first rule of the architecture."""
    import subprocess
    import sys

    code = (
        "import sys, tracer\n"
        "before = set(sys.modules)\n"
        "import torch, tracer.optim\n"
        "p = torch.nn.Parameter(torch.ones(3)); p.grad = torch.ones(3)\n"
        "tracer.optim.Adam([p], fused=True).step(); tracer.optim.SGD([p], lr=0.1).step()\n"
        "print(sorted(m for m in set(sys.modules) - before if m.startswith('tracer')))\n"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.split("\n")[-2] == str(sorted(
        ["tracer.native", "tracer.native.steps", "tracer.optim", "tracer.optim._common", "tracer.optim.adam",
         "tracer.optim.rmsprop", "tracer.optim.sgd"]))


def test_tracer_optim_names_nothing_of_tracing():
    """No identifier in tracer/optim/ speaks of traces or summaries: what a caller may watch of a step is the
    neutral ``step_tap`` (tracer.native.steps.StepTap), implemented on the recording side."""
    import ast
    import pathlib
    import re

    import tracer.optim

    found = []
    for path in pathlib.Path(tracer.optim.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [getattr(node, "id", None), getattr(node, "attr", None), getattr(node, "name", None), getattr(node, "arg", None)]
            names += [alias.name for alias in getattr(node, "names", []) if isinstance(alias, ast.alias)]
            # "trace" but not the package's own name (tracer, TracerError)
            found += [f"{path.name}: {n}" for n in names if isinstance(n, str) and re.search("summar|trace(?!r)", n.lower())]
    assert found == []
