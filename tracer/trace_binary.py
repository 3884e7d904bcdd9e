"""The binary trace file: the same trace as the CSV form, for large runs.

A trace whose path ends in ``.bin`` (``logs/run.trace.bin``) is written in
this form by ``tracer.trace.TraceWriter`` and read back by
``tracer.trace.load_trace`` (which recognises it by its first bytes, whatever
its name), so the renderer, ``tracer info`` and ``tracer diff`` read both
alike. CSV stays the default and the form of the reference traces: it is text
a person can read and git can diff. This form is for long runs of real models
(summary granularity, hundreds of columns, 100k updates), where CSV costs
about 20 bytes per cell and parses at a few million cells per second.

Layout, every number little-endian::

    b"TRACEbin"                      8 bytes: magic
    uint64 H                         length of the header
    H bytes of UTF-8 JSON            {"meta": {...}, "columns": [...], "cell": "<f8"}
    zero bytes to a multiple of 8
    rows                             one float64 per column per update, row after row
    trailer (once closed)            TRAILER_START, JSON padded to 8 bytes, uint64 length, TRAILER_END

A cell is a float64: every value a CSV cell can hold (ints up to 2**53, the
float64 of any float, an empty cell as NaN), so a trace reads back bit for bit
as its CSV twin does. Each row is appended and flushed when it comes, as in the
CSV form: a killed run leaves a readable prefix of whole rows (a partial last
row is dropped with a warning) and reads back as ``incomplete``. The two
trailer marks are NaNs with a payload; the writer stores every NaN as the one
canonical NaN, so a cell can never be taken for a mark.

Why not Parquet: it needs pyarrow (not a dependency of this project), and a
Parquet file is unreadable until its footer is written, so a killed run would
lose everything; appending rows to a file that is readable at every row
boundary keeps the CSV form's promise. Reading it elsewhere takes numpy only::

    header = json.loads(raw[16:16 + H]); rows = np.frombuffer(raw, "<f8", offset=...)

This module never imports torch.
"""

from __future__ import annotations

import json
import pathlib
import struct
import warnings
from typing import Any, Sequence

import numpy as np

from tracer.errors import TraceFormatError
from tracer.trace import read_json

SUFFIX = ".bin"
MAGIC = b"TRACEbin"
CELL = np.dtype("<f8")
# Two NaNs with a payload (bytes "#trl"/"#end" then a quiet-NaN exponent):
# never a cell, because cells are written with the canonical NaN only.
TRAILER_START = b"#trl\x01\x00\xf8\x7f"
TRAILER_END = b"#end\x01\x00\xf8\x7f"
_CANONICAL_NAN = np.float64(np.nan)
_LENGTH = struct.Struct("<Q")


def _padded(data: bytes) -> bytes:
    return data + b"\x00" * (-len(data) % 8)


class BinaryRows:
    """How a TraceWriter turns the header, each row and the trailer into bytes of this form."""

    def header(self, meta_line: str, columns: Sequence[str]) -> bytes:
        body = json.dumps({"meta": json.loads(meta_line), "columns": list(columns), "cell": CELL.str})
        encoded = body.encode("utf-8")
        return _padded(MAGIC + _LENGTH.pack(len(encoded)) + encoded)

    def row(self, cells: Sequence[Any]) -> bytes:
        # None becomes NaN in numpy's float64 conversion; any NaN is stored as the canonical one.
        values = np.array(cells, dtype=CELL)
        nan = values != values
        if nan.any():
            values[nan] = _CANONICAL_NAN
        return values.tobytes()

    def trailer(self, trailer_json: str) -> bytes:
        body = _padded(trailer_json.encode("utf-8"))
        return TRAILER_START + body + _LENGTH.pack(len(body)) + TRAILER_END


def is_binary(raw: bytes) -> bool:
    """Whether the file's bytes are in this form (by its magic, whatever the file's name)."""
    return raw[: len(MAGIC)] == MAGIC


