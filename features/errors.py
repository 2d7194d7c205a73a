"""Errors a user can cause with bad input; the message names the file and what to do."""
from __future__ import annotations

from pathlib import Path


class BadInputError(ValueError):
    """Bad input (corrupt video, missing weights, malformed labels): says which file and what to do."""

    def __init__(self, path: str | Path | None, problem: str, hint: str = ""):
        self.path = None if path is None else str(path)
        self.problem = problem
        self.hint = hint
        where = f"{self.path}: " if self.path else ""
        super().__init__(f"{where}{problem}" + (f" ({hint})" if hint else ""))

    def __reduce__(self):
        # rebuilt from its parts (the default would pass the whole message as `path`): it crosses process pipes,
        # e.g. from a DataLoader worker to the trainer
        return type(self), (self.path, self.problem, self.hint)
