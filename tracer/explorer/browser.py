"""Open an explorer page in headless Chromium through selenium: the tests' and the benchmark's browser.

Debian's `chromium` and `chromium-driver` (`make browser` installs them),
started with a fresh profile and everything that would reach the network
turned off, so a request the page made would be the page's own. The
performance log records every request the page makes (Chrome DevTools'
Network domain) and the browser log its console messages.
"""

from __future__ import annotations

import contextlib
import json
import pathlib
import shutil
import tempfile
import time
from typing import Any, Iterator

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                  "--hide-scrollbars", "--force-device-scale-factor=1")
READY_TIMEOUT = 30.0  # seconds for a page to draw itself; a 2 MB page takes well under one


def browser_missing() -> str | None:
    """Why no browser can be driven here (one line), or None when one can."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    missing = [name for name in ("chromium", "chromedriver") if shutil.which(name) is None]
    if missing:
        return f"{' and '.join(missing)} not installed (make browser, or apt-get install chromium chromium-driver)"
    return None


@contextlib.contextmanager
def chromium(width: int = 1400, height: int = 1100, extra_flags: tuple[str, ...] = ()) -> Iterator[Any]:
    """A headless Chromium driven by selenium, with its browser and performance logs on; quit on exit."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    with tempfile.TemporaryDirectory(prefix="tracer-chromium-") as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = shutil.which("chromium")
        for flag in CHROMIUM_FLAGS + tuple(extra_flags):
            options.add_argument(flag)
        options.add_argument(f"--user-data-dir={profile}")
        options.add_argument(f"--window-size={width},{height}")
        options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
        driver = webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver")))
        try:
            yield driver
        finally:
            driver.quit()


def open_page(driver: Any, path: str | pathlib.Path) -> float:
    """Load the page at `path` and wait until it has drawn itself; returns milliseconds from the
    start of navigation to the page's first complete drawing (its `readyMs`)."""
    driver.get(pathlib.Path(path).resolve().as_uri())
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        ready = driver.execute_script("return window.tracerExplorer && window.tracerExplorer.readyMs")
        if ready is not None:
            return float(ready)
        time.sleep(0.02)
    raise TimeoutError(f"the page {path} did not draw itself within {READY_TIMEOUT:.0f} s")


def console_messages(driver: Any, level: str = "SEVERE") -> list[str]:
    """The console messages at `level` since the last call (errors by default)."""
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == level]


def requests_made(driver: Any, page: str | pathlib.Path) -> list[str]:
    """The URLs of every request made for the page at `page` since the last call: the page's own
    load, and whatever its document asked for (from the performance log)."""
    url = pathlib.Path(page).resolve().as_uri()
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent" and message["params"].get("documentURL") == url:
            urls.append(message["params"]["request"]["url"])
    return urls
