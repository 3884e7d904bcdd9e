"""The dashboard of a wide model: tensors grouped by module kind (or the user's patterns), spreads, outliers named."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
from matplotlib.figure import Figure
from PIL import Image

from tracer.errors import RenderError
from tracer.render import render_figure
from tracer.render.plots import _draw_group, module_kind, tensor_groups
from tracer.trace import write_trace

QUANTITIES = ("theta_norm", "g_norm", "v_norm", "s_norm", "d_norm", "displacement", "d_max", "cos_d_prev", "cos_g_d")


def gpt2_names() -> list[str]:
    """GPT-2 small's 148 parameter names (Hugging Face's naming)."""
    block = ["ln_1.weight", "ln_1.bias", "attn.c_attn.weight", "attn.c_attn.bias", "attn.c_proj.weight",
             "attn.c_proj.bias", "ln_2.weight", "ln_2.bias", "mlp.c_fc.weight", "mlp.c_fc.bias", "mlp.c_proj.weight",
             "mlp.c_proj.bias"]
    return (["transformer.wte.weight", "transformer.wpe.weight"]
            + [f"transformer.h.{i}.{part}" for i in range(12) for part in block]
            + ["transformer.ln_f.weight", "transformer.ln_f.bias"])


def test_gpt2s_148_tensors_fall_into_seven_groups():
    groups = tensor_groups(gpt2_names())
    assert [(g.label, len(g.names)) for g in groups] == [
        ("embedding", 2), ("norm weight", 25), ("norm bias", 25), ("attention weight", 24), ("attention bias", 24),
        ("MLP weight", 24), ("MLP bias", 24),
    ]
    assert sum(len(g.names) for g in groups) == 148


@pytest.mark.parametrize("name, kind", [
    ("model.layers.3.self_attn.q_proj.weight", "attention"), ("model.layers.3.mlp.down_proj.weight", "MLP"),
    ("model.layers.3.input_layernorm.weight", "norm"), ("model.embed_tokens.weight", "embedding"),
    ("encoder.layer.0.attention.self.query.bias", "attention"), ("features.0.conv1.weight", "convolution"),
    ("lm_head.weight", "output"), ("layers.0.weight", None), ("w", None),
])
def test_module_kinds_of_common_models(name, kind):
    assert module_kind(name) == kind


def test_unknown_kinds_group_by_role_and_merge_when_too_many():
    names = [f"blocks.{i}.lin{k}.weight" for i in range(3) for k in range(2)]
    assert [(g.label, len(g.names)) for g in tensor_groups(names)] == [("blocks.*.lin0.weight", 3),
                                                                       ("blocks.*.lin1.weight", 3)]
    many = [f"blocks.{i}.lin{k}.{leaf}" for i in range(2) for k in range(6) for leaf in ("weight", "bias")]
    assert [(g.label, len(g.names)) for g in tensor_groups(many)] == [("other weight", 12), ("other bias", 12)]


def test_the_users_patterns_come_first():
    groups = tensor_groups(gpt2_names(), ["attention=*.attn.*", "*.mlp.c_fc.*|*.mlp.c_proj.weight"])
    assert [(g.label, len(g.names)) for g in groups] == [
        ("other", 64), ("attention", 48), ("*.mlp.c_fc.*|*.mlp.c_proj.weight", 36)]


def test_an_outlier_is_named_and_the_ordinary_tensors_are_not():
    rng = np.random.default_rng(0)
    names = [f"h.{i}.mlp.weight" for i in range(10)]
    values = np.exp(rng.normal(0, 0.2, (10, 50)))  # within a factor of about 2 of each other
    values[7] *= 100  # two decades above its group
    ax = Figure().add_subplot()
    assert _draw_group(ax, np.arange(50), names, values, "C0", cosine=False) == ["h.7.mlp.weight"]
    cosines = rng.uniform(0.2, 0.4, (10, 50))
    cosines[2] = -0.5
    assert _draw_group(ax, np.arange(50), names, cosines, "C1", cosine=True) == ["h.2.mlp.weight"]
    assert _draw_group(ax, np.arange(50), names, np.delete(values, 7, axis=0), "C0", cosine=False) == []


def _wide_trace(tmp_path, names):
    rng = np.random.default_rng(1)
    columns = ["update", "epoch", "batch", "lr", "loss"] + [f"{n}.{q}" for n in names for q in QUANTITIES]
    rows = []
    for t in range(1, 41):
        row = {"update": t, "epoch": 0, "batch": t - 1, "lr": 1e-3, "loss": 3.0 / t}
        for i, n in enumerate(names):
            g = float(np.exp(-t / 20) * rng.lognormal(0, 0.3) * (50 if n.endswith("h.5.mlp.c_fc.weight") else 1))
            row.update({f"{n}.theta_norm": 5.0 + i % 7, f"{n}.g_norm": g, f"{n}.v_norm": g, f"{n}.s_norm": g * g,
                        f"{n}.d_norm": 1.0, f"{n}.displacement": 1e-3, f"{n}.d_max": 0.1,
                        f"{n}.cos_d_prev": None if t == 1 else float(rng.uniform(0.5, 0.9)),
                        f"{n}.cos_g_d": float(rng.uniform(0.1, 0.3))})
        rows.append(row)
    meta = {"label": "GPT-2 shapes", "problem": None, "granularity": "summary", "coordinates": [], "summarized": names,
            "parameters": [{"name": n, "shape": [8, 8]} for n in names]}
    tmp_path.mkdir(exist_ok=True)
    return write_trace(tmp_path / "wide.trace.csv", meta, columns, rows)


def test_a_148_tensor_dashboard_keeps_its_size_and_is_deterministic(tmp_path):
    trace = _wide_trace(tmp_path, gpt2_names())
    first = render_figure("dashboard", [trace], tmp_path / "a.png")
    image = np.asarray(Image.open(first).convert("RGB"), dtype=float)
    each = np.asarray(Image.open(render_figure("dashboard", [trace], tmp_path / "t.png", groups=("tensors",))))
    six = _wide_trace(tmp_path / "six", gpt2_names()[:6])
    small = np.asarray(Image.open(render_figure("dashboard", [six], tmp_path / "s.png")).convert("RGB"))
    # Seven groups fit the legend's two rows: the figure is a 6-tensor dashboard's size; tensor by tensor it grows.
    assert image.shape == small.shape and each.shape[0] > image.shape[0] and image.std() > 10
    assert render_figure("dashboard", [trace], tmp_path / "b.png").read_bytes() == first.read_bytes()


def test_groups_option_is_checked(tmp_path):
    trace = _wide_trace(tmp_path, gpt2_names()[:20])
    with pytest.raises(RenderError, match=r"groups must be patterns"):
        render_figure("dashboard", [trace], tmp_path / "a.png", groups=("",))
