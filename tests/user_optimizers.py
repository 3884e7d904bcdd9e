"""Optimizers as their users write them, outside any table: the recorder must trace each truly.

- ``Lion`` (scripts/trace_lion.py's, loaded from there): sign of an
  interpolated momentum, its state ``exp_avg``.
- ``ScheduleFreeSGD``: keeps two more iterates than the parameter it moves
  (``z``, the SGD sequence, and ``x``, their running average), as
  schedule-free methods do; the parameter holds their interpolation ``y``.
- ``FactoredRMS``: an Adafactor-like scale whose state tensors have other
  shapes than the parameter: ``row`` (g^2 averaged over the last dimension,
  one entry per row) and ``count`` (a 0-dim step count), plus a Python int
  ``calls``.
- ``SignSGD``: a subclass of ``torch.optim.SGD`` that overrides ``step()``
  with Lion's arithmetic and keeps its momentum under SGD's key
  ``momentum_buffer``: the recorder must not recompute SGD's d for it.
"""

from __future__ import annotations

import importlib.util
import pathlib

import torch

_SCRIPT = pathlib.Path(__file__).resolve().parent.parent / "scripts" / "trace_lion.py"
_spec = importlib.util.spec_from_file_location("trace_lion", _SCRIPT)
_module = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_module)
Lion = _module.Lion


class ScheduleFreeSGD(torch.optim.Optimizer):
    """Schedule-free SGD in the form of Defazio et al.: y = (1 - beta) z + beta x is the parameter."""

    def __init__(self, params, lr: float = 0.1, beta: float = 0.9) -> None:
        super().__init__(params, dict(lr=lr, beta=beta))

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            lr, beta = group["lr"], group["beta"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["z"] = p.detach().clone()
                    state["x"] = p.detach().clone()
                    state["k"] = 0
                state["k"] += 1
                z, x = state["z"], state["x"]
                z.sub_(p.grad, alpha=lr)
                x.lerp_(z, 1.0 / state["k"])
                p.copy_(z * (1 - beta) + x * beta)
        return None


class FactoredRMS(torch.optim.Optimizer):
    """d = g / sqrt(row + eps), with ``row`` the running mean of g^2 over each row (the last dimension)."""

    def __init__(self, params, lr: float = 0.01, beta: float = 0.9, eps: float = 1e-8) -> None:
        super().__init__(params, dict(lr=lr, beta=beta, eps=eps))

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                g = p.grad if p.dim() else p.grad.reshape(1)
                if not state:
                    state["row"] = torch.zeros(g.shape[:-1], dtype=p.dtype)
                    state["count"] = torch.zeros((), dtype=torch.float32)
                    state["calls"] = 0
                state["count"] += 1
                state["calls"] += 1
                row = state["row"]
                row.mul_(group["beta"]).add_((g * g).mean(dim=-1), alpha=1 - group["beta"])
                scale = (row + group["eps"]).sqrt().unsqueeze(-1)
                p.sub_((g / scale).reshape(p.shape), alpha=group["lr"])
        return None


class SignSGD(torch.optim.SGD):
    """Lion's arithmetic written over torch's SGD: its d is a sign, never SGD's momentum."""

    def __init__(self, params, lr: float = 0.01, momentum: float = 0.9) -> None:
        super().__init__(params, lr=lr, momentum=momentum)

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                buffer = state.setdefault("momentum_buffer", torch.zeros_like(p))
                p.add_((buffer * group["momentum"] + p.grad * (1 - group["momentum"])).sign(), alpha=-group["lr"])
                buffer.mul_(group["momentum"]).add_(p.grad)
        return None


USER_OPTIMIZERS = {cls.__name__: cls for cls in (Lion, ScheduleFreeSGD, FactoredRMS, SignSGD)}
