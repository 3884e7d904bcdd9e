"""examples/explore.ipynb, executed by a real Jupyter kernel (nbclient and ipykernel), as a reader runs it."""

from __future__ import annotations

import os
import pathlib
import sys

import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"
KERNEL_TIMEOUT = 300  # seconds per cell; the slowest cell builds a 0.7 MB page in about a second


def test_the_example_notebook_runs_and_shows_the_summary_and_the_page(monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    # The kernel runs this interpreter (the project's environment) and draws without a display.
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("PATH", str(pathlib.Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""))
    notebook = nbformat.read(EXAMPLES / "explore.ipynb", as_version=4)
    client = nbclient.NotebookClient(notebook, timeout=KERNEL_TIMEOUT, kernel_name="python3",
                                     resources={"metadata": {"path": str(EXAMPLES)}})
    client.execute()  # raises CellExecutionError on any error in any cell
    shown = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    html = [output["data"]["text/html"] for output in shown if "text/html" in output.get("data", {})]
    assert len(html) == 2
    summary, page = html
    assert "e1-adam.trace.csv" in summary and "1280 updates, complete" in summary and "<table>" in summary
    assert page.startswith('<iframe srcdoc="&lt;!DOCTYPE html&gt;') and "tracer-data" in page
    printed = "".join(output.get("text", "") for output in shown if output.get("output_type") == "stream")
    assert "Explorer(4 runs" in printed and " MB" in printed
