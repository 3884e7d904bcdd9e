"""Write the small trace files the render tests read (committed under tests/data/).

    .venv/bin/python tests/data/make_render_fixtures.py

The orbit traces come from a numpy re-implementation of the four optimizers on
the orbit problem's committed samples (float64, a fixed mini-batch order):
realistic shapes for the figures, not reference runs, so no torch is needed.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from tracer.problems.orbit import ORBIT_C, ORBIT_START, load_orbit_samples
from tracer.trace import write_trace

HERE = Path(__file__).resolve().parent
UPDATES = 64  # 8 epochs of 8 batches
BATCH = 64


def orbit_gradient(wa: float, wb: float, x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    q = 1.0 - (x + ORBIT_C) ** 2 / wa**2
    kept = q >= 0
    if not kept.any():
        return math.nan, np.array([math.nan, math.nan])
    q, x, y = q[kept], x[kept], y[kept]
    root = np.sqrt(q)
    error = root * wb - y
    loss = float(np.mean(error**2))
    # d sqrt(q)/d wa = (x+c)^2 / (wa^3 sqrt(q)); guard the rim where q == 0.
    dq = np.where(root > 0, (x + ORBIT_C) ** 2 / (wa**3 * np.maximum(root, 1e-12)), 0.0)
    grad = np.array([np.mean(2 * error * wb * dq), np.mean(2 * error * root)])
    return loss, grad


def run(name: str, lr: float, milestones=(), gamma=1.0, updates=UPDATES):
    x, y = (np.asarray(v, dtype=np.float64) for v in load_orbit_samples())
    rng = np.random.default_rng(7)
    theta = np.array(ORBIT_START, dtype=np.float64)
    v = np.zeros(2)
    s = np.zeros(2)
    rows, rate, status, diverged_at = [], lr, "complete", None
    for t in range(1, updates + 1):
        epoch, batch = divmod(t - 1, 8)
        if batch == 0:
            order = rng.permutation(len(x))
        index = order[batch * BATCH:(batch + 1) * BATCH]
        loss, g = orbit_gradient(theta[0], theta[1], x[index], y[index])
        if name == "sgd":
            d, vv, ss = g, None, None
        elif name == "momentum":
            v = 0.9 * v + g if t > 1 else g.copy()
            d, vv, ss = v, v, None
        elif name == "rmsprop":
            s = 0.99 * s + 0.01 * g * g
            d, vv, ss = g / (np.sqrt(s) + 1e-8), None, s
        else:  # adam
            v = 0.9 * v + 0.1 * g
            s = 0.999 * s + 0.001 * g * g
            d = (v / (1 - 0.9**t)) / (np.sqrt(s / (1 - 0.999**t)) + 1e-8)
            vv, ss = v, s
        step = rate * float(np.linalg.norm(d))
        norm = float(np.linalg.norm(d))
        row = {"update": t, "epoch": epoch, "batch": batch, "lr": rate, "loss": loss, "step_size": step}
        for i, c in enumerate(("Wa", "Wb")):
            row.update({f"{c}.theta": float(theta[i]), f"{c}.g": float(g[i]), f"{c}.d": float(d[i]),
                        f"{c}.u": float(d[i] / norm) if norm > 0 else math.nan,
                        f"{c}.v": None if vv is None else float(vv[i]),
                        f"{c}.s": None if ss is None else float(ss[i])})
        new = theta - rate * d
        row["displacement"] = float(np.linalg.norm(new - theta))
        rows.append(row)
        theta = new
        if not (np.isfinite(theta).all() and math.isfinite(loss)) or np.abs(theta).max() > 1e6:
            status, diverged_at = "diverged", t
            break
        if t in milestones:
            rate *= gamma
    return rows, {"Wa": float(theta[0]), "Wb": float(theta[1])}, status, diverged_at


ORBIT_COLUMNS = (["update", "epoch", "batch", "lr", "loss"]
                 + [f"{c}.{q}" for c in ("Wa", "Wb") for q in ("theta", "g", "v", "s", "d", "u")]
                 + ["step_size", "displacement"])


def meta(label: str, optimizer: str, lr: float, problem: dict | None, **extra) -> dict:
    base = {
        "label": label, "problem": problem,
        "optimizer": {"name": optimizer, "class": f"fixture.{optimizer}", "impl": "numpy",
                      "hyperparameters": {"lr": lr}},
        "scheduler": None, "scheduler_every": "update", "epochs": 8, "batch_size": BATCH, "seed": 7,
        "parameters": [{"name": "Wa", "shape": []}, {"name": "Wb", "shape": []}],
        "granularity": "full", "coordinates": ["Wa", "Wb"], "summarized": [], "param_groups": 1,
        "versions": {"tracer": "fixture"},
    }
    base.update(extra)
    return base


def orbit_fixtures() -> None:
    cases = [
        ("orbit_sgd", "sgd", 0.05, {}, "SGD lr=0.05"),
        ("orbit_momentum", "momentum", 0.01, {}, "Momentum lr=0.01"),
        ("orbit_rmsprop", "rmsprop", 0.01, {}, "RMSprop lr=0.01"),
        ("orbit_adam", "adam", 0.12, {"milestones": (4, 8, 10, 12, 14, 16, 18, 20, 22, 24), "gamma": 0.8},
         "Adam lr=0.12 multistep"),
        ("orbit_diverged", "momentum", 2.0, {}, "Momentum lr=2.0"),
    ]
    for file, optimizer, lr, schedule, label in cases:
        rows, final, status, diverged_at = run(optimizer, lr, **schedule)
        extra = {"scheduler": "multistep:milestones=4,8,10,12,14,16,18,20,22,24;gamma=0.8"} if schedule else {}
        write_trace(HERE / f"{file}.trace.csv", meta(label, optimizer, lr, {"name": "orbit"}, **extra),
                    ORBIT_COLUMNS, rows, status=status, final=None if status == "diverged" else final,
                    diverged_at=diverged_at)


def linear_fixtures() -> None:
    """A summary trace (dashboard) and a full one with an lr schedule per epoch (lr figure)."""
    rng = np.random.default_rng(3)
    summary_columns = ["update", "epoch", "batch", "lr", "loss"] + [
        f"{p}.{q}" for p in ("weight", "bias")
        for q in ("theta_norm", "g_norm", "v_norm", "s_norm", "d_norm", "displacement", "d_max",
                  "cos_d_prev", "cos_g_d")] + ["step_size", "displacement"]
    rows = []
    for t in range(1, 41):
        row = {"update": t, "epoch": (t - 1) // 4, "batch": (t - 1) % 4, "lr": 0.1 * 0.9 ** ((t - 1) // 4),
               "loss": float(4 * math.exp(-t / 8) + 0.01 * rng.random())}
        for p, size in (("weight", 4.0), ("bias", 4.2)):
            g = float(3 * math.exp(-t / 10) * (1 + 0.2 * rng.standard_normal()))
            row.update({f"{p}.theta_norm": size * (1 - math.exp(-t / 9)), f"{p}.g_norm": abs(g),
                        f"{p}.d_norm": abs(g), f"{p}.displacement": row["lr"] * abs(g),
                        f"{p}.d_max": abs(g) * 0.8,
                        f"{p}.cos_d_prev": None if t == 1 else float(np.clip(0.9 + 0.1 * rng.standard_normal(), -1, 1)),
                        f"{p}.cos_g_d": 1.0})
        row["step_size"] = row["lr"] * abs(g)
        row["displacement"] = row["step_size"]
        rows.append(row)
    linear = {"name": "linear"}
    write_trace(HERE / "linear_summary.trace.csv",
                meta("SGD lr=0.1 exponential", "sgd", 0.1, linear, granularity="summary", coordinates=[],
                     summarized=["weight", "bias"], scheduler="exponential:gamma=0.9", scheduler_every="epoch",
                     parameters=[{"name": "weight", "shape": [1, 2]}, {"name": "bias", "shape": [1]}]),
                summary_columns, rows)
    coords = ["weight[0]", "weight[1]", "bias[0]"]
    full_columns = ["update", "epoch", "batch", "lr", "loss"] + [f"{c}.{q}" for c in coords
                                                                  for q in ("theta", "g", "d")] + ["step_size"]
    rows = []
    for t in range(1, 41):
        epoch = (t - 1) // 4
        # StepLR(step_size=4, gamma=0.9) stepped after each epoch: the article's table.
        lr = 0.1 if epoch < 3 else (0.09 if epoch < 7 else 0.081)
        row = {"update": t, "epoch": epoch, "batch": (t - 1) % 4, "lr": lr, "loss": 1.0 / t}
        for i, c in enumerate(coords):
            g = float(math.exp(-t / 12) * math.cos(t + i))
            row.update({f"{c}.theta": float(i + 1 - math.exp(-t / 9)), f"{c}.g": g, f"{c}.d": g})
        row["step_size"] = row["lr"] * 0.5
        rows.append(row)
    write_trace(HERE / "linear_steplr.trace.csv",
                meta("SGD lr=0.1 StepLR", "sgd", 0.1, linear, coordinates=coords,
                     scheduler="step:step_size=4;gamma=0.9", scheduler_every="epoch",
                     parameters=[{"name": "weight", "shape": [1, 2]}, {"name": "bias", "shape": [1]}]),
                full_columns, rows)
    write_trace(HERE / "orbit_empty.trace.csv", meta("empty", "sgd", 0.01, {"name": "orbit"}), ORBIT_COLUMNS, [],
                status="interrupted")


def tensors_summary_fixture() -> None:
    """A summary trace of four tensors, one of them a single element (its cosines are ±1):
    noisy per-update norms and cosines as a real network's, for the dashboard."""
    rng = np.random.default_rng(5)
    tensors = [("layer1.weight", [8, 2], 2.0), ("layer1.bias", [8], 0.8), ("layer2.weight", [1, 8], 1.5),
               ("layer2.bias", [1], 0.1)]
    quantities = ("theta_norm", "g_norm", "d_norm", "displacement", "cos_d_prev", "cos_g_d")
    columns = ["update", "epoch", "batch", "lr", "loss"] + [f"{p}.{q}" for p, _, _ in tensors for q in quantities]
    lr, rows = 0.05, []

    def cell(value: float) -> float:  # four significant digits keep the file small
        return float(f"{value:.4g}")

    for t in range(1, 201):
        row = {"update": t, "epoch": (t - 1) // 20, "batch": (t - 1) % 20, "lr": lr,
               "loss": cell(0.7 * math.exp(-t / 60) + 0.05 * rng.random())}
        for index, (name, shape, size) in enumerate(tensors):
            g = 0.3 * (index + 1) * math.exp(-t / 80) * rng.lognormal(0.0, 0.6)
            one = int(np.prod(shape)) == 1
            cos_prev = float(rng.choice([-1.0, 1.0], p=[0.3, 0.7])) if one else float(
                np.clip(0.6 + 0.35 * rng.standard_normal(), -1, 1))
            row.update({f"{name}.theta_norm": cell(size * (1 + 0.5 * (1 - math.exp(-t / 70)))),
                        f"{name}.g_norm": cell(g), f"{name}.d_norm": cell(g * 3), f"{name}.displacement": cell(lr * g * 3),
                        f"{name}.cos_d_prev": None if t == 1 else cell(cos_prev),
                        f"{name}.cos_g_d": 1.0 if one else cell(float(np.clip(0.4 + 0.3 * rng.standard_normal(), -1, 1)))})
        rows.append(row)
    write_trace(HERE / "tensors_summary.trace.csv",
                meta("Momentum lr=0.05 (4 tensors)", "momentum", lr, None, epochs=10, batch_size=16,
                     granularity="summary", coordinates=[], summarized=[name for name, _, _ in tensors],
                     parameters=[{"name": name, "shape": shape} for name, shape, _ in tensors]),
                columns, rows)


