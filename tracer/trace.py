"""The trace file: one run of an optimizer, one row per update.

Schema version 1 (docs/ARCHITECTURE.md is the contract)::

    {"format": "tracer-trace", "schema_version": 1, ...}    line 1: JSON metadata
    update,epoch,batch,lr,loss,Wa.theta,...,displacement    line 2: CSV header
    1,0,0,0.01,0.1234,0.1,...                               one row per update
    #end {"status": "complete", "updates": 1280, "final": {...}}

Floats are written with ``repr(float(x))``, the shortest text that reads back
to the identical float64; an empty cell is a value that does not apply (``v``
for plain SGD). Rows are appended and flushed one at a time, so a run killed
half way leaves a readable file whose status reads back as ``incomplete``.

This module never imports torch: the renderer and ``tracer diff`` read traces
written on another machine without it. Reading never evaluates anything from
the file (JSON and ``float`` only).
"""

from __future__ import annotations

import errno
import json
import os
import pathlib
import stat
import warnings
from typing import Any, Callable, Iterable, Mapping, NamedTuple, Sequence

import numpy as np

from tracer.errors import TraceFormatError, TracerError, TraceWriteError
from tracer.summaries import SUMMARY_QUANTITIES

FORMAT_NAME = "tracer-trace"
SCHEMA_VERSION = 1
TRAILER_PREFIX = "#end "
STATUSES = ("complete", "diverged", "interrupted")
"""Statuses a trailer may hold; a file without a trailer reads as ``incomplete``."""
IF_EXISTS = ("error", "append", "overwrite")
"""What a TraceWriter does with a file already at its path: refuse it, continue it, or replace it."""
MAX_DEPTH = 64
"""The deepest nesting of JSON objects and lists a trace's metadata or trailer may hold (the recorder writes 4)."""

# Every metadata key of schema version 1, in the order they are written.
META_KEYS = (
    "format",
    "schema_version",
    "label",
    "problem",
    "optimizer",
    "scheduler",
    "scheduler_every",
    "epochs",
    "batch_size",
    "seed",
    "parameters",
    "granularity",
    "coordinates",
    "summarized",
    "param_groups",
    "versions",
)

Cell = float | int | None

# The column contract. A fully traced coordinate ``c`` (a parameter name, or
# ``name[i]`` for coordinate i of a tensor flattened in row-major order) has
# the columns ``c.theta`` ... ``c.u``; a summarised parameter tensor ``p`` has
# ``p.theta_norm`` ... ``p.cos_g_d``, the quantities tracer.summaries declares
# (SUMMARY_QUANTITIES). docs/ARCHITECTURE.md defines each quantity.
FULL_QUANTITIES = ("theta", "g", "v", "s", "d", "u")
GRANULARITIES = ("full", "summary")
"""How a Recorder traces its parameters (``Recorder(granularity=...)``, ``tracer trace --granularity``);
a trace's ``granularity`` is one of these, or "mixed" where ``full=`` picks some coordinates of a summarised run."""
LEADING_COLUMNS = ("update", "epoch", "batch")
"""The columns before the learning rates; ``loss`` follows them."""
TRAILING_COLUMNS = ("step_size", "displacement")


def lr_column_names(groups: int) -> list[str]:
    """The learning-rate columns of a trace of ``groups`` parameter groups: ``lr``, or ``lr[0]``, ``lr[1]``, ..."""
    return ["lr"] if groups == 1 else [f"lr[{i}]" for i in range(groups)]


def parameter_columns(coordinates: Sequence[str], summarized_name: str | None) -> list[str]:
    """The columns of one parameter tensor: its fully traced coordinates, then its summary if summarised."""
    columns = [f"{c}.{q}" for c in coordinates for q in FULL_QUANTITIES]
    if summarized_name is not None:
        columns += [f"{summarized_name}.{q}" for q in SUMMARY_QUANTITIES]
    return columns


def row_columns(groups: int, per_parameter: Iterable[str], state: Iterable[str] = ()) -> list[str]:
    """A trace's columns: update, epoch, batch, the lr columns, loss, the parameters' columns, the state
    columns (``tracer.recording.state``), step_size, displacement. ``TraceRow.cells`` lays out a row alike."""
    return [*LEADING_COLUMNS, *lr_column_names(groups), "loss", *per_parameter, *state, *TRAILING_COLUMNS]


