"""Golden traces in a test suite, step by step: the trace_regression fixture's life cycle.

    python docs/tutorials/golden_traces.py [DIR]    # works in DIR (default: a new temporary folder)

Copies golden/test_my_training.py into DIR/tests/ and runs pytest on it four
times, as you would: the first run writes the golden trace and fails; the
second compares and passes; after a change of the learning rate in the test
it fails with the report of where the traces part; `--regen-traces` accepts
the change.
"""

import pathlib
import shutil
import subprocess
import sys
import tempfile

here = pathlib.Path(__file__).resolve().parent
project = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="golden-"))
(project / "tests").mkdir(parents=True, exist_ok=True)
test = project / "tests" / "test_my_training.py"
shutil.copy(here / "golden" / "test_my_training.py", test)


def pytest(title, *options):
    """Run the test as a user would; print the failure's message and pytest's last line; return its exit status."""
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *options, "tests"],
                          cwd=project, capture_output=True, text=True)
    lines = done.stdout.splitlines()
    print(f"--- {title}: exit status {done.returncode}")
    failure = [i for i, line in enumerate(lines) if line.startswith("_____")]  # the failure's message follows
    for line in lines[failure[0] + 1 if failure else len(lines):]:
        if line.startswith(("=====", "tests/")):
            break
        print(line)
    print(lines[-1])
    return done.returncode


first = pytest("1. no golden trace yet: it is written, and the test fails saying so")
again = pytest("2. the same code: compared bit for bit with the golden trace, passes")
test.write_text(test.read_text().replace("lr=0.01", "lr=0.02"))  # a change to the code under test
changed = pytest("3. another learning rate: fails with tracer diff's report")
regen = pytest("4. the change was intended: --regen-traces rewrites the golden trace", "--regen-traces")
golden = project / "tests" / "test_my_training" / "test_training_trace_is_unchanged.trace.csv"
print("golden trace:", golden, golden.exists())
sys.exit(0 if (first, again, changed, regen) == (1, 0, 1, 0) and golden.exists() else 1)
