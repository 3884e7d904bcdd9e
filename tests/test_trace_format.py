"""The trace file: writer and reader round trip, bad files, killed and interrupted runs."""

from __future__ import annotations

import json
import math
import struct
import subprocess
import sys
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tracer.errors import TraceFormatError
from tracer.trace import SCHEMA_VERSION, TraceWriter, load_trace, write_trace

COLUMNS = ["update", "epoch", "batch", "lr", "loss", "Wa.theta", "Wa.v"]
META_LINE = json.dumps({"format": "tracer-trace", "schema_version": 1})
HEADER = ",".join(COLUMNS)


def _rows(n):
    return [{"update": i + 1, "epoch": 0, "batch": i, "lr": 0.01, "loss": 1.0 / (i + 1), "Wa.theta": 0.1 * i} for i in range(n)]


def test_round_trip(tmp_path):
    path = write_trace(tmp_path / "t.trace.csv", {"label": "x"}, COLUMNS, _rows(3), final={"Wa": 0.3})
    trace = load_trace(path)
    assert trace.columns == COLUMNS and len(trace) == 3
    assert trace.status == "complete" and trace.final == {"Wa": 0.3} and trace.diverged_at is None
    assert trace.meta["label"] == "x" and trace.meta["problem"] is None and trace.meta["schema_version"] == SCHEMA_VERSION
    assert trace["loss"].tolist() == [1.0, 0.5, 1.0 / 3]
    assert np.isnan(trace["Wa.v"]).all()  # empty cells
    assert trace["update"].dtype == np.float64 and "Wa.v" in trace and "nope" not in trace
    assert trace.path == path
    lines = path.read_text().splitlines()
    assert lines[2] == "1,0,0,0.01,1.0,0.0,"
    assert lines[-1].startswith('#end {"status": "complete", "updates": 3')


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(allow_nan=True, allow_infinity=True, allow_subnormal=True), min_size=1, max_size=40))
def test_floats_round_trip_bit_for_bit(tmp_path_factory, values):
    values += [-0.0, 5e-324, 1.7976931348623157e308, math.inf, -math.inf, math.nan]
    path = tmp_path_factory.mktemp("h") / "t.trace.csv"
    write_trace(path, {}, ["x"], [{"x": v} for v in values])
    read = load_trace(path)["x"]
    as_bits = lambda xs: [struct.pack("<d", x) if not math.isnan(x) else b"nan" for x in xs]
    assert as_bits(read.tolist()) == as_bits(values)


def test_killed_run_reads_back_incomplete_and_drops_a_partial_line(tmp_path):
    path = tmp_path / "killed.trace.csv"
    writer = TraceWriter(path, {}, COLUMNS)
    for row in _rows(4):
        writer.write_row(row)
    # No close(): the process died. Rows are already flushed; add half a row.
    with open(path, "a") as f:
        f.write("5,0,4,0.0")
    with pytest.warns(UserWarning, match="line 7: dropped an unterminated last line"):
        trace = load_trace(path)
    assert len(trace) == 4 and trace.status == "incomplete" and trace.final is None


@pytest.mark.parametrize("kept", [len("#"), len("#end "), len('#end {"status": "compl')])
def test_trailer_cut_mid_write_reads_back_incomplete(tmp_path, kept):
    path = tmp_path / "cut.trace.csv"
    with TraceWriter(path, {}, COLUMNS) as writer:
        for row in _rows(4):
            writer.write_row(row)
        writer.close("complete", final={"Wa": 1.0})
    text = path.read_text()
    trailer_at = text.index("#end ")
    path.write_text(text[: trailer_at + kept])  # the disk filled up while the trailer was written
    with pytest.warns(UserWarning, match="line 7: dropped a trailer cut mid-write"):
        trace = load_trace(path)
    assert len(trace) == 4 and trace.status == "incomplete" and trace.final is None
    assert trace["update"].tolist() == [1.0, 2.0, 3.0, 4.0]


