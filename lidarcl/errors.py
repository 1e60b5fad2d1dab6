"""Errors raised on bad input. Each names the offending file and the problem."""
from __future__ import annotations

import os


class DataError(ValueError):
    """A data file (points, image, calibration, label, info index) is unusable.

    The message always starts with the file's path so that a user can find it.

    Raised inside a ``torch.utils.data.DataLoader`` worker, the error is rebuilt in the
    main process from its message alone (``exc_type(message)``, where the message is the
    worker's whole traceback); called so, with one argument, the error keeps the worker's
    last line (``lidarcl.errors.DataError: <file>: <problem>``) as its one-line message,
    and a tool can still print one line naming the file.
    """

    def __init__(self, path: str | os.PathLike | None, problem: str | None = None):
        if problem is None:  # rebuilt from a worker's message (see the class doc)
            self.path, self.problem = None, _last_error_line(str(path))
            super().__init__(f"{self.problem} (in a data loader worker)")
            return
        self.path = None if path is None else os.fspath(path)
        self.problem = problem
        where = self.path if self.path is not None else "<in memory>"
        super().__init__(f"{where}: {problem}")

    def __reduce__(self):  # pickles across processes with both arguments
        return (DataError, (self.path, self.problem))


class DataFileNotFound(DataError, FileNotFoundError):
    """A file the info index or the dataset layout points to does not exist."""

    def __init__(self, path, what: str | None = None):
        if what is None:  # rebuilt from a worker's message
            super().__init__(path)
            return
        self.what = what
        super().__init__(path, f"{what} not found")

    def __reduce__(self):
        return (DataFileNotFound, (self.path, self.what) if hasattr(self, "what")
                else (self.problem,))

    def __str__(self) -> str:  # FileNotFoundError's own __str__ would show errno fields
        return ValueError.__str__(self)


def _last_error_line(message: str) -> str:
    """The ``...Error: <file>: <problem>`` line of a traceback text (else the text)."""
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    for line in reversed(lines):
        head, sep, rest = line.partition(": ")
        if sep and head.rsplit(".", 1)[-1] in ("DataError", "DataFileNotFound"):
            return rest
    return lines[-1] if lines else message
