"""The one exception type for problems the user can fix (bad input, bad options)."""

from __future__ import annotations

from pathlib import Path


class ElsrError(Exception):
    """A user-facing problem: printed as one line by the CLI, exit code 2, no traceback.

    ``path`` names the file at fault, ``fix`` says what to do about it.
    """

    def __init__(self, problem: str, *, path: str | Path | None = None, fix: str | None = None):
        self.problem = problem
        self.path = None if path is None else str(path)
        self.fix = fix
        super().__init__(self.one_line())

    def one_line(self) -> str:
        text = f"{self.path}: {self.problem}" if self.path else self.problem
        if self.fix:
            text += f" ({self.fix})"
        return " ".join(text.split())