def parse(path: pathlib.Path, raw: bytes) -> tuple[dict[str, Any], list[str], np.ndarray, str | None, int]:
    """(metadata dict, columns, (columns, rows) float64 array, trailer JSON text or None, the offset after
    the last whole row) of a binary trace: its rows are found by their own boundaries, never by a text's.

    The metadata and the trailer are checked by the caller (tracer.trace), as for CSV.
    """
    fixed = len(MAGIC) + _LENGTH.size
    if len(raw) < fixed:
        raise _fail(path, f"truncated header: {len(raw)} bytes, a binary trace starts with at least {fixed}")
    (header_length,) = _LENGTH.unpack_from(raw, len(MAGIC))
    if fixed + header_length > len(raw):
        raise _fail(path, f"truncated header: it says {header_length} bytes, the file holds {len(raw) - fixed} after the magic")
    try:
        header = read_json(raw[fixed : fixed + header_length].decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as error:
        if "nested deeper" in str(error):
            raise _fail(path, f"invalid header: {error}") from None
        header = None
    if not isinstance(header, dict) or not isinstance(header.get("meta"), dict) or not isinstance(header.get("columns"), list):
        raise _fail(path, "invalid header: expected a JSON object with 'meta' and 'columns'")
    if header.get("cell") != CELL.str:
        raise _fail(path, f"unsupported cell type {header.get('cell')!r}; this tracer reads {CELL.str!r}")
    columns = header["columns"]
    if not columns or not all(isinstance(c, str) and c for c in columns) or len(set(columns)) != len(columns):
        raise _fail(path, "invalid header: column names must be non-empty and unique")
    start = fixed + header_length + (-(fixed + header_length) % 8)
    if start > len(raw):
        raise _fail(path, f"truncated header: {len(raw)} bytes, its padding ends at byte {start}")
    row_bytes = len(columns) * CELL.itemsize

    trailer_text = None
    end = len(raw)
    if raw.endswith(TRAILER_END) and end - start >= 2 * len(TRAILER_END) + _LENGTH.size:
        (trailer_length,) = _LENGTH.unpack_from(raw, end - len(TRAILER_END) - _LENGTH.size)
        trailer_start = end - len(TRAILER_END) - _LENGTH.size - trailer_length - len(TRAILER_START)
        if trailer_start < start or raw[trailer_start : trailer_start + len(TRAILER_START)] != TRAILER_START:
            raise _fail(path, "invalid trailer: its length does not lead back to the trailer mark")
        trailer_text = raw[trailer_start + len(TRAILER_START) : trailer_start + len(TRAILER_START) + trailer_length]
        trailer_text = trailer_text.rstrip(b"\x00").decode("utf-8", errors="replace")
        end = trailer_start
        if (end - start) % row_bytes:
            raise _fail(path, f"{end - start} bytes of rows before the trailer, not a whole number of {row_bytes}-byte rows")
    rows = (end - start) // row_bytes
    data = np.frombuffer(raw, dtype=CELL, count=rows * len(columns), offset=start).reshape(rows, len(columns))
    if trailer_text is None:
        # A killed run: whole rows up to the first trailer mark (a trailer cut
        # short) or the end; what follows is dropped with a warning.
        marks = np.flatnonzero(data[:, 0].view("<u8") == np.frombuffer(TRAILER_START, "<u8")[0])
        if marks.size:
            rows = int(marks[0])
            data = data[:rows]
        if start + rows * row_bytes != len(raw):
            warnings.warn(
                f"{path}: dropped {len(raw) - start - rows * row_bytes} bytes after row {rows} "
                "(a partial row or trailer: the run was killed mid-write)",
                stacklevel=4,
            )
    return header["meta"], columns, data.T.copy(), trailer_text, start + rows * row_bytes


def _fail(path: pathlib.Path, what: str) -> TraceFormatError:
    return TraceFormatError(f"{path}: {what}")
