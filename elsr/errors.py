"""The one exception type for problems the user can fix (bad input, bad options)."""

from __future__ import annotations

import errno
import os
from pathlib import Path

# what to do about an operating-system error, by errno
OS_FIXES = {
    errno.ENOSPC: "free some disk space or write somewhere else",
    errno.EDQUOT: "free some of your disk quota or write somewhere else",
    errno.EACCES: "choose a writable output folder, or fix its permissions",
    errno.EPERM: "choose a writable output folder, or fix its permissions",
    errno.EROFS: "the file system is read-only: write somewhere else",
    errno.ENOTDIR: "a part of the path is a file, not a folder: fix the path",
    errno.EISDIR: "give a file name, not a folder",
    errno.ENOENT: "check the path",
    errno.ENAMETOOLONG: "use a shorter path",
}


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


def os_reason(exc: OSError) -> str:
    """The short text of an OSError ("No space left on device"), without the file name or library detail."""
    if exc.errno:
        return os.strerror(exc.errno)
    return " ".join(str(exc.strerror or exc).split())[:200]


def from_os_error(exc: OSError, doing: str | None = None, path: str | Path | None = None,
                  fix: str | None = None) -> ElsrError:
    """An ElsrError for an OSError met while ``doing`` something ("could not write file") to ``path``
    (by default the error's own file name)."""
    path = path if path is not None else exc.filename
    return ElsrError(f"{doing}: {os_reason(exc)}" if doing else os_reason(exc), path=path,
                     fix=fix or OS_FIXES.get(exc.errno, "check the path, free disk space and permissions"))
