"""Running the catalogue (`tracer.catalogue`): `tracer reproduce`, the scripts' entry points.

`reproduce` traces the selected runs in worker processes and renders each
figure as soon as the traces it draws are written. Every run is
deterministic (each problem draws from its own seeded generator), so
running them in parallel worker processes gives the same traces bit for bit.
The records themselves, `select` and `describe` live in the torch-free
`tracer.catalogue`.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from tracer.catalogue import (FIGURES_BY_ID, FIGURES_DIR, LOGS_DIR, RUNS_BY_ID, CatalogueFigure, CatalogueRun,
                               describe, select)
from tracer.errors import TracerError

WORKERS = 2
# Explorer pages (`tracer explore`): figure id -> the page showing that figure's runs in its view.
EXPLORER_PAGES = {"fig03": "explore_orbit.html"}


# ------------------------------------------------------------------ running


def _trace_one(job: tuple[CatalogueRun, pathlib.Path]) -> tuple[str, pathlib.Path, float]:
    from tracer.regenerate import settle
    from tracer.run import run_experiment

    if _IN_WORKER:
        # Each worker trains one small model at a time: one thread each keeps
        # two workers from fighting over two cores.
        import torch

        torch.set_num_threads(1)
    run, logs = job
    start = time.perf_counter()
    # Traced beside logs/ first: a trace that repeats the committed one's
    # numbers leaves the committed file (and git) untouched.
    with tempfile.TemporaryDirectory(dir=logs, prefix=".fresh-") as fresh:
        settle(run_experiment(run.config(pathlib.Path(fresh))), run.path(logs))
    return run.id, run.path(logs), time.perf_counter() - start


def _render_one(job: tuple[CatalogueFigure, pathlib.Path, pathlib.Path]) -> tuple[str, list[pathlib.Path], float]:
    from tracer.render import render_figure

    figure, logs, figures = job
    start = time.perf_counter()
    traces = [RUNS_BY_ID[run_id].path(logs) for run_id in figure.runs]
    written = [render_figure(figure.kind, traces, pathlib.Path(figures) / name, **dict(figure.options))
               for name in figure.outputs]
    return figure.id, written, time.perf_counter() - start


def _render_cost(figure: CatalogueFigure) -> int:
    # Animations take seconds each, stills a fraction: start the long ones first.
    return sum(10 if name.endswith((".gif", ".mp4")) else 1 for name in figure.outputs) * len(figure.runs)


class _Workers:
    """A process pool of `count` workers (or, for one, this process) with map and submit."""

    def __init__(self, count: int, *, preload_torch: bool = False) -> None:
        self.pool = None
        if count > 1:
            import multiprocessing

            # Fork when this process has not used torch yet (the command has
            # not): torch is imported here once, before the fork, so the
            # workers share the import instead of paying seconds each. A
            # process that has already run torch code (tests) spawns instead,
            # as forking after torch's thread pools started can hang.
            method = "spawn"
            if sys.platform.startswith("linux") and "torch" not in sys.modules:
                if preload_torch:
                    import torch  # noqa: F401
                method = "fork"
            self.pool = multiprocessing.get_context(method).Pool(count, initializer=_worker_init)

    def map_unordered(self, function, jobs: Sequence):
        if self.pool is None:
            return map(function, jobs)
        return self.pool.imap_unordered(function, jobs)

    def submit(self, function, job):
        """An object whose get() returns function(job); serially, it runs on get()."""
        if self.pool is None:
            return _Deferred(function, job)
        return self.pool.apply_async(function, (job,))

    def __enter__(self) -> "_Workers":
        return self

    def __exit__(self, *exc_info) -> None:
        if self.pool is not None:
            self.pool.terminate() if exc_info[0] is not None else self.pool.close()
            self.pool.join()


@dataclass
class _Deferred:
    function: Any
    job: Any

    def get(self):
        return self.function(self.job)


_IN_WORKER = False


def _worker_init() -> None:
    global _IN_WORKER
    _IN_WORKER = True


def _check_traces(figures: Sequence[CatalogueFigure], logs: pathlib.Path, tracing: set[str]) -> None:
    missing = sorted({str(RUNS_BY_ID[r].path(logs)) for f in figures for r in f.runs
                      if r not in tracing and not RUNS_BY_ID[r].path(logs).exists()})
    if missing:
        raise TracerError(f"missing trace(s) {', '.join(missing)}; run `tracer reproduce` to make them")


def _run_catalogue(runs: Sequence[CatalogueRun], figures: Sequence[CatalogueFigure], logs: pathlib.Path,
                   out_dir: pathlib.Path, workers: int, say) -> list[pathlib.Path]:
    """Trace `runs` (the longest first) and render `figures`, each figure as soon as its traces exist."""
    logs, out_dir = pathlib.Path(logs), pathlib.Path(out_dir)
    tracing = {run.id for run in runs}
    _check_traces(figures, logs, tracing)
    if runs:
        logs.mkdir(parents=True, exist_ok=True)
    if figures:
        out_dir.mkdir(parents=True, exist_ok=True)
    waiting = sorted(figures, key=lambda figure: -_render_cost(figure))
    traced: set[str] = set()
    submitted = []
    written: list[pathlib.Path] = []
    with _Workers(workers, preload_torch=bool(runs)) as pool:

        def submit_ready() -> None:
            for figure in [f for f in waiting if all(r in traced or r not in tracing for r in f.runs)]:
                waiting.remove(figure)
                submitted.append(pool.submit(_render_one, (figure, logs, out_dir)))

        submit_ready()
        jobs = sorted(((run, logs) for run in runs), key=lambda job: -job[0].updates)
        for run_id, path, seconds in pool.map_unordered(_trace_one, jobs):
            say(f"traced {path} ({seconds:.1f} s)")
            traced.add(run_id)
            submit_ready()
        for result in submitted:
            figure_id, paths, seconds = result.get()
            say(f"rendered {', '.join(map(str, paths))} ({seconds:.1f} s)")
            written += paths
    return written


def trace_runs(runs: Sequence[CatalogueRun], logs: pathlib.Path = LOGS_DIR, *, workers: int = WORKERS,
               say=print) -> list[pathlib.Path]:
    """Trace `runs` into `logs`; returns the trace paths in catalogue order."""
    _run_catalogue(runs, (), logs, FIGURES_DIR, workers, say)
    return [run.path(logs) for run in runs]


def render_figures(figures: Sequence[CatalogueFigure], logs: pathlib.Path = LOGS_DIR,
                   out_dir: pathlib.Path = FIGURES_DIR, *, workers: int = WORKERS, say=print) -> list[pathlib.Path]:
    """Render `figures` from the traces in `logs` into `out_dir` (no training)."""
    return _run_catalogue((), figures, logs, out_dir, workers, say)


def reproduce(names: Iterable[str] | None = None, *, render: bool = True, logs: pathlib.Path = LOGS_DIR,
              figures: pathlib.Path = FIGURES_DIR, workers: int = WORKERS, say=print) -> None:
    """Trace the selected runs and render the selected figures (each as soon as its traces are written)."""
    runs, selected_figures = select(names)
    start = time.perf_counter()
    if not render:
        selected_figures = ()
    _run_catalogue(runs, selected_figures, logs, figures, workers, say)
    write_explorer_pages([f.id for f in selected_figures], logs, figures, say=say)
    if names is None and render:  # everything: the mlp landscape example too (its own traces and surface)
        from tracer.landscape import mlp_example

        written = mlp_example.reproduce(pathlib.Path(logs) / "landscape", pathlib.Path(figures))
        say(f"landscape: {', '.join(str(path) for path in written)}")
    say(f"done in {time.perf_counter() - start:.1f} s")


def write_explorer_pages(figure_ids: Iterable[str], logs: pathlib.Path = LOGS_DIR,
                         figures: pathlib.Path = FIGURES_DIR, *, say=print) -> list[pathlib.Path]:
    """The explorer page of each figure of `figure_ids` that has one (EXPLORER_PAGES): its runs,
    colours and range, one self-contained HTML file in `figures`."""
    from tracer.explorer import write_page

    written = []
    for figure_id in [f for f in figure_ids if f in EXPLORER_PAGES]:
        figure = FIGURES_BY_ID[figure_id]
        start = time.perf_counter()
        options = {key: figure.options[key] for key in ("colors", "xlim", "ylim") if key in figure.options}
        traces = [RUNS_BY_ID[run].path(logs) for run in figure.runs]
        path = write_page(traces, pathlib.Path(figures) / EXPLORER_PAGES[figure_id], title=figure.caption, **options)
        say(f"wrote {path} ({time.perf_counter() - start:.1f} s)")
        written.append(path)
    return written


# ------------------------------------------------------------- the scripts


def compare_implementations(run_id: str, logs: pathlib.Path = LOGS_DIR,
                            torch_logs: pathlib.Path | None = None):
    """Trace catalogue run `run_id` with ours (into `logs`) and with torch.optim's; return the diff.

    torch's trace goes to `torch_logs` (default: a temporary directory, so
    logs/ keeps only the reference traces) as <id>.torch.trace.csv.
    """
    import tempfile

    from tracer.diff import diff_traces
    from tracer.run import run_experiment

    run = RUNS_BY_ID[run_id]
    ours = run_experiment(run.config(logs))
    with tempfile.TemporaryDirectory() as scratch:
        folder = pathlib.Path(torch_logs or scratch)
        theirs = run_experiment(run.config(impl="torch", out=folder / f"{run.id}.torch.trace.csv"))
        return diff_traces(ours, theirs)


def compare_main(run_id: str, argv: Sequence[str] | None = None, description: str = "") -> int:
    """Entry point of scripts/trace_<optimizer>.py: exit 0 when ours and torch's traces are equal."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--logs", type=pathlib.Path, default=LOGS_DIR, help="where our trace goes (default logs/)")
    parser.add_argument("--torch-logs", type=pathlib.Path, default=None,
                        help="keep torch.optim's trace here (default: a temporary directory)")
    args = parser.parse_args(argv)
    result = compare_implementations(run_id, args.logs, args.torch_logs)
    print(result.report())
    verdict = "agree bit for bit" if result.equal else "DIFFER"
    print(f"{run_id}: tracer.optim and torch.optim traces {verdict}")
    return 0 if result.equal else 1


