"""The explorer page in a real browser: headless Chromium driven by selenium.

Each test opens a page the way a user does (a file on disk) and checks what
it shows against the trace files: no console error, no request but the page
itself, the exact values at the update the slider is moved to, play, the
keys, runs synchronised by update, each switchable, a screenshot. Without a
browser these tests skip with one line; under CI (TRACER_CI=1) they fail
instead. Screenshots go to $TRACER_SCREENSHOTS when set, else to pytest's
temporary directory.
"""

from __future__ import annotations

import math
import os
import pathlib
import time

import numpy as np
import pytest

from tracer.explorer import browser, explore, write_page
from tracer.trace import load_trace

LOGS = pathlib.Path(__file__).resolve().parent.parent / "logs"
E1 = [LOGS / f"e1-{name}.trace.csv" for name in ("sgd", "momentum", "rmsprop", "adam")]
E1_COLORS = ["gold", "red", "blue", "green"]
MLP = [LOGS / "mlp-adam.trace.csv", LOGS / "mlp-momentum.trace.csv"]
LANDSCAPE = [LOGS / "landscape" / "mlp-adam.trace.csv", LOGS / "landscape" / "mlp-momentum.trace.csv"]
SHORT = LOGS / "e2-momentum-lr0.01-100ep.trace.csv"  # 800 updates: ends before E1's 1,280

MISSING = browser.browser_missing()
UNDER_CI = os.environ.get("TRACER_CI") == "1"  # .ci/run sets it after installing the browser
pytestmark = pytest.mark.skipif(MISSING is not None and not UNDER_CI, reason=f"no browser: {MISSING}")


@pytest.fixture(scope="module")
def driver():
    if MISSING:  # only under CI: elsewhere the tests skip
        pytest.fail(f"the browser tests must run under CI (TRACER_CI=1), but {MISSING}")
    with browser.chromium() as chromium:
        yield chromium


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pages")
    return {
        "e1": write_page(E1, folder / "e1.html", colors=E1_COLORS, xlim=(0.0, 2.5), ylim=(0.0, 2.5)),
        "mlp": write_page(MLP, folder / "mlp.html"),
        "pair": write_page([E1[3], SHORT], folder / "pair.html"),
        "sampled": write_page([E1[3]], folder / "sampled.html", max_rows=100),
        "landscape": write_page(LANDSCAPE, folder / "landscape.html", surface=LOGS / "landscape" / "mlp.surface.npz"),
    }


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    folder = os.environ.get("TRACER_SCREENSHOTS")
    if folder:
        pathlib.Path(folder).mkdir(parents=True, exist_ok=True)
        return pathlib.Path(folder)
    return tmp_path_factory.mktemp("screenshots")


def open_clean(driver, page) -> float:
    """Open `page` with both logs emptied first, so they hold only this page's messages and requests."""
    driver.get("about:blank")
    browser.console_messages(driver, "ALL")
    driver.get_log("performance")
    return browser.open_page(driver, page)


def go_to(driver, update: int) -> None:
    """Move the slider to `update` as a user's drag does: set its value, fire its input event."""
    index = driver.execute_script("return Array.from(window.tracerExplorer.timeline).indexOf(arguments[0])", update)
    assert index >= 0, f"update {update} is not on the timeline"
    driver.execute_script("const s = document.getElementById('slider'); s.value = String(arguments[0]);"
                          "s.dispatchEvent(new Event('input', {bubbles: true}));", index)


def shown(driver, run: int) -> dict[str, str]:
    """The numbers panel of run `run`: column name -> the text shown."""
    return driver.execute_script(
        "const out = {}; for (const td of document.querySelectorAll(`td[data-run='${arguments[0]}']`))"
        " out[td.dataset.column] = td.textContent; return out;", run)


def expected(trace, row: int, columns) -> dict[str, str]:
    """The trace's own text for each column at `row`: repr of the float64 (an int for whole-number
    columns), empty for an empty cell, as in the trace file; a dash for a column empty throughout
    (v and s of plain SGD), which the page leaves out."""
    texts = {}
    for name in columns:
        value = float(trace[name][row])
        if np.isnan(trace[name]).all():
            texts[name] = "—"
        elif math.isnan(value):
            texts[name] = ""
        elif name in ("update", "epoch", "batch"):
            texts[name] = str(int(value))
        else:
            texts[name] = repr(value)
    return texts


def assert_exact_at(driver, traces, update: int) -> None:
    for index, trace in enumerate(traces):
        row = int(np.searchsorted(trace["update"], update, side="right")) - 1
        panel = shown(driver, index)
        columns = [c for c in panel if c in trace]
        assert set(panel) - set(columns) <= {"cos_d_prev"}, panel  # every other cell is a trace column
        assert len(columns) >= 10, panel
        assert {c: panel[c] for c in columns} == expected(trace, row, columns)


