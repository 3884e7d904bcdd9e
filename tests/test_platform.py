"""tracer.platform: every trace says which platform made it, and the fingerprint tells platforms apart."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from tracer.cli import main
from tracer.platform import describe_platform, fingerprint_of, platform_meta, same_platform
from tracer.testing import record_small_run
from tracer.trace import load_trace, write_trace

# Runs in a fresh process under a given ATEN_CPU_CAPABILITY: prints the
# platform entry and a hash of the rows of a short orbit run (Adam, one
# epoch: the forward's sqrt, Adam's sqrt and division, every update).
PROBE = """
import hashlib, json, sys, tempfile, pathlib
from tracer.platform import platform_meta
from tracer.run import RunConfig, run_experiment
out = pathlib.Path(tempfile.mkdtemp()) / "t.trace.csv"
run_experiment(RunConfig(problem="orbit", optimizer="adam", lr=0.12, epochs=1, out=out))
rows = out.read_text().split("\\n", 1)[1]
print(json.dumps({"platform": platform_meta(), "rows": hashlib.sha256(rows.encode()).hexdigest()}))
"""


def _probe(capability: str | None) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "ATEN_CPU_CAPABILITY"}
    if capability is not None:
        env["ATEN_CPU_CAPABILITY"] = capability
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_platform_entry_names_the_kernels_and_the_machine():
    entry = platform_meta()
    assert re.fullmatch(r"[0-9a-f]{12}", entry["fingerprint"])
    assert entry["cpu_capability"] and entry["torch"].startswith("2.13.0") and entry["machine"] and entry["cpu"]
    assert platform_meta() == entry  # measured once per process, the same every time


@pytest.mark.slow
def test_same_fingerprint_means_the_same_trace_bit_for_bit():
    """Across this machine's code paths (ATEN_CPU_CAPABILITY): a trace that differs has a different fingerprint."""
    probes = {capability: _probe(capability) for capability in (None, "default")}
    native, default = probes[None], probes["default"]
    if native["platform"]["cpu_capability"] != "DEFAULT":
        # The point of the fingerprint: the vectorised kernels round differently from the default ones.
        assert native["rows"] != default["rows"]
        assert native["platform"]["fingerprint"] != default["platform"]["fingerprint"]
    for a in probes.values():
        for b in probes.values():
            if a["platform"]["fingerprint"] == b["platform"]["fingerprint"]:
                assert a["rows"] == b["rows"], (a["platform"], b["platform"])
    # Fingerprints are reproducible from one process to the next.
    here = probes["default" if os.environ.get("ATEN_CPU_CAPABILITY") == "default" else None]
    assert here["platform"] == platform_meta()


def test_every_trace_records_its_platform_and_tracer_info_shows_it(tmp_path, capsys):
    import torch

    path = tmp_path / "small.trace.csv"
    record_small_run(lambda params: torch.optim.SGD(params, lr=0.1), path, steps=3)
    meta = load_trace(path).meta
    assert meta["platform"] == platform_meta()
    assert fingerprint_of(meta) == platform_meta()["fingerprint"] and same_platform(meta, meta)
    assert describe_platform(meta).startswith(f"{platform_meta()['fingerprint']} ({platform_meta()['cpu_capability']}")
    assert main(["info", str(path)]) == 0
    text = capsys.readouterr().out
    assert f"platform     fingerprint {meta['platform']['fingerprint']}, cpu_capability " in text
    assert main(["info", "--json", str(path)]) == 0
    assert json.loads(capsys.readouterr().out)["platform"] == meta["platform"]
    # A trace from before traces recorded their platform says so, and is never "the same platform".
    old = write_trace(tmp_path / "old.trace.csv", {"label": "old"}, ["update"], [{"update": 1}])
    assert main(["info", str(old)]) == 0
    assert "platform     platform unknown (written before traces recorded it)" in capsys.readouterr().out
    assert fingerprint_of(load_trace(old).meta) is None and not same_platform(load_trace(old).meta, {})