def test_interrupted_writer(tmp_path):
    path = tmp_path / "i.trace.csv"
    with pytest.raises(KeyboardInterrupt):
        with TraceWriter(path, {}, COLUMNS) as writer:
            writer.write_row(_rows(1)[0])
            raise KeyboardInterrupt
    trace = load_trace(path)
    assert trace.status == "interrupted" and len(trace) == 1


def _file(tmp_path, content: bytes | str):
    path = tmp_path / "bad.trace.csv"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


# (desc, file content, message regex): every bad file is one TraceFormatError naming file and line.
BAD_FILES = [
    ("empty", b"", r"bad\.trace\.csv: empty file"),
    ("png", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe", r"not a trace file: not UTF-8"),
    ("random csv", "a,b,c\n1,2,3\n", r"line 1: not a trace file: the first line must be the JSON metadata"),
    ("json but not a trace", '{"hello": 1}\nx\n', r"line 1: not a trace file: metadata 'format' is None"),
    ("json list", "[1, 2]\nx\n", r"line 1: not a trace file"),
    ("unknown schema", '{"format": "tracer-trace", "schema_version": 99}\nx\n', r"line 1: unknown schema_version 99"),
    ("no header", META_LINE + "\n", r"line 2: no CSV header"),
    ("only a partial line", META_LINE, r"line 1: no metadata line"),
    ("duplicate columns", META_LINE + "\na,a\n", r"line 2: invalid header"),
    ("short row", f"{META_LINE}\n{HEADER}\n1,0,0,0.01,1.0,0.1,\n2,0,1\n", r"line 4: a row with 3 cells; the header has 7"),
    ("long row", f"{META_LINE}\n{HEADER}\n1,0,0,0.01,1.0,0.1,,9\n", r"line 3: a row with 8 cells"),
    ("not a number", f"{META_LINE}\n{HEADER}\n1,0,0,0.01,abc,0.1,\n", r"line 3: cell 5 is not a number: 'abc'"),
    ("code in a cell", f"{META_LINE}\n{HEADER}\n1,0,0,__import__('os'),1,0.1,\n", r"line 3: cell 4 is not a number"),
    ("bad trailer", f"{META_LINE}\n{HEADER}\n#end {{oops\n", r"line 3: invalid trailer"),
    ("unknown status", f'{META_LINE}\n{HEADER}\n#end {{"status": "great"}}\n', r"line 3: invalid trailer"),
    ("rows after trailer", f'{META_LINE}\n{HEADER}\n#end {{"status": "complete"}}\n1,0,0,0.01,1.0,0.1,\n', r"line 3: the '#end' trailer must be the last line"),
    ("stray comment", f"{META_LINE}\n{HEADER}\n# hello\n", r"line 3: unexpected comment line"),
]


@pytest.mark.parametrize("content, message", [(c, m) for _, c, m in BAD_FILES], ids=[d for d, _, _ in BAD_FILES])
def test_bad_files(tmp_path, content, message):
    path = _file(tmp_path, content)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(TraceFormatError, match=message) as error:
            load_trace(path)
    assert str(path) in str(error.value) and "\n" not in str(error.value)


def test_missing_file_and_unknown_column(tmp_path):
    with pytest.raises(TraceFormatError, match="cannot read trace file"):
        load_trace(tmp_path / "nothing.trace.csv")
    trace = load_trace(write_trace(tmp_path / "t.trace.csv", {}, COLUMNS, _rows(2)))
    with pytest.raises(TraceFormatError, match=r"no column 'Wb.theta' in this trace"):
        trace["Wb.theta"]


def test_reading_never_imports_torch(tmp_path):
    path = write_trace(tmp_path / "t.trace.csv", {}, COLUMNS, _rows(2))
    code = (
        "import sys, tracer, tracer.diff, tracer.trace, tracer.testing\n"
        f"tracer.diff_traces({str(path)!r}, {str(path)!r})\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
