"""`tracer landscape TRACE... --model MODULE:FACTORY --data MODULE:FUNCTION -o OUT.npz`.

    tracer landscape logs/landscape/mlp-adam.trace.csv logs/landscape/mlp-momentum.trace.csv \\
        --model tracer.problems.mlp:landscape_model --data tracer.problems.mlp:landscape_data \\
        --loss bce_with_logits --grid 41 -o mlp.surface.npz

FACTORY() returns the model (a torch.nn.Module with the traced run's
parameters; their values do not matter, the plane sets them). FUNCTION()
returns the fixed evaluation batch as (inputs, targets), scored with
``--loss`` on ``model(inputs)``, or a callable ``loss(model) -> tensor``.
Modules are imported from the current directory as well as the installed
packages.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Any, Callable

from tracer.errors import TracerError

LOSSES = ("mse", "cross_entropy", "bce_with_logits")


def import_object(spec: str, what: str) -> Any:
    """The object named by ``module:name``; TracerError saying why it cannot be had."""
    module_name, _, name = spec.partition(":")
    if not module_name or not name:
        raise TracerError(f"invalid {what} {spec!r}; expected MODULE:NAME, e.g. mypackage.models:build")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # a user's module beside them, as `python -m` finds it
    try:
        module = importlib.import_module(module_name)
    except Exception as error:  # ImportError, or the module's own error on import
        raise TracerError(f"cannot import {what} {spec!r}: {type(error).__name__}: {error}") from None
    try:
        return getattr(module, name)
    except AttributeError:
        raise TracerError(f"cannot import {what} {spec!r}: module {module_name!r} has no {name!r}") from None


def loss_closure(data: Any, loss: str) -> Callable:
    """The loss closure from what the data function returned: itself if callable, else (inputs, targets)."""
    if callable(data):
        return data
    import torch.nn.functional as functional

    try:
        inputs, targets = data
    except (TypeError, ValueError):
        raise TracerError(
            f"the data function returned {type(data).__name__}; expected (inputs, targets) or a callable "
            f"loss(model) -> tensor"
        ) from None
    function = getattr(functional, {"mse": "mse_loss", "cross_entropy": "cross_entropy",
                                     "bce_with_logits": "binary_cross_entropy_with_logits"}[loss])
    return lambda model: function(model(inputs), targets)


def _call(function: Callable, spec: str, what: str) -> Any:
    """function(); its own error as one TracerError line naming it."""
    try:
        return function()
    except TracerError:
        raise
    except Exception as error:
        raise TracerError(f"the {what} {spec!r} failed: {type(error).__name__}: {error}") from None


def _pair(text: str) -> tuple[float, float]:
    try:
        low, high = (float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LOW,HIGH, got {text!r}") from None
    return low, high


def _grid(text: str) -> tuple[int, int]:
    try:
        parts = [int(part) for part in text.lower().split("x")]
    except ValueError:
        parts = []
    if len(parts) not in (1, 2):
        raise argparse.ArgumentTypeError(f"expected N or NxM points, got {text!r}")
    return (parts[0], parts[-1])


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.description = __doc__.split("\n\n", 1)[1] if __doc__ else None
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("traces", nargs="+", metavar="TRACE",
                        help="traces recorded with snapshots, runs of one model from one start (the first "
                             "one's final point is the plane's origin)")
    parser.add_argument("-o", "--out", required=True, metavar="OUT.npz", help="the surface file to write")
    parser.add_argument("--model", required=True, metavar="MODULE:FACTORY", help="function returning the model")
    parser.add_argument("--data", required=True, metavar="MODULE:FUNCTION",
                        help="function returning (inputs, targets) or a callable loss(model)")
    parser.add_argument("--loss", choices=LOSSES, default="mse",
                        help="loss of model(inputs) against targets (default mse)")
    parser.add_argument("--grid", type=_grid, default=(41, 41), metavar="N[xM]",
                        help="grid points along x (and y); default 41")
    parser.add_argument("--xlim", type=_pair, metavar="LOW,HIGH", help="x range (default: the paths' with a margin)")
    parser.add_argument("--ylim", type=_pair, metavar="LOW,HIGH", help="y range (default: the paths' with a margin)")
    parser.add_argument("--margin", type=float, default=0.25,
                        help="share of the paths' span added on each side of a fitted range (default 0.25)")
    parser.add_argument("--normalize", choices=("none", "filter"), default="none",
                        help="filter: scale each direction filter-wise to the origin's filters (loss-landscape)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run_command(args: argparse.Namespace) -> int:
    from tracer.landscape.surface import landscape

    if not args.out.endswith(".npz"):
        raise TracerError(f"the surface file must end in .npz, got {args.out!r}")
    if os.path.exists(args.out) and os.path.isdir(args.out):
        raise TracerError(f"cannot write {args.out!r}: it is a directory")
    factory = import_object(args.model, "model factory")
    data_function = import_object(args.data, "data function")
    for spec, item in ((args.model, factory), (args.data, data_function)):
        if not callable(item):
            raise TracerError(f"{spec!r} is a {type(item).__name__}, not a function")
    model = _call(factory, args.model, "model factory")
    import torch

    if not isinstance(model, torch.nn.Module):
        raise TracerError(f"the model factory {args.model!r} returned {type(model).__name__}, not a torch.nn.Module")
    data = _call(data_function, args.data, "data function")
    closure = loss_closure(data, args.loss)
    name = args.data if callable(data) else f"{args.loss} on {args.data}"
    out = landscape(args.traces, model, closure, args.out, grid=args.grid, xlim=args.xlim, ylim=args.ylim,
                    margin=args.margin, normalization=args.normalize, progress=not args.quiet, loss_name=name)
    print(out)
    return 0
