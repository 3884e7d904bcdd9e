"""``tracer check-optimizer``: the command line of ``tracer.optimizer_check``.

Reads the two optimizers as import paths, ``--config`` as keyword arguments
(``CONFIG_GRAMMAR``), ``--state-key`` as key pairs (``STATE_KEY_GRAMMAR``),
runs ``compare_optimizers`` and prints its report.

Exit status: 0 equal, 1 different (with the report), 2 unusable input (one
line: an import path that does not resolve, not an optimizer, a bad
--config or --state-key).
"""

from __future__ import annotations

import argparse
import ast
import importlib
import inspect
import os
import re
import sys
from collections.abc import Sequence
from typing import Any

import torch

from tracer.errors import TracerError
from tracer.optimizer_check.compare import DEFAULT_SCHEDULERS, compare_optimizers

CONFIG_GRAMMAR = (
    "name=value items separated by commas; a comma not followed by name= continues the value "
    "as a tuple (betas=0.9,0.999); values are Python literals (0.01, True, None, (0.9,)) or bare words"
)
_ITEM_START = re.compile(r",(?=\s*[A-Za-z_]\w*\s*=)")
_NAME = re.compile(r"[A-Za-z_]\w*")


def parse_config(text: str) -> dict[str, Any]:
    """Parse ``--config``: ``lr=0.01,betas=0.9,0.999,amsgrad=True`` -> a dict of keyword arguments.

    A comma starts a new item only where ``name=`` follows it; any other comma
    belongs to the value, which then reads as a tuple. Each value is read as
    a Python literal (numbers, True/False/None, tuples), else kept as a
    string (``line_search_fn=strong_wolfe``). An empty text is ``{}``.

    Raises:
        TracerError: an item without ``name=``, a repeated name, an empty value.
    """
    config: dict[str, Any] = {}
    if not text.strip():
        return config
    for item in _ITEM_START.split(text):
        name, equals, value = item.partition("=")
        name, value = name.strip(), value.strip()
        if not equals or not _NAME.fullmatch(name):
            raise TracerError(f"--config {text!r}: {item!r} is not name=value; expected {CONFIG_GRAMMAR}")
        if name in config:
            raise TracerError(f"--config {text!r}: {name} is given twice")
        if not value:
            raise TracerError(f"--config {text!r}: {name} has no value; expected {CONFIG_GRAMMAR}")
        try:
            config[name] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            config[name] = value
    return config


def resolve(path: str) -> Any:
    """Import ``package.module:Name`` or ``package.module.Name`` and return the object.

    The current directory is searched first, as ``python -m`` does, so a
    module of the project the command runs in resolves.

    Raises:
        TracerError: the module or the name does not exist.
    """
    if ":" in path:
        module_name, _, attribute = path.partition(":")
    else:
        module_name, _, attribute = path.rpartition(".")
    if not module_name or not attribute:
        raise TracerError(f"cannot import {path!r}: expected package.module:Name or package.module.Name")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as error:
        raise TracerError(f"cannot import {path!r}: {error}") from error
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise TracerError(f"cannot import {path!r}: {target.__name__ if inspect.ismodule(target) else target!r} has no {part!r}")
        target = getattr(target, part)
    return target


STATE_KEY_GRAMMAR = "CANDIDATE_KEY=REFERENCE_KEY pairs separated by commas, e.g. m=exp_avg,v=exp_avg_sq"


def parse_state_keys(texts: Sequence[str]) -> dict[str, str]:
    """Parse every ``--state-key``: ``m=exp_avg,v=exp_avg_sq`` (and repeats) -> {"m": "exp_avg", "v": "exp_avg_sq"}.

    Raises:
        TracerError: a pair without exactly one ``=`` or with an empty side, a
            candidate key given twice, two candidate keys for one reference key.
    """
    mapping: dict[str, str] = {}
    for text in texts:
        for pair in text.split(","):
            candidate_key, equals, reference_key = (part.strip() for part in pair.partition("="))
            if not equals or not candidate_key or not reference_key or "=" in reference_key:
                raise TracerError(f"--state-key {text!r}: {pair.strip()!r} is not one pair; expected {STATE_KEY_GRAMMAR}")
            if candidate_key in mapping:
                raise TracerError(f"--state-key: candidate key {candidate_key!r} is mapped twice")
            if reference_key in mapping.values():
                raise TracerError(f"--state-key: reference key {reference_key!r} is named for two candidate keys")
            mapping[candidate_key] = reference_key
    return mapping


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Options of ``tracer check-optimizer``."""
    parser.add_argument("candidate", help="the optimizer to check: package.module:Name or package.module.Name")
    parser.add_argument("--against", required=True, metavar="REFERENCE", help="the reference, e.g. torch.optim.Adam")
    parser.add_argument(
        "--config",
        action="append",
        default=[],
        metavar="NAME=VALUE,...",
        help=f"keyword arguments given to both; repeat for several configurations (default: their defaults). {CONFIG_GRAMMAR}",
    )
    parser.add_argument("--steps", type=int, default=25, help="updates per case, compared after each (default 25)")
    parser.add_argument("--ulps", type=float, default=0, help="accepted difference, in units in the last place of the reference value in its dtype (default 0: bit for bit)")
    parser.add_argument(
        "--dtype", action="append", choices=("float32", "float64"), help="repeatable (default: float32 and float64)"
    )
    parser.add_argument(
        "--state-key",
        action="append",
        default=[],
        metavar="CANDIDATE_KEY=REFERENCE_KEY,...",
        help=f"the candidate's names for reference state keys: {STATE_KEY_GRAMMAR} (repeatable)",
    )
    parser.add_argument("--no-scheduler", action="store_true", help="do not also run under StepLR")
    parser.add_argument("--seed", type=int, default=0, help="seeds parameters and gradients (default 0)")
    parser.epilog = "exit status: 0 equal, 1 different (with the report), 2 unusable input"


def run_command(args: argparse.Namespace) -> int:
    """Print the report; 0 when the two are equal, 1 otherwise (TracerError: exit 2, from the dispatcher)."""
    state_key_map = parse_state_keys(args.state_key)  # refused before any import or run
    candidate, reference = resolve(args.candidate), resolve(args.against)
    configs = [parse_config(text) for text in args.config] or [{}]
    dtypes = [getattr(torch, name) for name in (args.dtype or ("float32", "float64"))]
    result = compare_optimizers(
        candidate,
        reference,
        configs=configs,
        dtypes=dtypes,
        steps=args.steps,
        ulps=args.ulps,
        schedulers={} if args.no_scheduler else DEFAULT_SCHEDULERS,
        state_key_map=state_key_map,
        seed=args.seed,
    )
    print(result.report())
    return 0 if result.equal else 1
