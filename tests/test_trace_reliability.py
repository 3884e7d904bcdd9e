"""Nothing lost, nothing let in: appending, one writer per file, write failures and hostile trace files.

docs/reliability.md states the promises these tests hold the trace files to.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tracer import trace_binary
from tracer.errors import TraceFormatError, TracerError, TraceWriteError
from tracer.trace import MAX_DEPTH, TraceWriter, load_trace, write_trace

COLUMNS = ["update", "epoch", "batch", "lr", "loss", "Wa.theta", "Wa.v"]
FORMS = [".csv", ".bin"]


def _row(update: int) -> dict:
    return {"update": update, "epoch": 0, "batch": update - 1, "lr": 0.01, "loss": 1.0 / update, "Wa.theta": 0.5 * update}


def _trace(path, rows: int, status: str | None = "complete"):
    """A trace of ``rows`` rows; ``status`` None leaves it without a trailer, as a killed run does."""
    writer = TraceWriter(path, {"label": "first"}, COLUMNS)
    for update in range(1, rows + 1):
        writer.write_row(_row(update))
    if status is None:
        os.close(writer._fd)  # the process died: no trailer
    else:
        writer.close(status)
    return path


def _quiet_load(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_trace(path)


# ----------------------------------------------------------------- appending


@pytest.mark.parametrize("suffix", FORMS)
@pytest.mark.parametrize("status", ["complete", "interrupted", None])
def test_append_continues_either_form_after_its_last_whole_row(tmp_path, suffix, status):
    path = _trace(tmp_path / f"run.trace{suffix}", 30, status)
    with TraceWriter(path, {"label": "first"}, COLUMNS, if_exists="append") as writer:
        assert len(writer.resumed) == 30 and writer.updates == 30
        for update in range(31, 41):
            writer.write_row(_row(update))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no dropped bytes, nothing half-written
        trace = load_trace(path)
    assert trace.status == "complete" and trace.trailer["updates"] == 40
    assert trace["update"].tolist() == list(range(1, 41))
    assert trace["loss"].tolist() == [1.0 / u for u in range(1, 41)]  # bit for bit: 1/u written as its repr or its float64


# (form, bytes appended to a 3-row trace without trailer, how the refusal names them)
TORN_TAILS = [
    (".csv", b"4,0,3,0.0", r"an unterminated last line of 9 bytes after its 3 whole rows"),
    (".csv", b"#end {\"sta", r"10 bytes of a trailer cut mid-write after its 3 whole rows"),
    (".bin", b"\x00" * 13, r"13 bytes after its 3 whole rows"),
    (".bin", trace_binary.TRAILER_START + b"{\"st", r"12 bytes after its 3 whole rows"),
]


@pytest.mark.parametrize("suffix, tail, named", TORN_TAILS)
def test_append_refuses_a_tail_that_is_not_a_whole_row_or_trailer(tmp_path, suffix, tail, named):
    path = _trace(tmp_path / f"run.trace{suffix}", 3, None)
    with open(path, "ab") as file:
        file.write(tail)
    before = path.read_bytes()
    with pytest.raises(TraceFormatError, match=named + r", not a whole row or a trailer of its form") as refused:
        TraceWriter(path, {}, COLUMNS, if_exists="append")
    assert "\n" not in str(refused.value) and path.read_bytes() == before
    # What it says to do works: cut to the last whole row, then append.
    size = int(str(refused.value).rsplit("truncate -s ", 1)[1].split()[0])
    os.truncate(path, size)
    with TraceWriter(path, {}, COLUMNS, if_exists="append") as writer:
        writer.write_row(_row(4))
    assert load_trace(path)["update"].tolist() == [1, 2, 3, 4]


@pytest.mark.parametrize("written, named", [(".bin", "it holds a binary trace"), (".csv", "it holds a CSV trace")])
def test_append_refuses_the_other_form(tmp_path, written, named):
    source = _trace(tmp_path / f"source.trace{written}", 2)
    path = source.rename(tmp_path / ("run.trace.csv" if written == ".bin" else "run.trace.bin"))
    before = path.read_bytes()
    with pytest.raises(TracerError, match=f"cannot append to .*: {named}"):
        TraceWriter(path, {}, COLUMNS, if_exists="append")
    assert path.read_bytes() == before


_APPENDER = """
import sys
from tracer.trace import TraceWriter
columns = {columns!r}
writer = TraceWriter(sys.argv[1], {{}}, columns, if_exists="append")
update = writer.updates
print("appending", flush=True)
while True:
    update += 1
    writer.write_row({{"update": update, "epoch": 0, "batch": update - 1, "lr": 0.01, "loss": 1.0 / update, "Wa.theta": 0.5 * update}})
