"""A first trace from Python: Adam fitting a linear model, every update recorded.

    python docs/tutorials/first_trace.py      # writes run.trace.csv in the current directory
"""

import torch

from tracer import Recorder, load_trace

torch.manual_seed(0)
model = torch.nn.Linear(3, 1)
optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
x, y = torch.randn(64, 3), torch.randn(64, 1)

with Recorder(optimizer, "run.trace.csv", named_parameters=model.named_parameters(),
              if_exists="overwrite") as recorder:
    for step in range(100):
        loss = torch.nn.functional.mse_loss(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        recorder.note(loss=loss.item())  # optional: the loss this update's gradient came from
        optimizer.step()

trace = load_trace("run.trace.csv")
print(trace.status, len(trace), "updates;", len(trace.columns), "columns, e.g.", trace.columns[:8])
print("loss from", trace["loss"][0], "to", trace["loss"][-1])
print("effective step size lr*|d| over the last 3 updates:", trace["step_size"][-3:])
print("weight[0] after the last update:", trace.final["weight[0]"])
