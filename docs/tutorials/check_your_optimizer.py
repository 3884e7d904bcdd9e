"""Check a hand-written Adam against torch.optim.Adam after every update, find the mistake, check the fix.

    python docs/tutorials/check_your_optimizer.py     # from anywhere: my_adam.py sits beside it
"""

import torch

from my_adam import MyAdam, MyAdamFixed
from tracer.testing import compare_optimizers

# The two ports against torch's Adam: the same parameters, the same gradients
# before every update, parameters and state compared after every one, bit for bit.
for candidate in (MyAdam, MyAdamFixed):
    result = compare_optimizers(
        candidate,
        torch.optim.Adam,
        configs=[{"lr": 0.01, "betas": (0.9, 0.999)}],
        state_key_map={"m": "exp_avg", "v": "exp_avg_sq"},  # our names -> torch's
        dtypes=[torch.float32],
    )
    print(result.report())
    print()
