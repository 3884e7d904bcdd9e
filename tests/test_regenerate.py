"""Regenerating committed traces leaves a file alone exactly when its numbers come back the same (tracer.regenerate)."""

from __future__ import annotations

import json
import math
import pathlib

import numpy as np
import pytest

from tracer.catalogue import RUNS_BY_ID
from tracer.experiments import trace_runs
from tracer.regenerate import MACHINE_DESCRIPTION, same_numbers, settle
from tracer.trace import load_trace, write_trace

AVX512 = {"fingerprint": "37da3e4cd346", "cpu_capability": "AVX512", "torch": "2.13.0+cpu",
          "torch_git": "cf30153c4c13", "machine": "x86_64", "cpu": "AMD EPYC", "system": "Linux"}
AVX2 = {**AVX512, "cpu_capability": "AVX2", "cpu": "Intel Xeon"}
COLUMNS = ["update", "epoch", "batch", "lr", "loss", "Wa.theta", "Wa.v"]


def rows(wa: float = 0.1, v: float | None = None) -> list[dict]:
    return [{"update": 1, "epoch": 0, "batch": 0, "lr": 0.01, "loss": 2.5, "Wa.theta": wa, "Wa.v": v},
            {"update": 2, "epoch": 0, "batch": 1, "lr": 0.01, "loss": 2.25, "Wa.theta": wa / 3, "Wa.v": v}]


def trace(path: pathlib.Path, platform=AVX512, *, label: str = "run", wa: float = 0.1,
          final: float = 0.2) -> pathlib.Path:
    return write_trace(path, {"label": label, "platform": platform}, COLUMNS, rows(wa), final={"Wa": final})


def test_machine_description_leaves_out_exactly_the_fingerprint_and_torch_version():
    assert set(AVX512) - set(MACHINE_DESCRIPTION) == {"fingerprint", "torch"}


def test_a_trace_differing_only_in_the_machine_description_keeps_the_committed_file(tmp_path):
    committed = trace(tmp_path / "logs.trace.csv")
    before = committed.read_bytes()
    fresh = trace(tmp_path / "fresh.trace.csv", AVX2)
    assert fresh.read_bytes() != before  # "AVX2" and the CPU's name in its first line
    assert same_numbers(fresh, committed)
    assert settle(fresh, committed) is True
    assert committed.read_bytes() == before and not fresh.exists()


@pytest.mark.parametrize("change", [
    pytest.param({"wa": math.nextafter(0.1, 1.0)}, id="one-ulp-in-one-value"),
    pytest.param({"final": math.nextafter(0.2, 1.0)}, id="one-ulp-in-the-final-parameters"),
    pytest.param({"platform": {**AVX2, "fingerprint": "5c0e9d1a47b2"}}, id="another-fingerprint"),
    pytest.param({"platform": {**AVX512, "torch": "2.14.0+cpu"}}, id="another-torch"),
    pytest.param({"label": "run 2"}, id="other-metadata"),
])
def test_any_other_difference_replaces_the_committed_file(tmp_path, change):
    committed = trace(tmp_path / "logs.trace.csv")
    fresh = trace(tmp_path / "fresh.trace.csv", **change)
    expected = fresh.read_bytes()
    assert not same_numbers(fresh, committed)
    assert settle(fresh, committed) is False
    assert committed.read_bytes() == expected and not fresh.exists()


def test_empty_cells_compare_equal_and_a_value_in_place_of_one_does_not(tmp_path):
    meta = {"platform": AVX512}
    a = write_trace(tmp_path / "a.trace.csv", meta, COLUMNS, rows())
    b = write_trace(tmp_path / "b.trace.csv", {"platform": AVX2}, COLUMNS, rows())
    c = write_trace(tmp_path / "c.trace.csv", meta, COLUMNS, rows(v=0.0))
    assert np.isnan(load_trace(a)["Wa.v"]).all()
    assert same_numbers(b, a) and not same_numbers(c, a)


def test_a_trace_without_a_platform_is_never_the_same(tmp_path):
    a = write_trace(tmp_path / "a.trace.csv", {}, COLUMNS, rows())
    b = write_trace(tmp_path / "b.trace.csv", {}, COLUMNS, rows())
    assert not same_numbers(a, b)


def test_a_missing_or_unreadable_committed_file_is_replaced(tmp_path):
    fresh = trace(tmp_path / "fresh.trace.csv")
    expected = fresh.read_bytes()
    assert settle(fresh, tmp_path / "new.trace.csv") is False
    assert (tmp_path / "new.trace.csv").read_bytes() == expected
    broken = tmp_path / "broken.trace.csv"
    broken.write_text("not a trace\n")
    assert settle(trace(tmp_path / "fresh.trace.csv"), broken) is False
    assert broken.read_bytes() == expected


def _describe_another_machine(path: pathlib.Path) -> bytes:
    """Rewrite the trace's first line as another CPU (same fingerprint) would have written it."""
    first, rest = path.read_bytes().split(b"\n", 1)
    meta = json.loads(first)
    meta["platform"].update(cpu_capability="AVX2", cpu="another CPU")
    path.write_bytes(json.dumps(meta).encode() + b"\n" + rest)
    return path.read_bytes()


def test_regenerating_a_catalogue_run_keeps_a_file_whose_numbers_come_back(tmp_path):
    """`tracer reproduce`'s tracing on this machine, over a trace it wrote as 'another CPU' and one a bit off."""
    run, other = RUNS_BY_ID["linear-step"], RUNS_BY_ID["linear-linear"]
    trace_runs([run, other], tmp_path, workers=1, say=lambda *_: None)
    described = _describe_another_machine(run.path(tmp_path))
    fresh_other = other.path(tmp_path).read_bytes()
    lines = fresh_other.split(b"\n")
    cells = lines[5].split(b",")
    cells[-1] = repr(math.nextafter(float(cells[-1]), math.inf)).encode()  # one ulp in one cell
    other.path(tmp_path).write_bytes(b"\n".join([*lines[:5], b",".join(cells), *lines[6:]]))

    trace_runs([run, other], tmp_path, workers=1, say=lambda *_: None)
    assert run.path(tmp_path).read_bytes() == described  # kept: same fingerprint, every number the same
    assert other.path(tmp_path).read_bytes() == fresh_other  # replaced: one number differed
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([run.path(tmp_path).name, other.path(tmp_path).name])
