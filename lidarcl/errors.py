"""Errors raised on bad input. Each names the offending file and the problem."""
from __future__ import annotations

import os


class DataError(ValueError):
    """A data file (points, image, calibration, label, info index) is unusable.

    The message always starts with the file's path so that a user can find it.
    """

    def __init__(self, path: str | os.PathLike | None, problem: str):
        self.path = None if path is None else os.fspath(path)
        self.problem = problem
        where = self.path if self.path is not None else "<in memory>"
        super().__init__(f"{where}: {problem}")


class DataFileNotFound(DataError, FileNotFoundError):
    """A file the info index or the dataset layout points to does not exist."""

    def __init__(self, path, what: str = "file"):
        super().__init__(path, f"{what} not found")
