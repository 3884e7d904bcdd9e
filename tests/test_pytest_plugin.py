"""The trace_regression fixture, exercised by real inner pytest sessions (pytester).

The inner test is the golden-traces tutorial's example as written; each test below runs it
through the stages a user goes through: first run, unchanged run, changed
run, --regen-traces, a golden trace from another platform.
"""

from __future__ import annotations

import json
import pathlib

import pytest

pytest_plugins = ["pytester"]

EXAMPLE = pathlib.Path(__file__).resolve().parents[1] / "docs" / "tutorials" / "golden" / "test_my_training.py"
GOLDEN = pathlib.Path("test_my_training") / "test_training_trace_is_unchanged.trace.csv"


def _readme_example() -> str:
    """The test module of the golden-traces tutorial (docs/tutorials/golden-traces.md includes it)."""
    return EXAMPLE.read_text()


@pytest.fixture
def user_project(pytester: pytest.Pytester) -> pytest.Pytester:
    """A project holding the README's test module; the plugin comes from the installed entry point."""
    pytester.makepyfile(test_my_training=_readme_example())
    return pytester


def _run(project: pytest.Pytester, *options: str) -> pytest.RunResult:
    # A fresh process, as a user's `pytest` is: the plugin comes from the installed
    # entry point, and torch (which cannot be unloaded and imported again) starts clean.
    # -p no:cacheprovider: nothing but the golden trace is written into the project.
    return project.runpytest_subprocess("-p", "no:cacheprovider", "-rA", *options)


def test_first_run_writes_second_passes_a_change_fails_with_the_diff_and_regen_rewrites(user_project):
    golden = user_project.path / GOLDEN
    first = _run(user_project)
    first.assert_outcomes(failed=1)
    first.stdout.fnmatch_lines(
        [f"*no golden trace {golden}: it has been written from *run.trace.csv*review and commit it*"]
    )
    written = golden.read_bytes()
    meta = json.loads(written.splitlines()[0])
    assert meta["optimizer"]["class"] == "torch.optim.adam.Adam" and len(written.splitlines()) == 23

    second = _run(user_project)
    second.assert_outcomes(passed=1)
    second.stdout.fnmatch_lines(
        ["*trace_regression*", f"bit for bit on the same platform {meta['platform']['fingerprint']}"]
    )
    assert golden.read_bytes() == written

    user_project.makepyfile(test_my_training=_readme_example().replace("lr=0.01", "lr=0.02"))
    changed = _run(user_project)
    changed.assert_outcomes(failed=1)
    # tracer diff's report: per column, the first update at which it differs (lr: all 20 rows, by 0.01).
    changed.stdout.fnmatch_lines([
        "*differs from the committed*beyond bit for bit on the same platform*",
        "column * first update * rows differing * max abs diff*",
        "lr * 1 * 20 * 0.01 *",
        "*or rewrite the golden trace with pytest --regen-traces*",
    ])
    assert golden.read_bytes() == written  # a failing comparison leaves the golden trace alone

    regenerated = _run(user_project, "--regen-traces")
    regenerated.assert_outcomes(passed=1)
    regenerated.stdout.fnmatch_lines([f"*golden trace {golden} rewritten from *run.trace.csv (--regen-traces)*"])
    rewritten = golden.read_bytes()
    assert rewritten != written
    assert json.loads(rewritten.splitlines()[0])["optimizer"]["hyperparameters"]["lr"] == 0.02
    _run(user_project).assert_outcomes(passed=1)


def test_a_golden_trace_from_another_platform_needs_a_declared_tolerance(user_project):
    _run(user_project).assert_outcomes(failed=1)
    golden = user_project.path / GOLDEN
    lines = golden.read_text().splitlines(keepends=True)
    meta = json.loads(lines[0])
    meta["platform"]["fingerprint"] = "0123456789ab"
    golden.write_text(json.dumps(meta) + "\n" + "".join(lines[1:]))
    undeclared = _run(user_project)
    undeclared.assert_outcomes(failed=1)
    undeclared.stdout.fnmatch_lines(["*come from different platforms, so bit-for-bit equality does not apply*"])
    user_project.makepyfile(
        test_my_training=_readme_example()
        .replace("import torch\n", "import torch\n\nfrom tracer.diff import Tolerance\n", 1)
        .replace("trace_regression.check(recorder)", "trace_regression.check(recorder, cross_platform=Tolerance(ulps=64))")
    )
    declared = _run(user_project)
    declared.assert_outcomes(passed=1)
    declared.stdout.fnmatch_lines(["*ulps=64 across platforms (fresh *, committed 0123456789ab)*"])


def test_two_checks_in_one_test_need_basenames(pytester):
    pytester.makepyfile(test_two="""
        import pathlib

        def test_two_traces(trace_regression):
            path = pathlib.Path(__file__).parent / "given.trace.csv"
            trace_regression.check(path, basename="first")
            trace_regression.check(path)
            trace_regression.check(path)
    """)
    source = pathlib.Path(__file__).parent / "data"
    trace = next(source.glob("*.trace.csv"), None)
    assert trace is not None, f"a trace file in {source}"
    (pytester.path / "given.trace.csv").write_bytes(trace.read_bytes())
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--regen-traces")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*trace_regression.check called twice for *test_two_traces.trace.csv; give each trace its own basename=*"])
    assert (pytester.path / "test_two" / "first.trace.csv").is_file()
