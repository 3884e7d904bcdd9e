"""The `tracer` dispatcher: version, usage errors, a reader that goes away."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
from importlib.metadata import version

import pytest

from tracer.cli import SUBCOMMANDS, main

LOGS = pathlib.Path(__file__).resolve().parent.parent / "logs"


def test_version(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"tracer {version('tracer')}"


@pytest.mark.parametrize("argv", [[], ["nonsense"], ["diff"]], ids=["no command", "unknown command", "missing arguments"])
def test_usage_errors_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as done:
        main(argv)
    assert done.value.code == 2
    assert "usage: tracer" in capsys.readouterr().err


def test_every_subcommand_has_help():
    for name in SUBCOMMANDS:
        with pytest.raises(SystemExit) as done:
            main([name, "--help"])
        assert done.value.code == 0


def test_a_closed_pipe_is_not_a_traceback():
    # `tracer diff A B | head -1`: the reader has gone before the report is
    # written. A pipe whose read end is closed makes that deterministic.
    a, b = LOGS / "e1-adam.trace.csv", LOGS / "e1-sgd.trace.csv"
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run([sys.executable, "-m", "tracer.cli", "diff", str(a), str(b)],
                              stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(write_end)
    assert done.returncode == 1 and done.stderr == ""