def pixels_vary(path: pathlib.Path) -> bool:
    from matplotlib.image import imread

    image = imread(path)
    return image.shape[0] > 500 and float(image[..., :3].std()) > 0.05


def test_the_orbit_page_loads_without_errors_or_requests(driver, pages, shots):
    milliseconds = open_clean(driver, pages["e1"])
    assert milliseconds < 10_000
    assert browser.console_messages(driver) == []
    url = pages["e1"].resolve().as_uri()
    assert browser.requests_made(driver, pages["e1"]) == [url]  # the page itself, nothing else
    assert driver.execute_script("return window.tracerExplorer.update") == 1
    driver.save_screenshot(str(shots / "explore_start.png"))
    assert pixels_vary(shots / "explore_start.png")


def test_the_slider_shows_the_exact_values_at_each_update(driver, pages, shots):
    open_clean(driver, pages["e1"])
    traces = [load_trace(p) for p in E1]
    for update in (1, 37, 640, 1280):
        go_to(driver, update)
        assert driver.execute_script("return window.tracerExplorer.update") == update
        assert f"update {update} " in driver.find_element("id", "readout").text
        assert_exact_at(driver, traces, update)
    go_to(driver, 300)
    driver.save_screenshot(str(shots / "explore_mid_run.png"))  # mid-run: paths half drawn, arrows at each point
    assert pixels_vary(shots / "explore_mid_run.png")
    assert browser.console_messages(driver) == []
    assert browser.requests_made(driver, pages["e1"]) == [url := pages["e1"].resolve().as_uri()]
    assert url.startswith("file://")  # nor after use: only the load itself


def test_keys_step_and_play(driver, pages):
    from selenium.webdriver.common.keys import Keys

    open_clean(driver, pages["e1"])
    body = driver.find_element("tag name", "body")
    go_to(driver, 100)
    body.send_keys(Keys.ARROW_RIGHT)
    assert driver.execute_script("return window.tracerExplorer.update") == 101
    body.send_keys(Keys.ARROW_LEFT, Keys.ARROW_LEFT)
    assert driver.execute_script("return window.tracerExplorer.update") == 99
    body.send_keys(Keys.SHIFT, Keys.ARROW_RIGHT)
    assert driver.execute_script("return window.tracerExplorer.update") == 109
    body.send_keys(Keys.SPACE)
    assert driver.execute_script("return window.tracerExplorer.playing") is True
    time.sleep(0.6)
    body.send_keys(Keys.SPACE)
    assert driver.execute_script("return window.tracerExplorer.playing") is False
    stopped = driver.execute_script("return window.tracerExplorer.update")
    assert stopped > 109  # played forward
    assert_exact_at(driver, [load_trace(p) for p in E1], stopped)  # and the panel followed
    driver.find_element("id", "play").click()
    time.sleep(0.4)
    driver.find_element("id", "play").click()
    assert driver.execute_script("return window.tracerExplorer.update") > stopped
    driver.find_element("id", "forward").click()
    driver.find_element("id", "first").click()
    assert driver.execute_script("return window.tracerExplorer.update") == 1
    driver.find_element("id", "last").click()
    assert driver.execute_script("return window.tracerExplorer.update") == 1280


def test_a_click_on_a_chart_goes_to_its_update(driver, pages):
    from selenium.webdriver.common.action_chains import ActionChains

    open_clean(driver, pages["e1"])
    chart = driver.find_elements("css selector", "#charts .chart canvas + canvas")[0]
    box = driver.execute_script("const r = arguments[0].getBoundingClientRect(); return [r.width, r.height];", chart)
    # The plot area runs from 58 px to 16 px before the right edge (Chart.layout): click at its middle.
    middle = 58 + (box[0] - 74) / 2
    ActionChains(driver).move_to_element_with_offset(chart, int(middle - box[0] / 2), 0).click().perform()
    update = driver.execute_script("return window.tracerExplorer.update")
    assert abs(update - 640.5) <= 1280 / (box[0] - 74) + 1  # within a pixel's worth of updates
    assert "loss" in driver.find_element("id", "tooltip").text  # the hover shows the values there


