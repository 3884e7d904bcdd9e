"""The framework callbacks, in a real lightning.Trainer and a real transformers.Trainer, a few steps on tiny models.

Lightning's run is replayed by hand (same model, data, accumulation, clipping
and scheduler) with a plain Recorder: the two traces agree cell for cell,
bit for bit. transformers' run has a plain Recorder on the same optimizer
beside the callback: every cell agrees, and the loss is the one the Trainer
logs.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
import torch

from tracer import Recorder, load_trace
from tracer.integrations import unwrap_optimizer

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the tiny models are built from configs: nothing to download


def _same_cells(a, b, *, skip=()):
    assert a.columns == b.columns and len(a) == len(b)
    for column in a.columns:
        if column not in skip:
            np.testing.assert_array_equal(a[column], b[column], err_msg=column)


# -- Lightning ---------------------------------------------------------------------------------------------

ACCUMULATE, CLIP, EPOCHS = 2, 0.5, 2


def _lightning_module():
    import lightning.pytorch as pl

    class Regression(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))

        def training_step(self, batch, batch_idx):
            x, y = batch
            return torch.nn.functional.mse_loss(self.net(x), y)

        def configure_optimizers(self):
            optimizer = torch.optim.AdamW(self.parameters(), lr=0.02, weight_decay=0.1)
            scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    return Regression()


def _loader():
    generator = torch.Generator().manual_seed(1)
    x, y = torch.randn(24, 4, generator=generator), torch.randn(24, 2, generator=generator)
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=4)


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
def test_lightning_trace_is_the_hand_written_loops(tmp_path, precision):
    """Also under Lightning's mixed precision on the CPU (bfloat16 autocast around the training step): the
    parameters, their gradients and the optimizer stay float32, and the trace is the replay's, bit for bit."""
    import contextlib

    import lightning.pytorch as pl

    from tracer.integrations.lightning import TraceCallback

    module = _lightning_module()
    callback = TraceCallback(tmp_path / "lightning.trace.csv")
    trainer = pl.Trainer(
        max_epochs=EPOCHS, accelerator="cpu", devices=1, accumulate_grad_batches=ACCUMULATE, gradient_clip_val=CLIP,
        precision=precision, callbacks=[callback], logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, default_root_dir=tmp_path,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Lightning's advice on workers and log intervals
        trainer.fit(module, _loader())

    replay = _lightning_module()
    configured = replay.configure_optimizers()
    optimizer, scheduler = configured["optimizer"], configured["lr_scheduler"]["scheduler"]
    with Recorder(optimizer, tmp_path / "plain.trace.csv", named_parameters=replay.named_parameters(),
                  granularity="summary") as recorder:
        for epoch in range(EPOCHS):
            losses = []
            for batch_index, batch in enumerate(_loader()):
                autocast = (torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16-mixed"
                            else contextlib.nullcontext())
                with autocast:
                    loss = replay.training_step(batch, batch_index)
                loss = loss / ACCUMULATE  # as Lightning backpropagates it
                loss.backward()
                losses.append(loss.detach())
                if (batch_index + 1) % ACCUMULATE == 0:
                    torch.nn.utils.clip_grad_norm_(replay.parameters(), CLIP)
                    recorder.note(loss=sum(losses[1:], losses[0]), epoch=epoch, batch=batch_index)
                    losses = []
                    optimizer.step()
                    scheduler.step()
                    optimizer.zero_grad()

    traced, plain = load_trace(tmp_path / "lightning.trace.csv"), load_trace(tmp_path / "plain.trace.csv")
    assert trainer.precision == precision
    assert len(traced) == EPOCHS * 6 // ACCUMULATE and traced.status == "complete"
    _same_cells(traced, plain)
    assert traced["lr"].tolist() == [0.02, 0.02, 0.01, 0.01, 0.005, 0.005]
    assert traced["batch"].tolist() == [1, 3, 5] * EPOCHS and traced["epoch"].tolist() == [0, 0, 0, 1, 1, 1]
    assert traced.meta["trainer"]["name"] == "lightning" and traced.meta["granularity"] == "summary"
    assert [p["name"] for p in traced.meta["parameters"]] == ["net.0.weight", "net.0.bias", "net.2.weight", "net.2.bias"]
    for (name, a), b in zip(module.named_parameters(), replay.parameters()):
        assert torch.equal(a, b), name  # tracing changed nothing: the same run, bit for bit


def test_lightning_refuses_an_optimizer_it_does_not_have(tmp_path):
    import lightning.pytorch as pl

    from tracer.errors import TracerError
    from tracer.integrations.lightning import TraceCallback

    trainer = pl.Trainer(max_steps=1, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
                         callbacks=[TraceCallback(tmp_path / "t.csv", optimizer_index=1)])
    with warnings.catch_warnings(), pytest.raises(TracerError, match=r"optimizer_index=1\) but the Trainer has 1"):
        warnings.simplefilter("ignore")
        trainer.fit(_lightning_module(), _loader())


# -- transformers ------------------------------------------------------------------------------------------


def _gpt2():
    import transformers

    transformers.set_seed(0)
    config = transformers.GPT2Config(vocab_size=32, n_positions=16, n_embd=16, n_layer=1, n_head=2)
    return transformers.GPT2LMHeadModel(config)


class _Tokens(torch.utils.data.Dataset):
    """Eight random sequences of eight tokens, labels the inputs (a language model's task)."""

    def __init__(self) -> None:
        self.ids = torch.randint(0, 32, (8, 8), generator=torch.Generator().manual_seed(2))

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[index], "labels": self.ids[index]}