class TraceRow(NamedTuple):
    """One update's row by part, in the order of ``row_columns``.

    ``parameters`` holds every traced parameter tensor's cells in the order
    of its columns (``parameter_columns``: each fully traced coordinate's
    theta, g, v, s, d, u, then the tensor's summary); ``state`` the state
    columns' cells. None is an empty cell. (A NamedTuple, immutable as a frozen
    dataclass, is made three times faster: one is made per recorded update.)
    """

    update: int
    epoch: int | None
    batch: int | None
    lrs: Sequence[float | None]
    """One per parameter group; None where a group has no usable lr."""
    loss: float | None
    parameters: Sequence[Cell]
    state: Sequence[Cell]
    step_size: float
    """|lr * d| over every traced parameter (with several groups, each group's lr times its d)."""
    displacement: float
    """|theta_next - theta| over every traced parameter."""

    def cells(self) -> list[Cell]:
        """The row in column order."""
        return [self.update, self.epoch, self.batch, *self.lrs, self.loss, *self.parameters, *self.state,
                self.step_size, self.displacement]


def trace_lr_columns(columns: Sequence[str]) -> list[str]:
    """The learning-rate columns a trace holds (``lr`` or ``lr[i]``), in file order."""
    return [c for c in columns if c == "lr" or c.startswith("lr[")]


def traced_coordinates(columns: Sequence[str]) -> list[str]:
    """The fully traced coordinates of a trace, in file order (the names before ``.theta``)."""
    suffix = "." + FULL_QUANTITIES[0]
    return [c[: -len(suffix)] for c in columns if c.endswith(suffix)]


def summarized_tensors(columns: Sequence[str]) -> list[str]:
    """The summarised parameter tensors of a trace, in file order (the names before ``.theta_norm``)."""
    suffix = "." + SUMMARY_QUANTITIES[0]
    return [c[: -len(suffix)] for c in columns if c.endswith(suffix)]


def format_cell(value: Cell) -> str:
    """Text of one cell: ints as ints, floats as their repr, None as empty."""
    if type(value) is float:  # the common case first: one row holds mostly floats
        return repr(value)
    if value is None:
        return ""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return repr(float(value))


def printable(text: str) -> str:
    """``text`` with every control and invisible format character escaped (``\\x1b``, ``\\n``, ``\\u202e``).

    What a trace carries (labels, metadata keys, column names) is shown on a
    terminal with this, so a file can never clear the screen, retitle the
    window or forge a line of the report.
    """
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def complete_meta(meta: Mapping[str, Any]) -> dict[str, Any]:
    """The metadata with every schema key present (null when unknown), schema keys first."""
    full: dict[str, Any] = {key: None for key in META_KEYS}
    full.update(meta)
    full["format"] = FORMAT_NAME
    full["schema_version"] = SCHEMA_VERSION
    return full


class CsvRows:
    """How a TraceWriter turns the header, each row and the trailer into bytes of the CSV form."""

    def header(self, meta_line: str, columns: Sequence[str]) -> bytes:
        return (meta_line + "\n" + ",".join(columns) + "\n").encode("utf-8")

    def row(self, cells: Sequence[Cell]) -> bytes:
        # format_cell's float case inline: a row is mostly floats, and this runs once per recorded update.
        text = ",".join([repr(cell) if type(cell) is float else format_cell(cell) for cell in cells])
        return (text + "\n").encode("utf-8")

    def trailer(self, trailer_json: str) -> bytes:
        return (TRAILER_PREFIX + trailer_json + "\n").encode("utf-8")


def row_format(path: pathlib.Path) -> Any:
    """The form a trace at ``path`` is written in: binary for a ``.bin`` suffix (tracer.trace_binary), else CSV."""
    from tracer import trace_binary  # imported here: it imports this module

    return trace_binary.BinaryRows() if path.suffix == trace_binary.SUFFIX else CsvRows()