def script_main(names: Sequence[str], argv: Sequence[str] | None = None, description: str = "") -> int:
    """Entry point of the per-experiment scripts: trace `names` (and render their figures)."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    configure_parser(parser)
    args = parser.parse_args(argv)
    args.only = list(names) + list(args.only or [])
    return run_command(args)


def render_all_main(argv: Sequence[str] | None = None, description: str = "") -> int:
    """Entry point of scripts/render_all.py: every catalogue figure from the traces in logs/."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--logs", type=pathlib.Path, default=LOGS_DIR)
    parser.add_argument("--figures", type=pathlib.Path, default=FIGURES_DIR)
    parser.add_argument("--only", nargs="+", metavar="NAME", help="experiments or figure ids")
    parser.add_argument("--workers", type=int, default=WORKERS)
    args = parser.parse_args(argv)
    _, figures = select(args.only)
    try:
        render_figures(figures, args.logs, args.figures, workers=max(1, args.workers))
    except TracerError as error:
        print(f"render_all: error: {error}", file=sys.stderr)
        return 2
    return 0


# ----------------------------------------------------------------- the command


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Options of `tracer reproduce`."""
    parser.add_argument("--only", nargs="+", metavar="NAME",
                        help="experiments (E1 E2 E3 E4 linear extra), run ids or figure ids")
    parser.add_argument("--no-render", action="store_true", help="trace only, draw nothing")
    parser.add_argument("--logs", type=pathlib.Path, default=LOGS_DIR, help="where traces go (default logs/)")
    parser.add_argument("--figures", type=pathlib.Path, default=FIGURES_DIR,
                        help="where figures go (default figures/)")
    parser.add_argument("--workers", type=int, default=WORKERS, help=f"worker processes (default {WORKERS})")
    parser.add_argument("--list", action="store_true", help="print the catalogue and exit")
    parser.add_argument("--quiet", action="store_true", help="print nothing but errors")


def run_command(args: argparse.Namespace) -> int:
    """`tracer reproduce`."""
    if args.list:
        print(describe())
        return 0
    say = (lambda *_: None) if args.quiet else print
    reproduce(args.only, render=not args.no_render, logs=args.logs, figures=args.figures,
              workers=max(1, args.workers), say=say)
    return 0
