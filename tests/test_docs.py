"""The documentation: the site builds with --strict, every tutorial script runs, the README stays short and true.

CI runs `make test` only, so the site's strict build (`make docs`) is run here,
into a temporary folder: a broken link, a missing page, an included file that
does not exist or a docstring mkdocstrings cannot read fails it.
"""

from __future__ import annotations

import argparse
import doctest
import importlib
import importlib.util
import inspect
import os
import pathlib
import re
import subprocess
import sys
import warnings

import numpy as np
import pytest
import yaml

from tracer import load_trace
from tracer.trace import TraceWriter

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
BIN = pathlib.Path(sys.executable).parent
ENV = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "MPLBACKEND": "Agg"}


def _load(path: pathlib.Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(command: list[str], cwd: pathlib.Path, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=cwd, env=ENV, capture_output=True, text=True, timeout=timeout)


# ------------------------------------------------------------------ the site


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> pathlib.Path:
    out = tmp_path_factory.mktemp("site")
    done = _run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml"),
                 "-d", str(out)], ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    return out


def _nav_pages() -> list[str]:
    """Every page file named in mkdocs.yml's nav, in order."""
    def pages(entries):
        for entry in entries:
            value = next(iter(entry.values())) if isinstance(entry, dict) else entry
            yield from pages(value) if isinstance(value, list) else [value]

    return list(pages(yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"]))


def test_the_site_builds_strict_with_every_page_of_the_nav(site):
    nav = _nav_pages()
    assert len(nav) >= 19
    for page in nav:
        built = site / ("index.html" if page == "index.md" else page.removesuffix(".md") + "/index.html")
        assert built.exists(), page
    assert (site / "figures" / "fig03_paths.gif").read_bytes() == (ROOT / "figures" / "fig03_paths.gif").read_bytes()


def test_the_api_page_documents_the_public_names(site):
    html = (site / "reference" / "api" / "index.html").read_text()
    for name in ("tracer.recorder.Recorder", "tracer.trace.load_trace", "tracer.diff.diff_traces",
                 "tracer.testing.assert_trace_matches", "tracer.optimizer_check.assert_optimizers_match",
                 "tracer.optim.Adam", "tracer.render.render_figure", "tracer.regenerate.settle"):
        assert f'id="{name}"' in html, name
    assert "Args:" not in html  # Google-style sections are parsed into tables, not shown as text
    assert 'doc-section-title">Parameters:' in html and 'doc-section-title">Returns:' in html
    assert '<span class="gp">&gt;&gt;&gt; </span>' in html  # the doctested examples, as code


def test_the_cli_page_has_every_subcommand_and_option(site):
    from tracer.cli import SUBCOMMANDS, _build_parser

    html = (site / "reference" / "cli" / "index.html").read_text()
    for name in SUBCOMMANDS:
        assert f"tracer {name}" in html
        parser = _build_parser([name])
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[name]
        for action in sub._actions:
            for option in [] if isinstance(action, argparse._HelpAction) else action.option_strings:
                assert f"<code>{option}</code>" in html, (name, option)


def test_the_cli_reference_follows_the_parsers():
    hook = _load(DOCS / "hooks" / "cli_reference.py")
    text = hook.reference()
    assert text.count("\n## `tracer ") + text.startswith("## `tracer ") == len(importlib.import_module("tracer.cli").SUBCOMMANDS)
    assert "| `--on-divergence` | `stop`, `continue` | `stop` |" in text
    assert "| `--overwrite` | flag |  |" in text
    assert hook.on_page_markdown(f"intro\n{hook.MARKER}\n", None, None, None) == f"intro\n{text}\n"


# ------------------------------------------------------------ docstrings


@pytest.mark.parametrize("module", ["tracer.trace", "tracer.diff", "tracer.platform", "tracer.optim"])
def test_docstring_examples_run(module):
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


# ------------------------------------------------------------ the trace format's numpy reader


@pytest.fixture(scope="module")
def read_trace():
    return _load(DOCS / "reference" / "read_trace.py").read_trace


def _assert_reads_as_load_trace(read_trace, path: pathlib.Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # load_trace warns about a row cut mid-write
        expected = load_trace(path)
    meta, columns, values, trailer = read_trace(path)
    assert (meta, columns, trailer) == (expected.meta, expected.columns, expected.trailer)
    assert values.shape == (len(expected), len(columns)) and values.dtype == np.float64
    for index, column in enumerate(columns):
        assert values[:, index].tobytes() == expected[column].tobytes(), column


def _binary_twin(path: pathlib.Path, out: pathlib.Path) -> pathlib.Path:
    trace = load_trace(path)
    with TraceWriter(out, trace.meta, trace.columns) as writer:
        for row in range(len(trace)):
            writer.write_cells([None if np.isnan(v) else float(v) for v in (trace[c][row] for c in trace.columns)])
        writer.close(trace.status, final=trace.final, diverged_at=trace.diverged_at)
    return out


COMMITTED = sorted((ROOT / "logs").rglob("*.trace.csv"))


@pytest.mark.parametrize("path", COMMITTED, ids=[p.name for p in COMMITTED])
def test_the_numpy_reader_reads_every_committed_trace_as_load_trace(read_trace, path):
    _assert_reads_as_load_trace(read_trace, path)


@pytest.mark.parametrize("name", ["e1-sgd", "mlp-adam"])
def test_the_numpy_reader_reads_binary_traces_and_killed_runs(read_trace, tmp_path, name):
    twin = _binary_twin(ROOT / "logs" / f"{name}.trace.csv", tmp_path / f"{name}.trace.bin")
    _assert_reads_as_load_trace(read_trace, twin)
    raw = twin.read_bytes()
    width = 8 * len(load_trace(twin).columns)
    killed = tmp_path / "killed.trace.bin"
    killed.write_bytes(raw[: len(raw) - 3 * width - 800 - width // 2])  # no trailer, half a row
    _assert_reads_as_load_trace(read_trace, killed)
    assert load_trace(killed).status == "incomplete"
    text = (ROOT / "logs" / f"{name}.trace.csv").read_bytes()
    cut = tmp_path / "killed.trace.csv"
    cut.write_bytes(text[: len(text) // 2])
    _assert_reads_as_load_trace(read_trace, cut)


def test_the_numpy_reader_is_twenty_lines(read_trace):
    body = inspect.getsource(read_trace).splitlines()[2:]  # after the def and its docstring line
    assert len(body) <= 20


# ------------------------------------------------------------ the tutorials run


def test_getting_started(tmp_path):
    done = _run(["bash", str(DOCS / "tutorials" / "getting_started.sh")], tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "run          20 epochs (batch size 64), 160 updates, complete" in done.stdout
    assert "drift: first differs at update 2 (Wa.theta)" in done.stdout
    assert {p.name for p in tmp_path.iterdir()} == {"adam.trace.csv", "momentum.trace.csv", "step-size.png", "paths.gif"}


def test_first_trace(tmp_path):
    done = _run([sys.executable, str(DOCS / "tutorials" / "first_trace.py")], tmp_path)
    assert done.returncode == 0, done.stderr
    # 4 coordinates x 6 quantities, 7 others, and Adam's state by key: exp_avg and exp_avg_sq per coordinate, step's norms.
    assert done.stdout.startswith("complete 100 updates; 41 columns")
    trace = load_trace(tmp_path / "run.trace.csv")
    assert trace.meta["optimizer"]["class"] == "torch.optim.adam.Adam"
    assert trace["loss"][-1] < trace["loss"][0]


CHECK_PAGE = DOCS / "tutorials" / "check-your-optimizer.md"


def _assert_prints_as_shown(printed: str, shown: str) -> None:
    """Line for line; the two values of a parameter line may differ in their last digits on another CPU."""
    assert len(printed.splitlines()) == len(shown.splitlines()), printed
    for line, expected in zip(printed.splitlines(), shown.splitlines()):
        if line.lstrip().startswith("parameter"):
            assert line.split(" at element")[0] == expected.split(" at element")[0]
        else:
            assert line == expected


def test_check_your_optimizer_prints_what_the_page_shows(tmp_path):
    done = _run([sys.executable, str(DOCS / "tutorials" / "check_your_optimizer.py")], tmp_path)
    assert done.returncode == 0, done.stderr
    _assert_prints_as_shown(done.stdout.rstrip("\n") + "\n", _blocks(CHECK_PAGE, "text")[1])
    assert "MyAdamFixed matches torch.optim.adam.Adam bit for bit: 2 cases x 25 updates" in done.stdout


def test_check_your_optimizer_from_the_command_line_as_the_page_shows():
    command = _blocks(CHECK_PAGE, "bash")[0].split()
    assert command[:2] == ["tracer", "check-optimizer"]
    wrong = _run([str(BIN / "tracer"), *command[1:]], DOCS / "tutorials")
    assert wrong.returncode == 1, wrong.stderr
    _assert_prints_as_shown(wrong.stdout, _blocks(CHECK_PAGE, "text")[0])
    fixed = _run([str(BIN / "tracer"), *[w.replace("my_adam:MyAdam", "my_adam:MyAdamFixed") for w in command[1:]]],
                 DOCS / "tutorials")
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert fixed.stdout.startswith("my_adam.MyAdamFixed matches torch.optim.adam.Adam bit for bit: 4 cases x 25 updates")


def _blocks(page: pathlib.Path, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", page.read_text(), flags=re.S)


def test_golden_traces_life_cycle(tmp_path):
    done = _run([sys.executable, str(DOCS / "tutorials" / "golden_traces.py"), str(tmp_path)], tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr  # exit statuses 1, 0, 1, 0 as the page says
    assert "no golden trace" in done.stdout and "drift: first differs at update 1 (lr)" in done.stdout
    golden = load_trace(tmp_path / "tests" / "test_my_training" / "test_training_trace_is_unchanged.trace.csv")
    assert np.all(golden["lr"] == 0.02)  # rewritten by --regen-traces at the new learning rate


def test_teach_with_your_function(tmp_path):
    done = _run(["bash", str(DOCS / "tutorials" / "teach_with_your_function.sh")], tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    for name in ("sgd", "momentum", "adam"):
        trace = load_trace(tmp_path / f"{name}.trace.csv")
        assert (len(trace), trace.status) == (100, "complete")
        assert trace.meta["problem"] == {"name": "function", "expression": "0.1*(x**2 + y**2) - cos(x)*cos(y)",
                                         "x0": 2.6, "y0": 1.9}
        # As the page says: each ends in the ripple nearest the start, near (2.45, 2.45), not at (0, 0).
        assert abs(trace.final["x"] - 2.45) < 0.02 and abs(trace.final["y"] - 2.45) < 0.02, trace.final
    for name in ("paths.png", "paths.gif", "loss.png", "internals.png", "explore.html"):
        assert (tmp_path / name).stat().st_size > 10_000


def test_read_a_trace(tmp_path):
    done = _run([sys.executable, str(DOCS / "how-to" / "read_a_trace.py"), str(ROOT / "logs" / "e1-adam.trace.csv")],
                tmp_path)
    assert done.returncode == 0, done.stderr
    assert "complete 1280 updates; final {'Wa': 1.2605409622192383, 'Wb': 1.232107400894165}" in done.stdout
    assert "largest step 0.014142134359325502 at update 1" in done.stdout
    if importlib.util.find_spec("pandas"):
        assert "read_csv agrees: True" in done.stdout


TESTED_HERE = {"tutorials/getting_started.sh", "tutorials/first_trace.py", "tutorials/check_your_optimizer.py",
               "tutorials/my_adam.py", "tutorials/golden_traces.py", "tutorials/golden/test_my_training.py",
               "tutorials/teach_with_your_function.sh", "how-to/read_a_trace.py", "reference/read_trace.py"}


def test_every_script_in_the_docs_is_run_by_a_test():
    scripts = {str(p.relative_to(DOCS)) for p in DOCS.rglob("*") if p.suffix in (".py", ".sh")
               and "hooks" not in p.parts and "__pycache__" not in p.parts}
    assert scripts <= TESTED_HERE | _tested_elsewhere(), scripts - TESTED_HERE


def _tested_elsewhere() -> set[str]:
    """Scripts in docs/ that another test module runs: named in a test file outside this one."""
    named = set()
    for test in (ROOT / "tests").glob("test_*.py"):
        if test.name != "test_docs.py":
            named |= {m.group(1) for m in re.finditer(r"docs/([\w/.-]+\.(?:py|sh))", test.read_text())}
    return named


# ------------------------------------------------------------ the README


README = (ROOT / "README.md").read_text()


def test_the_readme_is_short_and_starts_with_the_two_commands():
    lines = README.splitlines()
    assert len(lines) < 250
    first_block = README.split("```bash\n", 1)[1].split("```", 1)[0]
    assert [line.split()[:2] for line in first_block.splitlines()] == [["make", "reproduce"], ["make", "test"]]
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^reproduce:", makefile, re.M) and re.search(r"^test:", makefile, re.M)


def test_the_readme_links_every_page_of_the_nav_and_each_link_exists():
    links = set(re.findall(r"\]\(((?:docs|figures)/[^)#]+)", README))
    for link in links:
        assert (ROOT / link).exists(), link
    assert {f"docs/{page}" for page in _nav_pages() if page != "index.md"} <= links


def test_the_readme_example_runs(tmp_path):
    example = README.split("```python\n", 1)[1].split("```", 1)[0]
    done = _run([sys.executable, "-c", example], tmp_path)
    assert done.returncode == 0, done.stderr
    assert load_trace(tmp_path / "run.trace.csv").status == "complete"
    assert done.stdout.startswith("[")  # the last three step sizes


def test_links_to_repository_files_work_on_disk_and_in_the_site():
    hook = _load(DOCS / "hooks" / "repo_files.py")
    assert hook.site_link("../figures/fig01_step_size.png", "index.md", DOCS) == "figures/fig01_step_size.png"
    assert hook.site_link("../../figures/fig01_step_size.png", "how-to/a.md", DOCS) == "../figures/fig01_step_size.png"
    assert hook.site_link("../tracer/recorder.py", "frameworks.md", DOCS) == "tracer/recorder.py"
    assert hook.site_link("../tracer/no-such-file.py", "frameworks.md", DOCS) == "../tracer/no-such-file.py"  # fails strict
    assert hook.site_link("../README.md", "index.md", DOCS) == "../README.md"  # no page for it: fails strict
    assert hook.site_link("other.md", "how-to/a.md", DOCS) == "other.md"
    assert hook.site_link("https://example.org/figures/x.png", "index.md", DOCS) == "https://example.org/figures/x.png"
    for page in DOCS.rglob("*.md"):  # on disk, every figure a page shows exists where the link says
        for target in re.findall(r"\]\(([^)#\s]*figures/[^)#\s]+)\)", page.read_text()):
            assert (page.parent / target).resolve().is_file(), (page, target)