def test_transformers_trace_is_the_plain_recorders(tmp_path):
    import transformers

    from tracer.integrations.transformers import TraceCallback

    model = _gpt2()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "out"), per_device_train_batch_size=2, gradient_accumulation_steps=2,
        num_train_epochs=2, max_grad_norm=1.0, lr_scheduler_type="linear", logging_steps=1, report_to="none",
        save_strategy="no", use_cpu=True, seed=0, train_sampling_strategy="sequential", disable_tqdm=True,
    )
    trainer = transformers.Trainer(
        model=model, args=args, train_dataset=_Tokens(), optimizers=(optimizer, None),
        callbacks=[TraceCallback(tmp_path / "hf.trace.csv")],
    )
    plain = Recorder(optimizer, tmp_path / "plain.trace.csv", named_parameters=model.named_parameters(),
                     granularity="summary")
    with plain:
        trainer.train()
    assert isinstance(trainer.optimizer, torch.optim.Optimizer) and trainer.optimizer is not optimizer
    assert unwrap_optimizer(trainer.optimizer) is optimizer  # accelerate's AcceleratedOptimizer, unwrapped

    traced, reference = load_trace(tmp_path / "hf.trace.csv"), load_trace(tmp_path / "plain.trace.csv")
    assert len(traced) == 4 and traced.status == "complete"
    _same_cells(traced, reference, skip=("loss", "epoch", "batch"))
    logged = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    # The Trainer logs its loss rounded to 4 significant decimals: the trace holds it whole.
    np.testing.assert_allclose(traced["loss"], logged, atol=5e-5, rtol=0)
    assert traced["epoch"].tolist() == [0, 0, 1, 1] and traced["batch"].tolist() == [1, 3, 1, 3]
    lrs = traced["lr"]
    assert lrs[0] == 1e-3 and (np.diff(lrs) < 0).all()  # the linear schedule, read at each update
    assert traced.meta["trainer"]["gradient_accumulation_steps"] == 2
    assert traced.meta["parameters"][0]["name"] == "transformer.wte.weight"


def test_unwrap_leaves_a_plain_optimizer_alone():
    optimizer = torch.optim.SGD([torch.zeros(2, requires_grad=True)], lr=0.1)
    assert unwrap_optimizer(optimizer) is optimizer


def test_a_skipped_amp_step_writes_no_row(tmp_path):
    # GradScaler skips optimizer.step() when a gradient is inf or NaN: the hooks never run, no row is written.
    weight = torch.nn.Parameter(torch.ones(3))
    optimizer = torch.optim.SGD([weight], lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**4)
    with Recorder(optimizer, tmp_path / "amp.trace.csv", granularity="summary") as recorder:
        for update, bad in enumerate([False, True, False]):
            optimizer.zero_grad()
            loss = (weight * (float("inf") if bad else 1.0)).sum()
            scaler.scale(loss).backward()
            recorder.note(loss=loss.detach(), batch=update)
            scaler.step(optimizer)
            scaler.update()
    trace = load_trace(tmp_path / "amp.trace.csv")
    assert trace["update"].tolist() == [1, 2] and trace["batch"].tolist() == [0, 2]