def own_model_fixture() -> None:
    """A user's own model (meta problem null): Adam on a 2-input linear layer, 3 coordinates."""
    rng = np.random.default_rng(11)
    x = rng.uniform(-1, 1, size=(64, 2))
    y = x @ np.array([1.3, -0.7]) + 0.4 + 0.05 * rng.standard_normal(64)
    coords = ["fc.weight[0]", "fc.weight[1]", "fc.bias[0]"]
    theta = np.array([-0.5, 0.6, 1.2])
    v, s, lr = np.zeros(3), np.zeros(3), 0.08
    columns = (["update", "epoch", "batch", "lr", "loss"]
               + [f"{c}.{q}" for c in coords for q in ("theta", "g", "v", "s", "d", "u")]
               + ["step_size", "displacement"])
    rows = []
    for t in range(1, 41):
        epoch, batch = divmod(t - 1, 8)
        xb, yb = x[batch * 8:(batch + 1) * 8], y[batch * 8:(batch + 1) * 8]
        error = xb @ theta[:2] + theta[2] - yb
        g = np.append(2 * (error[:, None] * xb).mean(axis=0), 2 * error.mean())
        v = 0.9 * v + 0.1 * g
        s = 0.999 * s + 0.001 * g * g
        d = (v / (1 - 0.9**t)) / (np.sqrt(s / (1 - 0.999**t)) + 1e-8)
        norm = float(np.linalg.norm(d))
        row = {"update": t, "epoch": epoch, "batch": batch, "lr": lr, "loss": float((error**2).mean()),
               "step_size": lr * norm, "displacement": lr * norm}
        for i, c in enumerate(coords):
            row.update({f"{c}.theta": float(theta[i]), f"{c}.g": float(g[i]), f"{c}.v": float(v[i]),
                        f"{c}.s": float(s[i]), f"{c}.d": float(d[i]), f"{c}.u": float(d[i] / norm)})
        rows.append(row)
        theta = theta - lr * d
    write_trace(HERE / "own_model.trace.csv",
                meta("Adam lr=0.08 (own model)", "adam", lr, None, epochs=5, batch_size=8, coordinates=coords,
                     parameters=[{"name": "fc.weight", "shape": [1, 2]}, {"name": "fc.bias", "shape": [1]}]),
                columns, rows, final=dict(zip(coords, map(float, theta))))


def state_fixture() -> None:
    """Adam's state by key (step, exp_avg, exp_avg_sq) for the 'state' figure: the recorder's own summary trace of a
    two-tensor regression, 40 updates (torch, unlike the fixtures above: the state columns are the recorder's)."""
    import torch

    from tracer import Recorder

    generator = torch.Generator().manual_seed(0)
    x = torch.randn(64, 3, generator=generator)
    y = x @ torch.tensor([[0.5], [-1.0], [2.0]]) + 0.3
    weight, bias = torch.zeros(3, 1, requires_grad=True), torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.Adam([weight, bias], lr=0.05)
    path = HERE / "adam_state.trace.csv"
    with Recorder(optimizer, path, named_parameters=[("weight", weight), ("bias", bias)], granularity="summary",
                  meta={"label": "Adam lr=0.05"}, if_exists="overwrite", summary_pass="eager"):
        for _ in range(40):
            loss = ((x @ weight + bias - y) ** 2).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()


if __name__ == "__main__":
    orbit_fixtures()
    linear_fixtures()
    own_model_fixture()
    tensors_summary_fixture()
    state_fixture()
    for path in sorted(HERE.glob("*.trace.csv")):
        print(f"{path.name}: {path.stat().st_size} bytes")
