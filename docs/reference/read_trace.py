"""Read a trace file, CSV or binary, with numpy alone: the trace format of tracer, as code."""
import json

import numpy as np


def read_trace(path):
    """Return (metadata, columns, values, trailer): values is float64 (updates x columns), NaN where a cell is empty."""
    raw = open(path, "rb").read()
    if raw.startswith(b"TRACEbin"):  # binary: magic, header length, JSON header, padding, rows, trailer
        size = int.from_bytes(raw[8:16], "little")
        header, start = json.loads(raw[16:16 + size]), 16 + size + (-(16 + size) % 8)
        trailer, width = None, len(header["columns"])
        if raw.endswith(b"#end\x01\x00\xf8\x7f"):  # closed: mark, JSON padded with zeros, its length, end mark
            length = int.from_bytes(raw[-16:-8], "little")
            trailer, raw = json.loads(raw[-16 - length:-16].rstrip(b"\x00")), raw[:-24 - length]
        rows = (len(raw) - start) // (8 * width)  # a killed run's partial last row is left out
        values = np.frombuffer(raw, "<f8", rows * width, start).reshape(rows, width)
        return header["meta"], header["columns"], values, trailer
    lines = raw.decode("utf-8").split("\n")[:-1]  # CSV: what follows the last newline is a row cut mid-write
    trailer = json.loads(lines.pop()[5:]) if lines[-1].startswith("#end ") else None
    columns = lines[1].split(",")
    values = np.array([[float(cell or "nan") for cell in line.split(",")] for line in lines[2:]], dtype=np.float64)
    return json.loads(lines[0]), columns, values.reshape(-1, len(columns)), trailer
