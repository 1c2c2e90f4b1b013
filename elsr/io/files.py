"""Atomic file writing: a killed process leaves either the old file or the new one, never half of one.

Every file the tool writes goes through :func:`atomic_path`: it is written under a temporary name
beside its destination (``.NAME.XXXXXX.tmp``), flushed to disk and renamed into place. A failure (a
full disk, a read-only folder) removes the temporary file and becomes one :class:`ElsrError` naming
the file; the old file, if any, is untouched.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator

from elsr.errors import ElsrError, from_os_error

TEMP_SUFFIX = ".tmp"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _blocking_file(folder: Path) -> Path | None:
    """The first ancestor of ``folder`` that exists, when it is not a folder (then nothing can be made there)."""
    for candidate in (folder, *folder.parents):
        if candidate.exists():
            return None if candidate.is_dir() else candidate
    return None


def writable_folder(folder: str | Path) -> Path:
    """Create ``folder`` (and its parents) if needed; an ElsrError naming it if that is impossible."""
    folder = Path(folder)
    blocking = _blocking_file(folder)
    if blocking is not None:
        raise ElsrError("cannot write here: this is a file, not a folder", path=blocking,
                        fix=f"choose another output path than {folder}")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise from_os_error(exc, "cannot write here", folder) from exc
    return folder


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is fsynced and renamed onto ``path``."""
    path = Path(path)
    if path.is_dir():
        raise ElsrError("output is a folder", path=path, fix="give a file name")
    writable_folder(path.parent)
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    except OSError as exc:
        raise from_os_error(exc, "cannot write here", path.parent) from exc
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual permissions
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        raise from_os_error(exc, "could not write file", path) from exc
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


def write_text(path: str | Path, text: str) -> None:
    """Write a text file atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def replace_section(text: str, heading: str, section: str) -> str:
    """``text`` (markdown) with the section under the line ``heading`` (up to the next heading of the same or a
    higher level) replaced by ``section`` (which starts with ``heading``), or ``section`` appended."""
    level = len(heading) - len(heading.lstrip("#"))
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.rstrip() == heading), None)
    section = section.rstrip("\n") + "\n"
    if start is None:
        return (text.rstrip("\n") + "\n\n" if text.strip() else "") + section
    end = next((i for i in range(start + 1, len(lines))
                if lines[i].startswith("#") and len(lines[i]) - len(lines[i].lstrip("#")) <= level), len(lines))
    return "".join(lines[:start]) + section + ("\n" + "".join(lines[end:]) if end < len(lines) else "")


def write_section(path: str | Path, heading: str, section: str) -> None:
    """Replace (or append) one markdown section of a file, atomically; the rest of the file is kept."""
    path = Path(path)
    write_text(path, replace_section(path.read_text(encoding="utf-8") if path.is_file() else "", heading, section))


def kept_sections(path: str | Path, level: int = 2) -> str:
    """The sections of a markdown file from its first heading of ``level`` on ("" when none or no file): what a
    tool that rewrites the top of the file keeps for the tools that maintain those sections."""
    path = Path(path)
    if not path.is_file():
        return ""
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    marker = "#" * level + " "
    start = next((i for i, line in enumerate(lines) if line.startswith(marker)), None)
    return "" if start is None else "".join(lines[start:])


def write_bytes(path: str | Path, data: bytes) -> None:
    """Write a binary file atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            handle.write(data)


def check_new_output(path: str | Path, overwrite: bool, option: str = "--overwrite") -> Path:
    """Refuse an output path that exists unless ``overwrite``; refuse a folder in any case."""
    path = Path(path)
    if path.is_dir():
        raise ElsrError("output is a folder", path=path, fix="give a file name")
    if path.exists() and not overwrite:
        raise ElsrError("output exists", path=path, fix=f"pass {option} or choose another output path")
    return path
