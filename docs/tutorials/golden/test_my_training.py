"""A test with a golden trace: training a small model must keep giving the same trace, bit for bit."""

import torch

from tracer import Recorder


def test_training_trace_is_unchanged(tmp_path, trace_regression):
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    x, y = torch.randn(32, 3), torch.randn(32, 1)
    with Recorder(optimizer, tmp_path / "run.trace.csv", named_parameters=model.named_parameters()) as recorder:
        for step in range(20):
            loss = torch.nn.functional.mse_loss(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            recorder.note(loss=loss.item())
            optimizer.step()
    trace_regression.check(recorder)
