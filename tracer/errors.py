"""The errors a user can act on.

Every message is one line: what was wrong, the value received, and what is
accepted. The `tracer` command prints it and exits with status 2.
"""


class TracerError(Exception):
    """Base of every error the toolkit raises for bad input."""


class TraceFormatError(TracerError, ValueError):
    """A trace file that cannot be read; the message names the file and line."""


class RenderError(TracerError):
    """A trace lacks what a figure needs (columns, problem), or bad render options."""


class DivergenceError(TracerError):
    """The loss or the optimizer's state stopped being finite during a run."""


class TraceWriteError(TracerError):
    """A trace file could not be written (a full disk, a removed file or folder): the rows written before are kept."""
