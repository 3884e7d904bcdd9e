"""`tracer explore TRACE [TRACE ...] -o run.html`: the runs as one self-contained HTML page."""

from __future__ import annotations

import argparse
import pathlib

from tracer.explorer.data import MAX_COORDINATES, MAX_ROWS


def _range(text: str) -> tuple[float, float]:
    try:
        low, high = (float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LOW,HIGH (two numbers), got {text!r}") from None
    if not low < high:
        raise argparse.ArgumentTypeError(f"expected LOW < HIGH, got {text!r}")
    return low, high


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Options of `tracer explore`."""
    parser.add_argument("traces", nargs="+", metavar="TRACE", help="trace files (*.trace.csv or *.bin)")
    parser.add_argument("-o", "--out", type=pathlib.Path, required=True, help="the page to write (*.html)")
    parser.add_argument("--labels", nargs="+", metavar="TEXT", help="one label per trace (default: the traces')")
    parser.add_argument("--colors", nargs="+", metavar="COLOR", help="one colour per trace (names or #rrggbb)")
    parser.add_argument("--title", default=None, help="the page's title (default: the labels)")
    parser.add_argument("--coordinates", nargs=2, metavar=("X", "Y"),
                        help="the two coordinates the plane draws (default: the problem's, else the first two)")
    parser.add_argument("--xlim", type=_range, metavar="LOW,HIGH", help="the plane's x range (default: fitted)")
    parser.add_argument("--ylim", type=_range, metavar="LOW,HIGH", help="the plane's y range (default: fitted)")
    parser.add_argument("--surface", type=pathlib.Path, default=None, metavar="FILE",
                        help="a surface file of `tracer landscape`: also show its plane with the runs' projected paths")
    parser.add_argument("--max-rows", type=int, default=MAX_ROWS,
                        help=f"rows per run before every k-th is kept (default {MAX_ROWS})")
    parser.add_argument("--max-coordinates", type=int, default=MAX_COORDINATES,
                        help=f"fully traced coordinates per run in the numbers panel (default {MAX_COORDINATES})")


def run_command(args: argparse.Namespace) -> int:
    """`tracer explore`."""
    from tracer.explorer import ExploreError, explore

    if args.out.suffix.lower() not in (".html", ".htm"):
        raise ExploreError(f"the page is HTML: --out must end in .html, got {str(args.out)!r}")
    explorer = explore(args.traces, labels=args.labels, colors=args.colors, title=args.title,
                       coordinates=args.coordinates, xlim=args.xlim, ylim=args.ylim,
                       max_rows=args.max_rows, max_coordinates=args.max_coordinates, surface=args.surface)
    path = explorer.save(args.out)
    runs = len(explorer.traces)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB, {runs} run{'' if runs == 1 else 's'})")
    return 0