class TraceWriter:
    """Write a trace file row by row; a context manager.

    The metadata line and the header are written on creation; each
    ``write_row`` appends one row with one ``write`` call. A path ending in ``.bin``
    gets the binary form (``tracer.trace_binary``), any other the CSV form. ``close`` writes the
    trailer. Leaving the ``with`` block through an exception closes the file
    with status ``interrupted``.

    One writer per file: the file is created with ``O_EXCL`` (``if_exists="error"``)
    and held under an exclusive lock (``flock``) while it is written, so a
    second writer on the same path is refused in every mode. The path itself
    is written, never a symbolic link's target, and its folder must exist. A
    start that fails leaves nothing behind; a row that cannot be written
    (a full disk, the file or its folder removed) raises TraceWriteError
    after cutting the file back to its last whole row, and ``close`` then
    writes the trailer ``interrupted`` with the ``reason``.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        meta: Mapping[str, Any],
        columns: Sequence[str],
        *,
        if_exists: str = "error",
        accept: Callable[["Trace"], None] | None = None,
    ) -> None:
        """``if_exists``: "error" refuses an existing file, "overwrite" replaces it, "append" continues it
        (its rows are kept, new rows follow them). ``accept`` is called with the trace being continued, before
        anything in it changes, to refuse it (by raising) when it is not the caller's run; once it returns,
        the trace's columns go on. ``resumed`` is that trace (None for a new file)."""
        if if_exists not in IF_EXISTS:
            raise TracerError(f"invalid if_exists {if_exists!r}; accepted: {', '.join(IF_EXISTS)}")
        self.path = pathlib.Path(path)
        self.columns = _checked_columns(columns)
        self._index = {name: i for i, name in enumerate(self.columns)}
        self.meta = complete_meta(meta)
        meta_line = _meta_line(self.meta)
        self.closed = False
        self.failed: str | None = None
        """Why a row or the trailer could not be written (the file keeps its whole rows); None while all is well."""
        self.resumed: Trace | None = None
        self.updates = 0
        self._rows = row_format(self.path)
        self._fd, created = _open_exclusively(self.path, if_exists)
        try:
            size = os.fstat(self._fd).st_size
            if if_exists == "append" and size:
                self._end = self._continue(accept)
                self.updates = len(self.resumed)
                return
            header = self._rows.header(meta_line, self.columns)
            try:
                os.ftruncate(self._fd, 0)
                self._write_all(header)
            except OSError as error:
                if created or if_exists == "overwrite":  # ours alone (we hold the lock): nothing half-written stays
                    os.unlink(self.path)
                raise TraceWriteError(
                    f"cannot start the trace {self.path}: {error.strerror or error}; nothing was written"
                ) from None
            self._end = len(header)
        except BaseException:
            os.close(self._fd)
            raise

    def _continue(self, accept: Callable[["Trace"], None] | None) -> int:
        """Check the file is a trace of these columns ending in whole rows (or its trailer); cut the trailer.

        Returns the offset after its last whole row, where the new rows go.
        """
        from tracer import trace_binary  # imported here: it imports this module

        raw = _read_all(self._fd)
        binary = trace_binary.is_binary(raw)
        if binary != isinstance(self._rows, trace_binary.BinaryRows):
            found, wanted = ("binary", "CSV") if binary else ("CSV", "binary")
            raise TracerError(
                f"cannot append to {self.path}: it holds a {found} trace, and a path "
                f"{'ending' if wanted == 'binary' else 'not ending'} in {trace_binary.SUFFIX} is written in the "
                f"{wanted} form; pass if_exists='overwrite' or a path of its own form"
            )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a bad tail is refused below, in words of its own
            trace, rows_end, tail = _parse(self.path, raw)
        if tail is not None:
            raise TraceFormatError(
                f"cannot append to {self.path}: {tail} after its {len(trace)} whole rows, not a whole row or "
                f"a trailer of its form (a write cut short); to continue from those rows, cut the file to "
                f"{rows_end} bytes (truncate -s {rows_end} FILE)"
            )
        if accept is not None:
            accept(trace)  # it checked the columns: the trace's own go on (the recorder's state columns among them)
            self.columns = list(trace.columns)
            self._index = {name: i for i, name in enumerate(self.columns)}
        if trace.columns != self.columns:
            raise TracerError(
                f"cannot append to {self.path}: its {len(trace.columns)} columns differ from this run's "
                f"{len(self.columns)}; pass if_exists='overwrite' or another path"
            )
        self.resumed = trace
        try:
            os.ftruncate(self._fd, rows_end)  # the trailer goes: the run goes on
            os.lseek(self._fd, rows_end, os.SEEK_SET)
        except OSError as error:
            raise TraceWriteError(f"cannot append to {self.path}: {error.strerror or error}") from None
        return rows_end

    def restart(self, meta: Mapping[str, Any], columns: Sequence[str]) -> None:
        """Rewrite the file with new metadata and columns, before its first row (the recorder's state columns,
        known once the optimizer has state); the file stays open and locked."""
        assert self.updates == 0 and not self.closed and self.resumed is None, "restart only a new trace without rows"
        self.columns = _checked_columns(columns)
        self._index = {name: i for i, name in enumerate(self.columns)}
        self.meta = complete_meta(meta)
        header = self._rows.header(_meta_line(self.meta), self.columns)
        try:
            os.ftruncate(self._fd, 0)
            os.lseek(self._fd, 0, os.SEEK_SET)
            self._write_all(header)
        except OSError as error:
            self._end = 0
            raise TraceWriteError(self._fail(error)) from None
        self._end = len(header)

    def write_row(self, values: TraceRow | Mapping[str, Cell]) -> None:
        """Append one row: a TraceRow, or cells by column name (columns missing from ``values`` are empty cells)."""
        if isinstance(values, TraceRow):
            self.write_cells(values.cells())
            return
        unknown = [key for key in values if key not in self._index]
        if unknown:
            raise TracerError(f"unknown trace columns {unknown!r}; the trace has {self.columns!r}")
        cells = [None] * len(self.columns)
        for key, value in values.items():
            cells[self._index[key]] = value
        self.write_cells(cells)

    def write_cells(self, cells: Sequence[Cell]) -> None:
        """Append one row given in column order (the recorder's fast path).

        Raises TraceWriteError when the row cannot be written; the file then
        ends at its last whole row, and every later row is refused the same way.
        """
        if len(cells) != len(self.columns):
            raise TracerError(f"a trace row needs {len(self.columns)} cells, got {len(cells)}")
        if self.failed is not None:
            raise TraceWriteError(self.failed)
        data = self._rows.row(cells)
        try:
            # A removed file (or folder) takes writes without a word: its link count says it is gone.
            if os.fstat(self._fd).st_nlink == 0:
                raise TraceWriteError(self._fail(None))
            self._write_all(data)
        except OSError as error:
            raise TraceWriteError(self._fail(error)) from None
        self._end += len(data)
        self.updates += 1

    def _write_all(self, data: bytes) -> None:
        written = os.write(self._fd, data)  # the whole row, but for a signal or a nearly full disk
        if written == len(data):
            return
        view = memoryview(data)[written:]
        while view:
            view = view[os.write(self._fd, view):]

    def _fail(self, error: OSError | None) -> str:
        """Note why writing stopped and cut any partial row: the file keeps its whole rows."""
        if error is None:
            self.failed = (f"the trace file {self.path} was removed (or its folder) while it was written; "
                           f"updates after {self.updates} were not recorded")
            return self.failed
        try:
            os.ftruncate(self._fd, self._end)
            os.lseek(self._fd, self._end, os.SEEK_SET)  # the trailer follows the last whole row
        except OSError:
            pass  # a partial row is dropped by the readers, with a warning
        self.failed = (f"cannot write to the trace {self.path}: {error.strerror or error}; "
                       f"it keeps its {self.updates} whole rows")
        return self.failed

    def close(
        self,
        status: str = "complete",
        *,
        final: Mapping[str, float] | None = None,
        diverged_at: int | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        """Write the trailer and close the file; a second call does nothing.

        ``extra``: more trailer keys (the recorder's ``reason`` for an
        interrupted trace, its ``d_switched`` parameters), read back in ``Trace.trailer``.
        After a failed write the status is ``interrupted`` and the trailer's
        ``reason`` says why; the trailer is then written where it can be, and
        nothing is raised again. A trailer that cannot be written raises
        TraceWriteError, the file ending at its last whole row (status ``incomplete``).
        """
        if self.closed:
            return
        if status not in STATUSES:
            raise TracerError(f"invalid trace status {status!r}; accepted: {', '.join(STATUSES)}")
        self.closed = True
        failed_before = self.failed
        trailer: dict[str, Any] = {
            "status": "interrupted" if failed_before else status,
            "updates": self.updates,
            "final": None if final is None else {k: float(v) for k, v in final.items()},
            "diverged_at": diverged_at,
            **(extra or {}),
        }
        if failed_before:
            trailer["reason"] = failed_before
        try:
            if os.fstat(self._fd).st_nlink:
                self._write_all(self._rows.trailer(json.dumps(trailer)))
            elif failed_before is None:
                self._fail(None)
        except OSError as error:
            self._fail(error)
        finally:
            os.close(self._fd)
        if failed_before is None and self.failed is not None:
            raise TraceWriteError(self.failed)

    def __enter__(self) -> "TraceWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None:
            self.close("complete")
        else:
            try:
                self.close("interrupted")
            except TraceWriteError:
                pass  # the exception under way is the one to see
        return False


def _checked_columns(columns: Sequence[str]) -> list[str]:
    columns = list(columns)
    if len(set(columns)) != len(columns):
        duplicates = sorted({c for c in columns if columns.count(c) > 1})
        raise TracerError(f"duplicate trace columns: {duplicates}; every column name must be unique")
    bad = [c for c in columns if not c or "," in c or "\n" in c or '"' in c]
    if bad:
        raise TracerError(f"invalid trace column names {bad!r}: names may not be empty or hold ',', '\"' or newlines")
    return columns


def _meta_line(meta: Mapping[str, Any]) -> str:
    try:
        return json.dumps(meta, allow_nan=True)
    except TypeError as error:
        raise TracerError(f"trace metadata is not JSON-serialisable: {error}") from None


def _open_exclusively(path: pathlib.Path, if_exists: str) -> tuple[int, bool]:
    """A descriptor of ``path`` open for writing and locked against other writers, and whether it was created.

    Refuses in one line: a missing folder, a symbolic link, anything but a
    regular file, an existing file under "error", a file another writer holds.
    """
    where = f"cannot write the trace to {str(path)!r}"
    parent = path.parent
    if not parent.is_dir():
        what = "is not a directory" if parent.exists() else "does not exist"
        raise TracerError(f"{where}: directory {str(parent)!r} {what} (it is not created; make it first)")
    exists = (f"trace file {path} already exists; pass if_exists='append' to continue it "
              f"or if_exists='overwrite' to replace it")
    link = f"{where}: it is a symbolic link; a trace is written to the path itself, never through a link"
    try:
        found = os.lstat(path)
    except FileNotFoundError:
        found = None
    except OSError as error:
        raise TracerError(f"{where}: {error.strerror or error}") from None
    if found is not None:
        if stat.S_ISLNK(found.st_mode):
            raise TracerError(link)
        if not stat.S_ISREG(found.st_mode):
            raise TracerError(f"{where}: it is not a regular file ({_kind(found.st_mode)})")
        if if_exists == "error":
            raise TracerError(exists)
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    if if_exists == "error" or found is None:
        flags |= os.O_EXCL  # created here or refused: never a file another run made a moment ago
    try:
        fd = os.open(path, flags, 0o666)
    except FileExistsError:
        if if_exists == "error":
            raise TracerError(exists) from None
        raise TracerError(f"{where}: another run created it a moment ago; two writers on one trace would mix "
                          "their rows") from None
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise TracerError(link) from None
        raise TracerError(f"{where}: {error.strerror or error}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise TracerError(f"{where}: it is not a regular file")
        _lock(fd, path)
    except BaseException:
        os.close(fd)
        raise
    return fd, found is None


def _lock(fd: int, path: pathlib.Path) -> None:
    """Hold an exclusive lock on the open file until it is closed; TracerError when another writer holds it."""
    try:
        import fcntl
    except ImportError:  # no flock (Windows): O_EXCL alone keeps "error" exclusive
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise TracerError(
            f"trace file {path} is being written by another run (it holds the file's lock); two writers on "
            "one trace would mix their rows: pass another path, or wait for that run to end"
        ) from None
    except OSError:
        pass  # a file system without locks: O_EXCL still keeps "error" exclusive


def _kind(mode: int) -> str:
    kinds = [(stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a pipe"), (stat.S_ISCHR, "a character device"),
             (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")]
    return next((name for test, name in kinds if test(mode)), "not a file")


def _read_all(fd: int) -> bytes:
    os.lseek(fd, 0, os.SEEK_SET)
    chunks = []
    while chunk := os.read(fd, 1 << 24):
        chunks.append(chunk)
    return b"".join(chunks)


class Trace:
    """A trace file read back: metadata, columns, and one float64 array per column.

    ``trace["Wa.theta"]`` is the column over updates (NaN for empty cells);
    ``len(trace)`` the number of rows; ``status`` is ``complete``,
    ``diverged``, ``interrupted`` or ``incomplete`` (no trailer).
    """

    def __init__(
        self,
        path: pathlib.Path,
        meta: dict[str, Any],
        columns: list[str],
        data: np.ndarray,
        trailer: dict[str, Any] | None,
    ) -> None:
        self.path = path
        self.meta = meta
        self.columns = columns
        self._data = data  # shape (columns, rows): one contiguous array per column
        self._index = {name: i for i, name in enumerate(columns)}
        self.trailer = trailer
        self.status: str = "incomplete" if trailer is None else trailer["status"]
        self.final: dict[str, float] | None = None if trailer is None else trailer.get("final")
        self.diverged_at: int | None = None if trailer is None else trailer.get("diverged_at")

    def __getitem__(self, column: str) -> np.ndarray:
        try:
            index = self._index[column]
        except (KeyError, TypeError):
            shown = ", ".join(self.columns[:12]) + (", ..." if len(self.columns) > 12 else "")
            raise TraceFormatError(
                f"{self.path}: no column {column!r} in this trace; it has {len(self.columns)} columns: {shown}"
            ) from None
        return self._data[index].copy()

    def __contains__(self, column: object) -> bool:
        return column in self._index

    def take(self, rows: np.ndarray) -> "Trace":
        """The same trace holding only the given rows (indices, in order); metadata and trailer as they are."""
        return Trace(self.path, self.meta, self.columns, self._data[:, rows], self.trailer)

    def __len__(self) -> int:
        return self._data.shape[1]

    def __repr__(self) -> str:
        return f"Trace({str(self.path)!r}, updates={len(self)}, status={self.status!r})"

    def _repr_html_(self) -> str:
        """A notebook's view of the trace: a short summary table (what `tracer info` says first)."""
        from tracer.explorer import trace_summary_html  # imported here: it imports this module

        return trace_summary_html(self)


def _fail(path: pathlib.Path, line: int | None, what: str) -> TraceFormatError:
    where = f"{path}" if line is None else f"{path}, line {line}"
    return TraceFormatError(f"{where}: {what}")


def read_json(text: str | bytes) -> Any:
    """The JSON value of ``text``; ValueError when it is not JSON or nests deeper than MAX_DEPTH.

    A file may hold a value nested 200,000 deep; refused here, no later
    reader (a schema check, ``tracer diff``'s walk) recurses into it.
    """
    try:
        value = json.loads(text)
    except RecursionError:
        raise ValueError(f"nested deeper than {MAX_DEPTH} levels") from None
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        if depth > MAX_DEPTH:
            raise ValueError(f"nested deeper than {MAX_DEPTH} levels")
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return value


def _parse_meta(path: pathlib.Path, first: str) -> dict[str, Any]:
    try:
        meta = read_json(first)
    except ValueError as error:
        if "nested deeper" in str(error):
            raise _fail(path, 1, f"invalid metadata: {error}") from None
        meta = None
    if not isinstance(meta, dict):
        raise _fail(path, 1, f"not a trace file: the first line must be the JSON metadata object, got {first[:40]!r}")
    return _check_meta(path, 1, meta)


def _check_meta(path: pathlib.Path, line: int | None, meta: dict[str, Any]) -> dict[str, Any]:
    if meta.get("format") != FORMAT_NAME:
        raise _fail(path, line, f"not a trace file: metadata 'format' is {meta.get('format')!r}, expected {FORMAT_NAME!r}")
    version = meta.get("schema_version")
    if version != SCHEMA_VERSION:
        raise _fail(path, line, f"unknown schema_version {version!r}; this tracer reads version {SCHEMA_VERSION}")
    problem = meta_schema_problem(meta)
    if problem is not None:
        raise _fail(path, line, f"invalid metadata: {problem}")
    return meta


# ----------------------------------------------------------- metadata schema
# What each schema-1 key holds when it is not null (null: not known). The
# readers (info, render, diff) index into these values, so a first line that is
# JSON of the wrong shape is refused here, naming the field, rather than
# failing later as a TypeError deep in a figure.


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_names(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def _is_parameters(value: Any) -> bool:
    return isinstance(value, list) and all(
        isinstance(item, dict) and isinstance(item.get("name"), str)
        and (item.get("shape") is None or (isinstance(item["shape"], list) and all(_is_int(n) and n >= 0 for n in item["shape"])))
        for item in value
    )


def _is_optimizer(value: Any) -> bool:
    if not isinstance(value, dict):
        return False
    hyper = value.get("hyperparameters")
    return (all(value.get(key) is None or isinstance(value[key], str) for key in ("name", "class", "impl"))
            and (hyper is None or isinstance(hyper, dict)
                 or (isinstance(hyper, list) and all(isinstance(group, dict) for group in hyper))))


_META_SCHEMA: dict[str, tuple[Any, str]] = {
    # key: (check of a non-null value, what is accepted)
    "label": (lambda v: isinstance(v, str), "a string"),
    "problem": (lambda v: isinstance(v, dict) and isinstance(v.get("name"), str),
                'an object with a "name" string'),
    "optimizer": (_is_optimizer, 'an object with "name" and "class" strings and a "hyperparameters" object'),
    "scheduler": (lambda v: isinstance(v, str), "a scheduler spec string"),
    "scheduler_every": (lambda v: v in ("update", "epoch"), '"update" or "epoch"'),
    "epochs": (lambda v: _is_int(v) and v >= 0, "an integer >= 0"),
    "batch_size": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "seed": (_is_int, "an integer"),
    "parameters": (_is_parameters, 'a list of {"name": string, "shape": [integers]} objects'),
    "granularity": (lambda v: v in ("full", "summary", "mixed"), '"full", "summary" or "mixed"'),
    "coordinates": (_is_names, "a list of coordinate names (strings)"),
    "summarized": (_is_names, "a list of parameter names (strings)"),
    "param_groups": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "summary_pass": (lambda v: v in ("native", "compiled", "eager"), '"native", "compiled" or "eager"'),
    "versions": (lambda v: isinstance(v, dict) and all(isinstance(x, str) for x in v.values()),
                 "an object of version strings"),
}


def meta_schema_problem(meta: Mapping[str, Any]) -> str | None:
    """What is wrong with the metadata's schema-1 fields (the first, as one line), or None.

    Keys outside the schema are the caller's own (``Recorder(meta=...)``) and are not checked.
    """
    for key, (check, accepted) in _META_SCHEMA.items():
        value = meta.get(key)
        if value is not None and not check(value):
            shown = json.dumps(value, allow_nan=True)
            shown = shown if len(shown) <= 60 else shown[:57] + "..."
            return f"field {key!r} must be {accepted}, got {shown}"
    return None


def _parse_trailer(path: pathlib.Path, line_number: int | None, line: str) -> dict[str, Any]:
    try:
        trailer = read_json(line[len(TRAILER_PREFIX):])
    except ValueError as error:
        if "nested deeper" in str(error):
            raise _fail(path, line_number, f"invalid trailer: {error}") from None
        trailer = None
    if not isinstance(trailer, dict) or trailer.get("status") not in STATUSES:
        raise _fail(path, line_number, f"invalid trailer {line[:60]!r}; expected '#end {{\"status\": ...}}'")
    final = trailer.get("final")
    if final is not None and not (
        isinstance(final, dict) and all(isinstance(v, (int, float)) for v in final.values())
    ):
        raise _fail(path, line_number, "invalid trailer: 'final' must map coordinate names to numbers")
    diverged_at = trailer.get("diverged_at")
    if diverged_at is not None and (not isinstance(diverged_at, int) or isinstance(diverged_at, bool)):
        raise _fail(path, line_number, f"invalid trailer: 'diverged_at' must be an update number, got {diverged_at!r}")
    return trailer


def _complete_json(text: str) -> bool:
    """The text is one whole JSON value (a trailer cut mid-write is not)."""
    try:
        json.loads(text)
    except (ValueError, RecursionError):
        return False
    return True


def _parse_rows(path: pathlib.Path, rows: list[str], first_line: int, width: int) -> np.ndarray:
    """The rows as a (columns, rows) float64 array; empty cells become NaN."""
    commas = width - 1
    for offset, row in enumerate(rows):
        if row.count(",") != commas:
            raise _fail(path, first_line + offset, f"a row with {row.count(',') + 1} cells; the header has {width} columns")
    if not rows:
        return np.empty((width, 0), dtype=np.float64)
    # Empty cells become "nan" by text replacement (twice: ",,," holds two),
    # then numpy parses every cell in C: np.fromstring reads the text with
    # Python's correctly rounded strtod (repr text back to the identical
    # float64) and stops at the first cell that is not a number; the str ->
    # float64 cast of the split cells (as float() does, and slower) then
    # decides whether the file is bad.
    text = ("," + ",".join(rows) + ",").replace(",,", ",nan,").replace(",,", ",nan,")[1:-1]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # older numpy warns where newer raises
            values = np.fromstring(text, dtype=np.float64, sep=",")
    except ValueError:  # "could not be read to its end": a cell that is not a number
        values = None
    if values is not None and values.size == len(rows) * width:
        return values.reshape(len(rows), width).T.copy()
    try:
        values = np.array(text.split(","), dtype=np.float64)
    except ValueError:
        for offset, row in enumerate(rows):
            for column, cell in enumerate(row.split(",")):
                try:
                    float(cell) if cell else None
                except ValueError:
                    raise _fail(
                        path, first_line + offset, f"cell {column + 1} is not a number: {cell[:40]!r}"
                    ) from None
        raise  # pragma: no cover - the loop above always finds the bad cell
    return values.reshape(len(rows), width).T.copy()


def load_trace(path: str | os.PathLike) -> Trace:
    """Read a trace file, CSV or binary (recognised by its first bytes).

    Args:
        path: the trace file.

    Returns:
        The trace: its metadata, columns (one float64 array each, NaN for an
        empty cell), status and final parameters.

    Raises:
        TraceFormatError: the file cannot be read as a trace; the message names
            the file, the line and what was wrong.

    Examples:
        >>> import pathlib, tempfile
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "run.trace.csv"
        >>> rows = [{"update": 1, "epoch": 0, "batch": 0, "lr": 0.1, "loss": 2.0, "step_size": 0.5},
        ...         {"update": 2, "epoch": 0, "batch": 1, "lr": 0.1, "loss": None, "step_size": 0.25}]
        >>> trace = load_trace(write_trace(path, {"label": "demo"}, list(rows[0]), rows, final={}))
        >>> trace.status, len(trace), trace.meta["label"]
        ('complete', 2, 'demo')
        >>> trace["step_size"], trace["loss"]
        (array([0.5 , 0.25]), array([ 2., nan]))
    """
    path = pathlib.Path(path)
    try:
        found = os.stat(path)
        if not stat.S_ISREG(found.st_mode):  # /dev/zero would be read until memory runs out, a pipe forever
            raise _fail(path, None, f"not a trace file: {_kind(found.st_mode)}, not a regular file")
        raw = path.read_bytes()
    except OSError as error:
        raise TraceFormatError(f"{path}: cannot read trace file: {error.strerror or error}") from None
    return _parse(path, raw)[0]


def _parse(path: pathlib.Path, raw: bytes) -> tuple[Trace, int, str | None]:
    """(the trace, the offset after its last whole row, what follows the rows when it is neither
    nothing nor a trailer: None for a clean end) of a file's bytes, in either form."""
    if not raw:
        raise _fail(path, None, "empty file, not a trace")
    from tracer import trace_binary  # imported here: it imports this module

    if trace_binary.is_binary(raw):
        meta, columns, data, trailer_text, rows_end = trace_binary.parse(path, raw)
        meta = _check_meta(path, None, meta)
        trailer = None if trailer_text is None else _parse_trailer(path, None, TRAILER_PREFIX + trailer_text)
        tail = None if trailer is not None or rows_end == len(raw) else f"{len(raw) - rows_end} bytes"
        return Trace(path, meta, columns, data, trailer), rows_end, tail
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _fail(path, None, "not a trace file: not UTF-8 text") from None
    lines = text.split("\n")
    partial = lines.pop()  # "" when the file ends with a newline, as a writer leaves it
    if not lines:
        raise _fail(path, 1, "no metadata line: the file holds a single unterminated line")
    meta = _parse_meta(path, lines[0])
    if len(lines) < 2:
        raise _fail(path, 2, "no CSV header line after the metadata")
    columns = lines[1].split(",")
    if len(set(columns)) != len(columns) or "" in columns:
        raise _fail(path, 2, "invalid header: column names must be non-empty and unique")

    trailer = None
    body = lines[2:]
    rows_end = len(raw) - len(partial.encode("utf-8"))
    tail = None
    for offset, line in enumerate(body):
        if line.startswith("#"):
            line_number = 3 + offset
            if not line.startswith(TRAILER_PREFIX):
                raise _fail(path, line_number, f"unexpected comment line {line[:40]!r}; only the '#end' trailer is allowed")
            if offset != len(body) - 1 or partial:
                raise _fail(path, line_number, "the '#end' trailer must be the last line")
            trailer = _parse_trailer(path, line_number, line)
            body = body[:offset]
            rows_end -= len(line.encode("utf-8")) + 1
            break
    if partial:
        if partial.startswith(TRAILER_PREFIX) and trailer is None and _complete_json(partial[len(TRAILER_PREFIX):]):
            trailer = _parse_trailer(path, len(lines) + 1, partial)
        elif partial.startswith("#"):
            tail = f"{len(partial.encode('utf-8'))} bytes of a trailer cut mid-write"
            warnings.warn(
                f"{path}, line {len(lines) + 1}: dropped a trailer cut mid-write; the finished rows read as "
                f"status 'incomplete'",
                stacklevel=3,
            )
        else:
            tail = f"an unterminated last line of {len(partial.encode('utf-8'))} bytes"
            warnings.warn(
                f"{path}, line {len(lines) + 1}: dropped an unterminated last line (the run was killed mid-write)",
                stacklevel=3,
            )
    data = _parse_rows(path, body, 3, len(columns))
    return Trace(path, meta, columns, data, trailer), rows_end, tail


def replace_meta(path: str | os.PathLike, meta: Mapping[str, Any]) -> None:
    """Give a closed CSV trace new metadata (its first line), every other byte kept, atomically.

    The new file is written beside the trace and moved over it with one
    ``os.replace``: a crash or a full disk on the way leaves the trace as it
    was, never half rewritten. TracerError for a binary trace (its header
    holds the columns too) or a file that is not a CSV trace.
    """
    from tracer import trace_binary  # imported here: it imports this module

    path = pathlib.Path(path)
    raw = path.read_bytes()
    first, newline, rest = raw.partition(b"\n")
    if trace_binary.is_binary(raw) or not newline or not first.startswith(b"{"):
        raise TracerError(f"cannot replace the metadata of {str(path)!r}: it is not a CSV trace")
    temporary = path.with_name(f".{path.name}.{os.getpid()}.meta")
    try:
        with open(temporary, "xb") as file:
            file.write(_meta_line(meta).encode("utf-8") + b"\n" + rest)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def write_trace(
    path: str | os.PathLike,
    meta: Mapping[str, Any],
    columns: Sequence[str],
    rows: Iterable[Mapping[str, Cell]],
    *,
    status: str = "complete",
    final: Mapping[str, float] | None = None,
    diverged_at: int | None = None,
) -> pathlib.Path:
    """Write a whole trace at once (tests, conversions); returns the path."""
    with TraceWriter(path, meta, columns, if_exists="overwrite") as writer:
        for row in rows:
            writer.write_row(row)
        writer.close(status, final=final, diverged_at=diverged_at)
    return writer.path
