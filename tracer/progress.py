"""A tiny progress bar on stderr for long runs (no dependency).

Shown only on a terminal, only once a run has taken longer than `delay`
seconds (short runs stay silent), and redrawn at most ten times a second.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """`advance()` once per unit of work, `close()` at the end (or use `with`)."""

    WIDTH = 30

    def __init__(self, total: int, label: str = "", *, enabled: bool = True, delay: float = 2.0,
                 stream: TextIO | None = None) -> None:
        self.stream = sys.stderr if stream is None else stream
        self.total = max(int(total), 1)
        self.label = label
        self.done = 0
        self.enabled = enabled and _isatty(self.stream)
        self._start = time.monotonic()
        self._shown_at: float | None = None
        self._delay = delay

    def advance(self, count: int = 1) -> None:
        self.done += count
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._start < self._delay or (self._shown_at is not None and now - self._shown_at < 0.1):
            return
        self._shown_at = now
        self._draw(now)

    def _draw(self, now: float) -> None:
        fraction = min(self.done / self.total, 1.0)
        filled = int(fraction * self.WIDTH)
        elapsed = now - self._start
        left = elapsed * (1 - fraction) / fraction if fraction else 0.0
        self.stream.write(
            f"\r{self.label} [{'#' * filled}{'.' * (self.WIDTH - filled)}] "
            f"{self.done}/{self.total} {elapsed:.0f}s, ~{left:.0f}s left "
        )
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self._shown_at is not None:
            self._draw(time.monotonic())
            self.stream.write("\n")
            self.stream.flush()
            self._shown_at = None

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def _isatty(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False
