"""One exception type for every problem with user-supplied data."""

from __future__ import annotations

from pathlib import Path

from dglmm.errors import InputError


class DataError(InputError):
    """A problem with an input file, reported as one line: ``<file>: <problem>``.

    The CLI prints ``str(error)`` and exits with status 2, never a traceback.
    """

    def __init__(self, source: str | Path | None, problem: str) -> None:
        self.source = str(source) if source is not None else None
        self.problem = problem
        super().__init__(f"{self.source}: {problem}" if self.source else problem)


class DataWarning(UserWarning):
    """Something in an input file was repaired (e.g. duplicate interactions dropped); the message names it."""