"""


@pytest.mark.parametrize("suffix", FORMS)
def test_a_kill_during_an_appending_run_keeps_every_row_before_and_after(tmp_path, suffix):
    """SIGKILL while rows are appended as fast as they can be: the file holds the old rows and whole new rows
    only, in order, and takes the next append."""
    path = _trace(tmp_path / f"run.trace{suffix}", 30)
    child = subprocess.Popen([sys.executable, "-c", _APPENDER.format(columns=COLUMNS), str(path)],
                             stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline() == "appending\n"
    size = path.stat().st_size
    while path.stat().st_size < size + 20_000:  # some hundreds of rows appended
        pass
    child.send_signal(signal.SIGKILL)
    child.wait()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # each row is one write: a kill never leaves part of one
        trace = load_trace(path)
    rows = len(trace)
    assert rows > 100 and trace.status == "incomplete"
    assert trace["update"].tolist() == list(range(1, rows + 1))
    assert trace["loss"].tolist() == [1.0 / u for u in range(1, rows + 1)]
    with TraceWriter(path, {}, COLUMNS, if_exists="append") as writer:
        writer.write_row(_row(rows + 1))
    assert load_trace(path)["update"].tolist() == list(range(1, rows + 2))


# ------------------------------------------------------------ one writer per file


@pytest.mark.parametrize("suffix", FORMS)
@pytest.mark.parametrize("first", ["error", "append", "overwrite"])
@pytest.mark.parametrize("second", ["error", "append", "overwrite"])
def test_a_second_writer_on_a_path_is_refused_in_every_mode(tmp_path, suffix, first, second):
    path = tmp_path / f"run.trace{suffix}"
    with TraceWriter(path, {"label": "first"}, COLUMNS, if_exists=first) as writer:
        writer.write_row(_row(1))
        expected = "already exists" if second == "error" else "is being written by another run"
        with pytest.raises(TracerError, match=expected) as refused:
            TraceWriter(path, {"label": "second"}, COLUMNS, if_exists=second)
        assert "\n" not in str(refused.value)
        writer.write_row(_row(2))
    trace = load_trace(path)
    assert trace.meta["label"] == "first" and trace["update"].tolist() == [1, 2] and trace.status == "complete"


def test_concurrent_starts_in_processes_leave_one_writer(tmp_path):
    """Two processes start on one path at once, for each mode and form: exactly one writes, the file is its run's."""
    script = """
import sys, time
from tracer.trace import TraceWriter
path, mode, label, start = sys.argv[1:5]
while time.time() < float(start):
    pass
try:
    writer = TraceWriter(path, {"label": label}, ["update"], if_exists=mode)
except Exception as error:
    print("refused", type(error).__name__, error)
    sys.exit(0)
time.sleep(1.0)
for update in range(1, 51):
    writer.write_row({"update": update})
writer.close()
print("wrote")
"""
    import time

    for suffix in FORMS:
        for mode in ("error", "append", "overwrite"):
            path = tmp_path / f"{mode}.trace{suffix}"
            start = time.time() + 1.5
            children = [subprocess.Popen([sys.executable, "-c", script, str(path), mode, label, str(start)],
                                         stdout=subprocess.PIPE, text=True) for label in ("A", "B")]
            said = [child.communicate()[0] for child in children]
            assert sorted(text.split()[0] for text in said) == ["refused", "wrote"], (mode, suffix, said)
            assert all("Error" not in text or "TracerError" in text for text in said)
            trace = load_trace(path)
            assert trace["update"].tolist() == list(range(1, 51)) and trace.status == "complete"


