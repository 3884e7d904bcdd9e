"""Adam, ported by hand: the optimizer under test in the tutorial "check the optimizer you are writing".

`MyAdam` has a common porting mistake, eps inside the square root (TensorFlow
and optax put it there; torch adds it after); `MyAdamFixed` adds it where
torch does. Both name their state m and v where torch says exp_avg and
exp_avg_sq.
"""

import torch


class MyAdam(torch.optim.Optimizer):
    """Adam, ported by hand; its state is called m and v."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8):
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps})

    def denominator(self, v, bias_correction2, eps):
        return (v / bias_correction2 + eps).sqrt()  # the mistake: eps inside the square root

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                state = self.state[p]
                if not state:
                    state["step"] = torch.tensor(0.0)
                    state["m"] = torch.zeros_like(p)
                    state["v"] = torch.zeros_like(p)
                state["step"] += 1
                t = state["step"].item()
                state["m"].lerp_(p.grad, 1 - beta1)
                state["v"].mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
                step_size = group["lr"] / (1 - beta1**t)
                p.addcdiv_(state["m"], self.denominator(state["v"], 1 - beta2**t, group["eps"]), value=-step_size)


class MyAdamFixed(MyAdam):
    """The same port with torch's denominator: sqrt(v) / sqrt(1 - beta2^t) + eps."""

    def denominator(self, v, bias_correction2, eps):
        return (v.sqrt() / bias_correction2**0.5).add_(eps)
