"""The `tracer` command: a thin dispatcher over the subcommand modules.

Each subcommand's module is imported only when that subcommand runs, so
`tracer render`, `tracer diff` and `tracer info` never import torch. A module provides
`configure_parser(parser)` and `run_command(args) -> int`.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Sequence

from tracer.errors import TracerError

# name -> (module, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "trace": ("tracer.run", "run one experiment and write its trace"),
    "reproduce": ("tracer.experiments", "trace every reference experiment and render every figure"),
    "render": ("tracer.render.cli", "render figures and animations from trace files"),
    "diff": ("tracer.diff", "compare two trace files; exit 0 when equal within tolerance"),
    "info": ("tracer.info", "what a trace holds: run, optimizer, loss, lr, step size, final values"),
    "check-optimizer": ("tracer.optimizer_check.cli", "check an optimizer against a reference after every update; exit 0 equal"),
    "landscape": ("tracer.landscape.cli", "the loss over the plane of traced runs' snapshots, for render --surface"),
    "explore": ("tracer.explorer.cli", "the runs as one self-contained HTML page to explore in a browser"),
}

EXIT_USAGE = 2


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("tracer")
    except PackageNotFoundError:  # run from a source tree that is not installed
        return "(not installed)"


def _build_parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tracer", description="See what a neural-network optimizer does inside."
    )
    parser.add_argument("--version", action="version", version=f"tracer {_version()}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    chosen = next((arg for arg in argv if not arg.startswith("-")), None)
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        # Only the chosen subcommand's module is imported (and configures its
        # options): the others may pull in torch.
        if name == chosen:
            importlib.import_module(module_name).configure_parser(sub)
            sub.set_defaults(_module=module_name)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `tracer` console script; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _build_parser(argv)
    args = parser.parse_args(argv)
    module = importlib.import_module(args._module)
    try:
        return int(module.run_command(args) or 0)
    except TracerError as error:
        from tracer.trace import printable  # torch-free

        # One line, whatever text of a file (a label, a column name) the message quotes.
        print(f"tracer: error: {printable(str(error))}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt as interrupt:
        # Notes say where the work done so far went (`tracer trace`: the partial trace).
        print("tracer: interrupted", *getattr(interrupt, "__notes__", ()), sep="\n", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`tracer diff A B | head`): not an error of
        # ours. Point stdout at devnull so the interpreter's final flush is quiet.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
