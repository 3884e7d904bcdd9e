"""Golden traces in a test suite: the ``trace_regression`` fixture and ``--regen-traces``.

Installing the package registers this plugin with pytest (entry point
``pytest11``), so any test can ask for the fixture::

    def test_adam_on_my_model(tmp_path, trace_regression):
        path = train_and_trace(tmp_path / "run.trace.csv")   # writes a trace
        trace_regression.check(path)

The golden trace of a test lives beside its module, in a folder named after
the module, one file per test (and per ``basename`` when a test checks more
than one trace)::

    tests/test_training.py
    tests/test_training/test_adam_on_my_model.trace.csv

- No golden trace yet: the fresh one is copied there and the test fails,
  saying so; review the file, commit it, and the next run compares.
- ``pytest --regen-traces``: every golden trace a test checks is rewritten
  from the fresh one, and the test passes.
- Otherwise the fresh trace is compared with the golden one by
  ``tracer.testing.assert_trace_matches``: bit for bit when both were written
  on the same platform; on another platform, within ``cross_platform`` (a
  ``tracer.diff.Tolerance``) if the check declares one, else it fails. On a
  difference the test fails with ``tracer diff``'s report.

``check`` returns the line saying which comparison applied; it is also
attached to the test's report (shown with ``pytest -rA``) and to its
``user_properties`` (junit XML).
"""

from __future__ import annotations

import os
import pathlib
import re
import shutil
from typing import TYPE_CHECKING, Any, Sequence

import pytest

from tracer.errors import TracerError

if TYPE_CHECKING:
    from tracer.diff import Tolerance

REGEN_OPTION = "--regen-traces"
GOLDEN_SUFFIX = ".trace.csv"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("tracer", "golden traces (trace_regression fixture)")
    group.addoption(
        REGEN_OPTION,
        action="store_true",
        default=False,
        help="rewrite the golden traces that trace_regression.check compares with, from the fresh traces",
    )


class TraceRegression:
    """Compare traces written by a test with the golden traces stored beside it."""

    def __init__(self, request: pytest.FixtureRequest) -> None:
        module = pathlib.Path(request.path)
        self.directory = module.parent / module.stem
        self.test_name = _file_name(request.node.name)
        self.regenerate = bool(request.config.getoption("regen_traces"))
        self._node = request.node
        self._used: set[str] = set()

    def golden_path(self, basename: str | None = None) -> pathlib.Path:
        """Where the golden trace of this test (or of ``basename`` within it) lives."""
        return self.directory / f"{_file_name(basename) if basename else self.test_name}{GOLDEN_SUFFIX}"

    def check(
        self,
        trace: str | os.PathLike | Any,
        *,
        basename: str | None = None,
        rtol: float = 0.0,
        atol: float = 0.0,
        columns: Sequence[str] | None = None,
        cross_platform: Tolerance | None = None,
    ) -> str:
        """Compare ``trace`` with its golden trace; return which comparison applied.

        Args:
            trace: the fresh trace: a path, or an object with a ``path``
                attribute (a ``tracer.recorder.Recorder`` after it closed).
            basename: names the golden file, for a test that checks several
                traces (default: the test's name).
            rtol: relative tolerance on the golden trace's own platform
                (default 0: bit for bit).
            atol: absolute tolerance on the golden trace's own platform
                (default 0: bit for bit).
            columns: compare only these columns (names or globs).
            cross_platform: the tolerance accepted when the golden trace was
                written on another platform; None fails there.

        Raises:
            pytest.fail (AssertionError): the traces differ (with the diff
                report), or the golden trace was missing and has just been written.
        """
        fresh = pathlib.Path(getattr(trace, "path", trace))
        golden = self.golden_path(basename)
        if golden.name in self._used:
            raise TracerError(
                f"trace_regression.check called twice for {golden}; give each trace its own basename="
            )
        self._used.add(golden.name)
        if not fresh.is_file():
            raise TracerError(f"trace_regression.check: no trace file at {fresh}; pass the path of a written trace")
        if self.regenerate or not golden.exists():
            missing = not golden.exists()
            golden.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(fresh, golden)
            if missing and not self.regenerate:
                pytest.fail(
                    f"no golden trace {golden}: it has been written from {fresh}; "
                    "review and commit it, the next run compares against it",
                    pytrace=False,
                )
            return self._note(f"golden trace {golden} rewritten from {fresh} ({REGEN_OPTION})")
        # Imported here: pytest loads this plugin in every session of every
        # project where tracer is installed; the comparison is paid for only by
        # the tests that use the fixture.
        from tracer.testing import assert_trace_matches

        try:
            applied = assert_trace_matches(
                fresh, golden, rtol=rtol, atol=atol, columns=columns, cross_platform=cross_platform
            )
        except AssertionError as error:
            failure = f"{error}\n(or rewrite the golden trace with pytest {REGEN_OPTION})"
        else:
            return self._note(applied)
        pytest.fail(failure, pytrace=False)  # outside the except: the report once, not chained

    def _note(self, line: str) -> str:
        self._node.add_report_section("call", "trace_regression", line)
        self._node.user_properties.append(("trace_regression", line))
        return line


@pytest.fixture
def trace_regression(request: pytest.FixtureRequest) -> TraceRegression:
    """Compare a test's traces with golden traces stored beside it (see ``tracer.pytest_plugin``)."""
    return TraceRegression(request)


def _file_name(name: str) -> str:
    """A test name (with parametrize ids such as ``[adam-0.01]``) as a portable file name."""
    return re.sub(r"[^\w.-]+", "_", name).strip("_")