def test_two_runs_stay_at_the_same_update_and_switch_off(driver, pages, shots):
    open_clean(driver, pages["pair"])
    traces = [load_trace(E1[3]), load_trace(SHORT)]
    assert len(traces[1]) == 800 and len(traces[0]) == 1280
    for update in (250, 800, 1000):
        go_to(driver, update)
        assert_exact_at(driver, traces, update)
    assert shown(driver, 0)["update"] == "1000" and shown(driver, 1)["update"] == "800"  # ended at its last
    assert "its last row" in driver.find_element("id", "at-1").text
    go_to(driver, 250)
    assert shown(driver, 0)["update"] == shown(driver, 1)["update"] == "250"
    driver.save_screenshot(str(shots / "explore_two_runs.png"))
    assert pixels_vary(shots / "explore_two_runs.png")
    driver.find_element("css selector", "#runs input[data-run='1']").click()
    assert not driver.find_element("id", "numbers-1").is_displayed()
    assert driver.find_element("id", "numbers-0").is_displayed()
    driver.find_element("css selector", "#runs input[data-run='1']").click()
    assert driver.find_element("id", "numbers-1").is_displayed()
    assert browser.console_messages(driver) == []


def test_a_downsampled_page_states_its_rule_and_keeps_exact_values(driver, pages):
    open_clean(driver, pages["sampled"])
    assert "1 row in 13 of 1280" in driver.find_element("id", "rule").text
    timeline = driver.execute_script("return Array.from(window.tracerExplorer.timeline)")
    assert timeline[:3] == [1, 14, 27] and timeline[-1] == 1280
    trace = load_trace(E1[3])
    for update in (14, 1275, 1280):
        go_to(driver, update)
        assert_exact_at(driver, [trace], update)


def test_summary_traces_show_the_tensors(driver, pages, shots):
    from selenium.webdriver.support.ui import Select

    open_clean(driver, pages["mlp"])
    assert browser.console_messages(driver) == []
    traces = [load_trace(p) for p in MLP]
    go_to(driver, 480)
    assert_exact_at(driver, traces, 480)
    Select(driver.find_element("id", "tensor")).select_by_value("output.weight")
    titles = driver.execute_script("return window.tracerExplorer.chartTitles()")
    assert "|g| of output.weight" in titles and "cos(d, previous d) of output.weight" in titles
    driver.save_screenshot(str(shots / "explore_summary.png"))
    assert pixels_vary(shots / "explore_summary.png")


def test_the_landscape_plane_follows_the_snapshots(driver, pages, shots):
    open_clean(driver, pages["landscape"])
    assert browser.console_messages(driver) == []
    assert "Loss landscape" in driver.find_element("css selector", ".plane-view .card-title").text
    go_to(driver, 500)
    assert_exact_at(driver, [load_trace(p) for p in LANDSCAPE], 500)
    driver.save_screenshot(str(shots / "explore_landscape.png"))
    assert pixels_vary(shots / "explore_landscape.png")


def test_python_and_the_page_write_floats_alike(driver, pages):
    open_clean(driver, pages["e1"])
    values = [0.1, 1e-05, 0.0001, 0.00012345, 1e16, 1234567890123456.0, 1.5e300, 5e-324, -2.5e-07,
              1.7976931348623157e308, 123.0, -0.0, 0.30000000000000004, float(np.float32(0.1))]
    texts = driver.execute_script("return arguments[0].map((v) => window.tracerExplorer.pyRepr(v))", values)
    assert texts == [repr(v) for v in values]


def test_the_notebook_view_runs_in_its_frame(driver, tmp_path):
    wrapper = tmp_path / "notebook.html"
    wrapper.write_text("<!DOCTYPE html><html><body>" + explore(E1[:2])._repr_html_() + "</body></html>",
                       encoding="utf-8")
    driver.get("about:blank")
    browser.console_messages(driver, "ALL")
    driver.get(wrapper.as_uri())
    driver.switch_to.frame(driver.find_element("tag name", "iframe"))
    try:
        deadline = time.monotonic() + browser.READY_TIMEOUT
        while driver.execute_script("return window.tracerExplorer && window.tracerExplorer.readyMs") is None:
            assert time.monotonic() < deadline, "the inline page did not draw itself"
            time.sleep(0.05)
        assert driver.execute_script("return window.tracerExplorer.runs.length") == 2
    finally:
        driver.switch_to.default_content()
    assert browser.console_messages(driver) == []


def test_an_arrow_too_long_for_the_plane_is_shortened_and_says_by_how_much(driver, pages, shots):
    """RMSprop's first step is many times the page-wide step scale's typical arrow: it is drawn at most
    LONGEST_ARROW of the plane, with a break and its factor; later, at the typical lengths, none is."""
    open_clean(driver, pages["e1"])
    go_to(driver, 1)
    shortened = driver.execute_script("return window.tracerExplorer.shortenedArrows()")
    assert shortened and all(arrow["factor"] > 1 for arrow in shortened), shortened
    driver.save_screenshot(str(shots / "explore_shortened_arrow.png"))
    assert "drawn shortened" in driver.find_element("css selector", ".plane-legend").text
    go_to(driver, 1280)
    assert driver.execute_script("return window.tracerExplorer.shortenedArrows()") == []
    assert browser.console_messages(driver) == []