@pytest.mark.parametrize("suffix", FORMS)
def test_a_failed_start_leaves_nothing_behind(tmp_path, suffix, monkeypatch):
    path = tmp_path / f"run.trace{suffix}"
    real_write = os.write

    def full_disk(fd, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", full_disk)
    with pytest.raises(TraceWriteError, match=r"cannot start the trace .*: No space left on device; nothing was written"):
        TraceWriter(path, {}, COLUMNS)
    assert not path.exists()
    monkeypatch.setattr(os, "write", real_write)
    with TraceWriter(path, {}, COLUMNS) as writer:  # the retry is not blocked by a 0-byte file
        writer.write_row(_row(1))
    assert len(load_trace(path)) == 1


# ----------------------------------------------------------- the path policy


def _symlink(tmp_path, suffix):
    target = tmp_path / "target.txt"
    target.write_text("someone else's file\n")
    link = tmp_path / f"link.trace{suffix}"
    link.symlink_to(target)
    return link


def _dangling(tmp_path, suffix):
    link = tmp_path / f"dangling.trace{suffix}"
    link.symlink_to(tmp_path / "nowhere.txt")
    return link


# (what is at the path, how to make it, the one-line refusal)
BAD_OUTPUTS = [
    ("symlink", _symlink, r"it is a symbolic link; a trace is written to the path itself, never through a link"),
    ("dangling symlink", _dangling, r"it is a symbolic link"),
    ("missing folder", lambda tmp, suffix: tmp / "no" / f"run.trace{suffix}", r"directory .*no' does not exist \(it is not created"),
    ("directory", lambda tmp, suffix: tmp, r"it is not a regular file \(a directory\)"),
    ("fifo", lambda tmp, suffix: (os.mkfifo(tmp / f"f{suffix}"), tmp / f"f{suffix}")[1], r"it is not a regular file \(a pipe\)"),
]


@pytest.mark.parametrize("mode", ["error", "append", "overwrite"])
@pytest.mark.parametrize("make, message", [(m, e) for _, m, e in BAD_OUTPUTS], ids=[d for d, _, _ in BAD_OUTPUTS])
def test_bad_output_paths_are_refused_in_one_line(tmp_path, make, message, mode):
    path = make(tmp_path, ".csv")
    with pytest.raises(TracerError, match=message) as refused:
        TraceWriter(path, {}, COLUMNS, if_exists=mode)
    assert "\n" not in str(refused.value)
    target = tmp_path / "target.txt"
    if target.exists():
        assert target.read_text() == "someone else's file\n"  # a link's target is never written


# ---------------------------------------------------------------- write failures


class _Failing:
    """os.write that fails with ``errno`` once ``after`` more bytes have been written (a disk filling up)."""

    def __init__(self, monkeypatch, after: int, error: int = 28):
        self.left, self.error, self.real = after, error, os.write
        monkeypatch.setattr(os, "write", self)

    def __call__(self, fd, data):
        data = bytes(data)
        if len(data) > self.left:
            if self.left:
                self.real(fd, data[: self.left])  # part of the row lands, as on a real full disk
                self.left = 0
            raise OSError(self.error, os.strerror(self.error))
        self.left -= len(data)
        return self.real(fd, data)


@pytest.mark.parametrize("suffix", FORMS)
def test_a_full_disk_keeps_every_whole_row_and_says_why(tmp_path, suffix, monkeypatch):
    path = tmp_path / f"run.trace{suffix}"
    writer = TraceWriter(path, {}, COLUMNS)
    for update in range(1, 6):
        writer.write_row(_row(update))
    failing = _Failing(monkeypatch, after=5)  # 5 bytes of row 6 land, then the disk is full
    with pytest.raises(TraceWriteError, match=r"cannot write to the trace .*: No space left on device; it keeps its 5 whole rows"):
        writer.write_row(_row(6))
    with pytest.raises(TraceWriteError):  # every later row refused alike, nothing appended after the cut
        writer.write_row(_row(7))
    failing.left = 10_000  # space again: the trailer fits
    writer.close()  # no second error: it was reported
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        trace = load_trace(path)
    assert trace["update"].tolist() == [1, 2, 3, 4, 5] and trace.status == "interrupted"
    assert "No space left on device" in trace.trailer["reason"]


@pytest.mark.parametrize("suffix", FORMS)
def test_a_trailer_that_does_not_fit_leaves_the_whole_rows(tmp_path, suffix, monkeypatch):
    path = tmp_path / f"run.trace{suffix}"
    writer = TraceWriter(path, {}, COLUMNS)
    for update in range(1, 4):
        writer.write_row(_row(update))
    _Failing(monkeypatch, after=7)
    with pytest.raises(TraceWriteError, match="it keeps its 3 whole rows"):
        writer.close()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        trace = load_trace(path)
    assert trace["update"].tolist() == [1, 2, 3] and trace.status == "incomplete"


@pytest.mark.parametrize("removed", ["file", "folder"])
def test_a_removed_file_or_folder_is_noticed_at_the_next_row(tmp_path, removed):
    folder = tmp_path / "logs"
    folder.mkdir()
    path = folder / "run.trace.csv"
    writer = TraceWriter(path, {}, COLUMNS)
    writer.write_row(_row(1))
    if removed == "file":
        path.unlink()
    else:
        path.unlink()
        folder.rmdir()
    with pytest.raises(TraceWriteError, match=r"was removed \(or its folder\) while it was written; updates after 1 were not recorded"):
        writer.write_row(_row(2))
    writer.close()


# ------------------------------------------------------------ hostile trace files


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def _deep_csv(tmp_path):
    meta = json.dumps({"format": "tracer-trace", "schema_version": 1})[:-1] + ', "x": ' + _nested(200_000) + "}"
    return meta + "\nupdate\n1\n"


def _deep_trailer(tmp_path):
    meta = json.dumps({"format": "tracer-trace", "schema_version": 1})
    return meta + "\nupdate\n1\n#end {\"status\": \"complete\", \"final\": null, \"x\": " + _nested(200_000) + "}\n"


def _deep_binary(tmp_path):
    header = ('{"meta": {"format": "tracer-trace", "schema_version": 1, "x": ' + _nested(200_000)
              + '}, "columns": ["update"], "cell": "<f8"}').encode()
    return trace_binary.MAGIC + len(header).to_bytes(8, "little") + header


def _just_too_deep(tmp_path):
    meta = json.dumps({"format": "tracer-trace", "schema_version": 1})[:-1] + ', "x": ' + _nested(MAX_DEPTH) + "}"
    return meta + "\nupdate\n1\n"


# (what, file content, the one-line error)
HOSTILE_FILES = [
    ("metadata nested 200,000 deep", _deep_csv, r"line 1: invalid metadata: nested deeper than 64 levels"),
    ("trailer nested 200,000 deep", _deep_trailer, r"line 4: invalid trailer: nested deeper than 64 levels"),
    ("binary header nested 200,000 deep", _deep_binary, r"invalid header: nested deeper than 64 levels"),
    ("metadata one level too deep", _just_too_deep, r"line 1: invalid metadata: nested deeper than 64 levels"),
]


@pytest.mark.parametrize("make, message", [(m, e) for _, m, e in HOSTILE_FILES], ids=[d for d, _, _ in HOSTILE_FILES])
def test_hostile_files_are_one_trace_format_error(tmp_path, make, message):
    content = make(tmp_path)
    path = tmp_path / "hostile.trace.csv"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(TraceFormatError, match=message) as error:
        load_trace(path)
    assert "\n" not in str(error.value)


def test_nesting_up_to_the_bound_loads(tmp_path):
    meta = json.dumps({"format": "tracer-trace", "schema_version": 1})[:-1] + ', "x": ' + _nested(MAX_DEPTH - 1) + "}"
    path = tmp_path / "deep.trace.csv"
    path.write_text(meta + "\nupdate\n1\n")
    assert len(load_trace(path)) == 1


@pytest.mark.parametrize("path, kind", [("/dev/zero", "a character device"), ("/dev/null", "a character device"),
                                        ("fifo", "a pipe"), ("dir", "a directory")])
def test_non_regular_files_are_refused_without_reading(tmp_path, path, kind):
    if path == "fifo":
        path = tmp_path / "f"
        os.mkfifo(path)  # opening it for reading would wait for a writer forever
    elif path == "dir":
        path = tmp_path
    elif not os.path.exists(path):
        pytest.skip(f"no {path} here")
    with pytest.raises(TraceFormatError, match=f"not a trace file: {kind}, not a regular file"):
        load_trace(path)


# ------------------------------------------------------------------- fuzzing


def _seed_traces(tmp_path_factory):
    folder = tmp_path_factory.mktemp("seeds")
    seeds = {}
    for suffix in FORMS:
        path = write_trace(folder / f"seed.trace{suffix}", {"label": "fuzz"}, COLUMNS,
                           [_row(u) for u in range(1, 6)], final={"Wa": 2.5})
        seeds[suffix] = path.read_bytes()
    return seeds


_SEEDS: dict[str, bytes] = {}

MUTATIONS = st.lists(
    st.one_of(
        st.tuples(st.just("flip"), st.integers(0, 10**6), st.integers(0, 255)),
        st.tuples(st.just("cut"), st.integers(0, 10**6), st.just(0)),
        st.tuples(st.just("insert"), st.integers(0, 10**6), st.binary(min_size=1, max_size=12)),
        st.tuples(st.just("delete"), st.integers(0, 10**6), st.integers(1, 40)),
    ),
    min_size=1,
    max_size=4,
)


def _mutate(raw: bytes, mutations) -> bytes:
    data = bytearray(raw)
    for kind, at, value in mutations:
        at = at % (len(data) + 1)
        if kind == "flip" and at < len(data):
            data[at] = value
        elif kind == "cut":
            del data[at:]
        elif kind == "insert":
            data[at:at] = value
        elif kind == "delete":
            del data[at:at + value]
    return bytes(data)


@pytest.mark.parametrize("suffix", FORMS)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(mutations=MUTATIONS)
def test_mutated_traces_load_or_raise_one_trace_format_error(tmp_path_factory, suffix, mutations):
    """Bytes flipped, cut, inserted or deleted anywhere in a CSV or binary trace: the reader returns a trace
    or raises one TraceFormatError with a one-line message; never any other exception."""
    if not _SEEDS:
        _SEEDS.update(_seed_traces(tmp_path_factory))
    raw = _mutate(_SEEDS[suffix], mutations)
    path = tmp_path_factory.mktemp("fuzz") / f"mutated.trace{suffix}"
    path.write_bytes(raw)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trace = load_trace(path)
    except TraceFormatError as error:
        assert "\n" not in str(error)
        return
    assert trace.status in ("complete", "diverged", "interrupted", "incomplete")
    for column in trace.columns:
        assert trace[column].dtype == np.float64 and len(trace[column]) == len(trace)


# ------------------------------------------------------- the recorder and `tracer trace`


def _training(steps: int, recorder=None, start=None):
    """Adam on a small quadratic; ``start`` continues (parameter, optimizer) from an earlier call."""
    import torch

    if start is None:
        torch.manual_seed(0)
        weight = torch.nn.Parameter(torch.randn(20))
        start = (weight, torch.optim.Adam([weight], lr=0.01))
    weight, optimizer = start
    for _ in range(steps):
        optimizer.zero_grad()
        loss = ((weight - 1.0) ** 2).sum()
        loss.backward()
        if recorder is not None:
            recorder.note(loss=loss.detach())
        optimizer.step()
    return start


@pytest.mark.parametrize("suffix", FORMS)
def test_a_write_failure_stops_recording_not_training(tmp_path, suffix, monkeypatch):
    from tracer import Recorder

    untraced = _training(12)[0].detach().clone()
    path = tmp_path / f"run.trace{suffix}"
    weight, optimizer = _training(0)
    with pytest.warns(RuntimeWarning, match=r"recording stopped, training goes on: cannot write to the trace .*: "
                                            r"No space left on device; it keeps its 5 whole rows") as said:
        with Recorder(optimizer, path) as recorder:
            _training(5, recorder, (weight, optimizer))
            failing = _Failing(monkeypatch, after=3)
            _training(7, recorder, (weight, optimizer))  # nothing raised out of step()
            failing.left = 10_000  # space again when the run closes: the trailer says why
    assert len([w for w in said if "recording stopped" in str(w.message)]) == 1
    assert recorder.write_failure is not None and "No space left" in recorder.write_failure
    assert torch_equal(weight.detach(), untraced)  # training went on, bit for bit as without a recorder
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        trace = load_trace(path)
    assert trace["update"].tolist() == [1, 2, 3, 4, 5] and trace.status == "interrupted"
    assert trace.trailer["reason"] == recorder.write_failure


def torch_equal(a, b) -> bool:
    import torch

    return torch.equal(a, b)


def test_on_write_error_raise_raises_from_the_step_and_once(tmp_path, monkeypatch):
    from tracer import Recorder

    path = tmp_path / "run.trace.csv"
    weight, optimizer = _training(0)
    with pytest.raises(TraceWriteError, match="No space left on device; it keeps its 2 whole rows"):
        with Recorder(optimizer, path, on_write_error="raise") as recorder:
            _training(2, recorder, (weight, optimizer))
            _Failing(monkeypatch, after=0)
            _training(1, recorder, (weight, optimizer))
    assert int(optimizer.state[weight]["step"]) == 3  # the update was applied before the row failed
    monkeypatch.undo()
    assert load_trace(path)["update"].tolist() == [1, 2]


def test_the_recorder_refuses_what_the_cli_refuses(tmp_path):
    from tracer import Recorder

    weight, optimizer = _training(0)
    for make, message in [(m, e) for _, m, e in BAD_OUTPUTS[:3]]:
        path = make(tmp_path, ".csv")
        with pytest.raises(TracerError, match=message):
            Recorder(optimizer, path, if_exists="overwrite").start()
    assert (tmp_path / "target.txt").read_text() == "someone else's file\n"


@pytest.mark.parametrize("failure", ["full disk", "folder removed"])
def test_tracer_trace_reports_a_write_failure_in_one_line(tmp_path, monkeypatch, capsys, failure):
    from tracer.cli import main

    folder = tmp_path / "logs"
    folder.mkdir()
    out = folder / "run.trace.csv"
    if failure == "full disk":
        _Failing(monkeypatch, after=20_000)
    else:
        real_write = os.write

        def remove_folder_at_the_20th_row(fd, data):
            remove_folder_at_the_20th_row.rows += 1
            if remove_folder_at_the_20th_row.rows == 20:
                for child in folder.iterdir():
                    child.unlink()
                folder.rmdir()
            return real_write(fd, data)

        remove_folder_at_the_20th_row.rows = 0
        monkeypatch.setattr(os, "write", remove_folder_at_the_20th_row)
    status = main(["trace", "--optimizer", "adam", "--epochs", "200", "--out", str(out), "--quiet"])
    monkeypatch.undo()
    said = capsys.readouterr().err
    assert status == 2 and said.count("\n") == 1 and said.startswith("tracer: error: recording stopped at update ")
    if failure == "full disk":
        assert "No space left on device; it keeps its" in said and f"the rows recorded are in '{out}'" in said
        trace = load_trace(out)
        assert trace.status == "incomplete" and len(trace) > 10  # the disk stayed full: no room for the trailer
        assert trace["update"].tolist() == list(range(1, len(trace) + 1))
    else:
        assert "was removed (or its folder) while it was written" in said and not folder.exists()


# ------------------------------------------------------------ what a trace says, shown


# (what, the hostile text): each would drive a terminal or forge a line if printed raw.
HOSTILE_TEXTS = [
    ("clear screen", "run\x1b[2J"),
    ("window title", "run\x1b]0;pwned\x07"),
    ("forged line", "run\n  run          1280 updates, complete"),
    ("carriage return", "run\roverwritten"),
    ("bidi override", "run\u202ereversed"),
    ("C1 control", "run\x9b2J"),
]
_RAW = ("\x1b", "\x07", "\r", "\u202e", "\x9b")


def _cli(capsys, *argv) -> str:
    from tracer.cli import main

    main(list(argv))
    said = capsys.readouterr()
    return said.out + said.err


@pytest.mark.parametrize("text", [t for _, t in HOSTILE_TEXTS], ids=[d for d, _ in HOSTILE_TEXTS])
def test_info_and_diff_show_a_traces_text_escaped_and_json_exact(tmp_path, capsys, text):
    columns = ["update", "loss", "Wa.theta", "x" + text.replace(chr(10), '').replace(',', '')]
    a = write_trace(tmp_path / "a.trace.csv", {"label": text, "seed": 1, f"key{text}": text}, columns,
                    [{"update": 1, "loss": 1.0}])
    b = write_trace(tmp_path / "b.trace.csv", {"label": "b", "seed": 2}, columns[:3], [{"update": 1, "loss": 2.0}])
    for argv in (["info", str(a)], ["diff", str(a), str(b)], ["diff", str(a), str(b), "--columns", "nothing"]):
        shown = _cli(capsys, *argv)
        assert not any(c in shown for c in _RAW), argv
        assert not any(line.startswith("  run          1280") for line in shown.splitlines()), argv
    info = _cli(capsys, "info", str(a))
    assert f"label        {text.encode('unicode_escape').decode()}" in info or "\\x" in info
    assert json.loads(_cli(capsys, "info", "--json", str(a)))["label"] == text  # exact


def test_an_error_message_quoting_a_traces_text_stays_one_line(tmp_path, capsys):
    """The CLI prints every TracerError escaped: a message that lists a file's column names cannot break out."""
    from tracer.cli import main

    path = write_trace(tmp_path / "a.trace.csv", {}, ["update", "x\x1b[2J\x1b]0;t\x07"], [{"update": 1}])
    trace = load_trace(path)
    with pytest.raises(TraceFormatError) as error:
        trace["missing"]
    assert "\x1b" in str(error.value)  # the message holds the raw name; the CLI shows it escaped:
    hostile = tmp_path / "a\x1b[2J\x1b]0;t\x07.trace.csv"
    hostile.write_bytes(path.read_bytes().replace(b"update,", b"update,update,"))  # an invalid header
    status = main(["info", str(hostile)])
    said = capsys.readouterr().err
    assert status == 2 and said.count("\n") == 1 and not any(c in said for c in _RAW)


# ------------------------------------------------------------------ the renderer

ORBIT_TRACE = os.path.join(os.path.dirname(__file__), "..", "logs", "adam-lr0.01.trace.csv")


def _orbit_variant(tmp_path, label=None, final=None):
    lines = open(ORBIT_TRACE).read().split("\n")
    meta = json.loads(lines[0])
    if label is not None:
        meta["label"] = label
    body = lines[1:]
    if final is not None:
        body = [line for line in body if not line.startswith("#end")][:-1]
        body += ["#end " + json.dumps({"status": "complete", "updates": len(body) - 1, "final": final}), ""]
    path = tmp_path / "orbit.trace.csv"
    path.write_text("\n".join([json.dumps(meta), *body]))
    return path


# (what, the trace's label or final values, extra options, None when drawn else the one-line error)
RENDER_CASES = [
    ("invalid mathtext in a label, drawn literally", dict(label=r"$\foo{$"), ["step-size"], None),
    ("valid mathtext in a label, drawn literally", dict(label=r"$\eta$ = 0.01"), ["step-size"], None),
    ("invalid mathtext in --title", {}, ["step-size", "--title", r"$\foo{$"],
     r"'\$\\\\foo\{\$' is not valid mathtext \(.*\); write \\\$ for a literal dollar sign"),
    ("invalid mathtext in --labels", {}, ["step-size", "--labels", r"$\foo{$"], r"is not valid mathtext"),
    ("a fit 2.5e292 AU away", dict(final={"Wa": 1.0, "Wb": -2.5e292}), ["fit"],
     r"fit Wa=1, Wb=-2.5e\+292 is beyond 1e\+06 AU, too far from the orbits to draw"),
    ("a fit far but drawable", dict(final={"Wa": 1.0, "Wb": -9e5}), ["fit"], None),
]


@pytest.mark.parametrize("trace, options, error", [(t, o, e) for _, t, o, e in RENDER_CASES],
                         ids=[d for d, _, _, _ in RENDER_CASES])
def test_render_draws_or_refuses_in_one_line(tmp_path, capsys, trace, options, error):
    from tracer.cli import main

    path = _orbit_variant(tmp_path, **trace)
    out = tmp_path / "figure.png"
    kind, *rest = options
    status = main(["render", kind, str(path), "-o", str(out), *rest])
    said = capsys.readouterr().err
    if error is None:
        assert status == 0 and out.stat().st_size > 10_000, said
    else:
        assert status == 2 and said.count("\n") == 1 and not out.exists(), said
        assert re.search(error, said), said

