"""How big the explorer page is and how fast it opens, for the reference traces and a long summary trace.

    MPLBACKEND=Agg .venv/bin/python benchmarks/bench_explore.py [--loads 5] [--screenshot docs/explore_orbit.png]

For each case: the seconds `tracer.explore` takes to build the page from
loaded traces (the first build in the process: it computes the contour), the page's size, and in headless Chromium (Debian's, through selenium)
the milliseconds from the start of navigation to the page's first complete
drawing (median of --loads loads after an untimed one) and the JavaScript heap it then uses
(after a garbage collection).

The long case is a 50,000-update summary trace: mlp-adam's 960 rows
(6 tensors, 9 summary quantities each) repeated with the updates numbered on,
written to a temporary file. Its page holds what the downsampling rule keeps
(2,000 rows); the same trace with the rule lifted shows what the rule saves.
Training a real 50,000-update run takes minutes; the page depends on the
trace's shape (rows, columns, their types), which the repeated rows share.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tracer.catalogue import FIGURES_BY_ID, RUNS_BY_ID  # noqa: E402
from tracer.explorer import browser, explore  # noqa: E402
from tracer.trace import load_trace, write_trace  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
LOGS = ROOT / "logs"
LONG_UPDATES = 50_000


def figure_case(figure_id: str) -> tuple[list[Path], dict]:
    figure = FIGURES_BY_ID[figure_id]
    options = {key: figure.options[key] for key in ("colors", "xlim", "ylim") if key in figure.options}
    return [RUNS_BY_ID[run].path(LOGS) for run in figure.runs], options


def long_summary_trace(folder: Path) -> Path:
    """A 50,000-row summary trace: mlp-adam's rows repeated, updates, epochs numbered on."""
    source = load_trace(LOGS / "mlp-adam.trace.csv")
    repeats = -(-LONG_UPDATES // len(source))
    rows = np.tile(np.arange(len(source)), repeats)[:LONG_UPDATES]
    values = {c: source[c][rows] for c in source.columns}
    values["update"] = np.arange(1, LONG_UPDATES + 1, dtype=float)
    epochs_each = source["epoch"][-1] + 1
    values["epoch"] = values["epoch"] + epochs_each * (np.arange(LONG_UPDATES) // len(source))
    whole = {"update", "epoch", "batch"}
    cells = [{c: (int(values[c][i]) if c in whole else float(values[c][i])) for c in source.columns}
             for i in range(LONG_UPDATES)]
    meta = dict(source.meta, label=f"{LONG_UPDATES:,} updates (mlp-adam's rows repeated)")
    return write_trace(folder / "long.trace.csv", meta, source.columns, cells, final={})


def measure(name: str, traces: list, options: dict, folder: Path, driver, loads: int) -> dict:
    loaded = [load_trace(t) for t in traces]
    start = time.perf_counter()
    page = explore(loaded, **options)
    build = time.perf_counter() - start
    path = page.save(folder / f"{len(list(folder.iterdir()))}.html")
    times, heaps = [], []
    browser.open_page(driver, path)  # untimed: the first page a fresh browser opens pays its warm-up
    for _ in range(loads):
        driver.get("about:blank")
        times.append(browser.open_page(driver, path))
        heaps.append(driver.execute_script("window.gc(); return performance.memory.usedJSHeapSize"))
    errors = browser.console_messages(driver)
    if errors:
        raise RuntimeError(f"{name}: console errors {errors}")
    return {"name": name, "runs": len(loaded), "rows": sum(len(t) for t in loaded),
            "build_s": build, "bytes": path.stat().st_size,
            "load_ms": statistics.median(times), "heap_mb": statistics.median(heaps) / 1e6}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--loads", type=int, default=5, help="page loads per case (default 5)")
    parser.add_argument("--screenshot", type=Path, default=None,
                        help="also save the orbit page at update 300 as this PNG")
    args = parser.parse_args()
    missing = browser.browser_missing()
    if missing:
        print(f"bench_explore: no browser: {missing}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as scratch, browser.chromium(
            1400, 1000, ("--enable-precise-memory-info", "--js-flags=--expose-gc")) as driver:
        folder = Path(scratch)
        long_trace = long_summary_trace(folder)
        pages = folder / "pages"
        pages.mkdir()
        cases = [
            ("orbit, Figure 3: 4 runs x 1,280 updates, full", *figure_case("fig03")),
            ("orbit, Figure 9: 5 runs x 800 updates, full", *figure_case("fig09")),
            ("Rosenbrock: 4 runs x 1,000 updates, full", *figure_case("rosenbrock-paths")),
            ("MLP: 2 runs x 960 updates, 6 tensors summarised", *figure_case("mlp-dashboard")),
            (f"{LONG_UPDATES:,}-update summary trace (rule: 2,000 rows)", [long_trace], {}),
            (f"{LONG_UPDATES:,}-update summary trace, every row (rule lifted)", [long_trace],
             {"max_rows": LONG_UPDATES}),
        ]
        results = [measure(name, traces, options, pages, driver, args.loads) for name, traces, options in cases]
        if args.screenshot:
            traces, options = figure_case("fig03")
            path = explore(traces, title=FIGURES_BY_ID["fig03"].caption, **options).save(pages / "shot.html")
            browser.open_page(driver, path)
            driver.execute_script("window.tracerExplorer.goToUpdate(300)")
            driver.save_screenshot(str(args.screenshot))
            print(f"wrote {args.screenshot}")
    print(f"{'case':<62} {'rows':>7} {'build s':>8} {'page MB':>8} {'load ms':>8} {'JS heap MB':>11}")
    for r in results:
        print(f"{r['name']:<62} {r['rows']:>7} {r['build_s']:>8.2f} {r['bytes'] / 1e6:>8.2f} "
              f"{r['load_ms']:>8.0f} {r['heap_mb']:>11.1f}")
    lifted, ruled = results[-1], results[-2]
    print(f"the rule makes the {LONG_UPDATES:,}-update page {lifted['bytes'] / ruled['bytes']:.1f}x smaller "
          f"and opens it {lifted['load_ms'] / ruled['load_ms']:.1f}x faster")
    print(f"loads per case: {args.loads} (medians)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
