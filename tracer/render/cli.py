"""`tracer render KIND TRACE... -o OUT`: one figure or animation from trace files.

    tracer render paths logs/sgd.trace.csv logs/adam.trace.csv -o figures/paths.gif \\
        --xlim 0,2.5 --ylim 0,2.5 --frames 300 --fps 20
"""

from __future__ import annotations

import argparse
from typing import Callable


def _numbers(kind: Callable, count: int, separator: str = ",") -> Callable[[str], tuple]:
    def parse(text: str) -> tuple:
        parts = text.lower().split(separator)
        try:
            values = tuple(kind(p) for p in parts)
        except ValueError:
            values = ()
        if len(values) != count:
            shape = separator.join(["N"] * count)
            raise argparse.ArgumentTypeError(f"expected {shape}, got {text!r}")
        return values

    return parse


def _names(text: str) -> tuple:
    names = tuple(part.strip() for part in text.split(","))
    if not all(names):
        raise argparse.ArgumentTypeError(f"expected comma-separated coordinate names, got {text!r}")
    return names


def configure_parser(parser: argparse.ArgumentParser) -> None:
    from tracer.render import FIGURE_KINDS, KINDS

    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = "figure kinds:\n" + "\n".join(f"  {k:<12} {KINDS[k].summary}" for k in FIGURE_KINDS)
    parser.add_argument("kind", choices=FIGURE_KINDS, metavar="KIND", help="figure kind (listed below)")
    parser.add_argument("traces", nargs="+", metavar="TRACE", help="trace files (.trace.csv)")
    parser.add_argument("-o", "--out", required=True, metavar="OUT",
                        help="output file; the extension picks the format: .png .svg .pdf, .gif .mp4 (animated kinds)")
    parser.add_argument("--xlim", type=_numbers(float, 2), metavar="A,B", help="x (e.g. Wa) axis range")
    parser.add_argument("--ylim", type=_numbers(float, 2), metavar="A,B", help="y (e.g. Wb) axis range")
    parser.add_argument("--updates", type=_numbers(int, 2), metavar="FIRST,LAST",
                        help="1-based inclusive update range")
    parser.add_argument("--first-steps", type=int, metavar="K", help="updates drawn by first-steps (default 4)")
    parser.add_argument("--frames", type=int, metavar="N", help="frame budget of an animation (default 300)")
    parser.add_argument("--fps", type=float, metavar="F", help="frames per second (default 20)")
    parser.add_argument("--size", type=_numbers(int, 2, "x"), metavar="WxH", help="size in pixels")
    parser.add_argument("--dpi", type=float, metavar="D",
                        help="dots per inch (default: what keeps the figure's layout at --size, or at about "
                             "1100 px wide for a still, 800 px for an animation)")
    parser.add_argument("--title", metavar="T", help="figure title")
    parser.add_argument("--labels", metavar="A,B,...", help="legend text per trace, comma separated")
    parser.add_argument("--colors", metavar="C1,C2,...", help="colour per trace, comma separated")
    parser.add_argument("--against", choices=("update", "epoch"), help="x axis of the lr figure")
    parser.add_argument("--coordinates", type=_names, metavar="A,B,...",
                        help="path figures: the two coordinates drawn, as in the trace's <c>.theta columns "
                             "(default: the problem surface's, else the first two traced); gradients: the "
                             "coordinates drawn (default: the first 8, with a note of how many are left out)")
    parser.add_argument("--yscale", choices=("linear", "log"),
                        help="y axis of step-size, lr, gradients and the loss figure's loss (default: "
                             "step-size and loss log when their values span more than two decades, else linear)")
    parser.add_argument("--smooth", type=int, metavar="N",
                        help="dashboard: rolling mean over N updates drawn over the faint per-update values "
                             "(1: off; default about 1/50 of the updates)")
    parser.add_argument("--groups", type=_names, metavar="LABEL=GLOB,...",
                        help="dashboard: group the tensors by these patterns (e.g. 'attention=*attn*,mlp=*mlp*'; "
                             "'tensors': draw each tensor); default: each tensor up to 12, else by module kind")
    parser.add_argument("--surface", metavar="FILE.npz",
                        help="paths, internals: draw the traces on this `tracer landscape` surface file")


def run_command(args: argparse.Namespace) -> int:
    from tracer.render import render_figure

    options = {name: getattr(args, name) for name in
               ("xlim", "ylim", "updates", "first_steps", "frames", "fps", "size", "dpi", "title", "against",
                "coordinates", "smooth", "yscale", "surface", "groups")}
    for name in ("labels", "colors"):
        text = getattr(args, name)
        if text is not None:
            options[name] = [part.strip() for part in text.split(",")]
    out = render_figure(args.kind, args.traces, args.out, **options)
    print(out)
    return 0
