"""Atomic file writing: a killed process leaves either the old file or the new one, never half of one.

Every file the tool writes goes through :func:`atomic_path`: it is written under a temporary name
beside its destination (``.NAME.XXXXXX.tmp``), flushed to disk and renamed into place. A failure (a
full disk, a read-only folder) removes the temporary file and becomes one :class:`ElsrError` naming
the file; the old file, if any, is untouched.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterable, Iterator

from elsr.errors import OS_FIXES, ElsrError, from_os_error

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


@contextlib.contextmanager
def atomic_folder(path: str | Path) -> Iterator[Path]:
    """Yield a path of the same name in a temporary folder beside ``path``, for a folder to be made (a Core ML
    package); on success it is renamed onto ``path`` (an old folder there is moved aside first and removed
    after, so a kill leaves the old folder, the new one, or the old one under a temporary name)."""
    path = Path(path)
    if path.is_file():
        raise ElsrError("output is a file, a folder is written here", path=path, fix="remove it or choose another name")
    writable_folder(path.parent)
    try:
        staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent))
    except OSError as exc:
        raise from_os_error(exc, "cannot write here", path.parent) from exc
    try:
        yield staging / path.name
        old = staging / f"{path.name}.old"
        if path.exists():
            os.replace(path, old)
        os.replace(staging / path.name, path)
    except OSError as exc:
        raise from_os_error(exc, "could not write folder", path) from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def disk_bytes(path: str | Path) -> int:
    """The size of a file, or of every file in a folder (a Core ML package)."""
    path = Path(path)
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size


def remove_output(path: str | Path) -> None:
    """Remove a file or a folder we wrote (a missing one is fine)."""
    path = Path(path)
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


@contextlib.contextmanager
def staged_folder(folder: str | Path) -> Iterator[Path]:
    """Yield a temporary folder to write files into (inside ``folder`` when it exists, else beside it); when the
    block ends without an error they are moved into ``folder`` (made if needed, a file of the same name replaced),
    else the temporary folder is removed: a run that fails half way leaves no new file and no old one replaced."""
    folder = Path(folder)
    home = folder if folder.is_dir() else writable_folder(folder.parent)
    try:
        stage = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=TEMP_SUFFIX, dir=home))
    except OSError as exc:
        raise from_os_error(exc, "cannot write here", home) from exc
    try:
        yield stage
        _move_into(stage, folder)
    except OSError as exc:
        raise from_os_error(exc, "could not write file", folder) from exc
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _move_into(stage: Path, folder: Path) -> None:
    """Every file under ``stage`` to the same place under ``folder``, each renamed atomically."""
    for source in sorted(p for p in stage.rglob("*") if p.is_file()):
        target = folder / source.relative_to(stage)
        writable_folder(target.parent)
        os.replace(source, target)


def write_text(path: str | Path, text: str) -> None:
    """Write a text file atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_bytes(path: str | Path, data: bytes) -> None:
    """Write a binary file atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            handle.write(data)


def human_bytes(n: float) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def free_bytes(path: str | Path) -> int | None:
    """Free bytes (for this user) on the file system a new file at ``path`` would go to; None when unknown."""
    for candidate in (Path(path), *Path(path).parents):
        if candidate.exists():
            try:
                return shutil.disk_usage(candidate if candidate.is_dir() else candidate.parent).free
            except OSError:
                return None
    return None


def check_free_space(path: str | Path, needed: int, what: str) -> None:
    """Refuse, before any work, an output that needs more than the free space where it goes, naming both."""
    free = free_bytes(path)
    if free is not None and needed > free:
        raise ElsrError(f"{what} needs at least about {human_bytes(needed)} on disk, and only {human_bytes(free)} "
                        "are free there", path=path, fix=OS_FIXES[errno.ENOSPC])


def check_new_output(path: str | Path, overwrite: bool, option: str = "--overwrite") -> Path:
    """Refuse an output path that exists unless ``overwrite``; refuse a folder in any case."""
    path = Path(path)
    if path.is_dir():
        raise ElsrError("output is a folder", path=path, fix="give a file name")
    if path.exists() and not overwrite:
        raise ElsrError("output exists", path=path, fix=f"pass {option} or choose another output path")
    return path


def refuse_other_suffix(path: str | Path, suffix: str, what: str) -> None:
    """Refuse, before any work, an output not named ``*{suffix}``; ``what`` says what is written there ("--json
    writes a JSON file"): a report named .png would be JSON that no image viewer opens."""
    path = Path(path)
    if path.suffix.lower() != suffix:
        raise ElsrError(f"{what}, not a {path.suffix or 'suffix-less'} file", path=path,
                        fix=f"name it *{suffix}")


def same_path(a: str | Path, b: str | Path) -> bool:
    """Whether two paths name the same file or folder: the same spelling once resolved, a link, a hard link."""
    a, b = Path(a), Path(b)
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and a.samefile(b))
    except (OSError, RuntimeError):   # a loop of links, a path too long
        return False


def _inside(path: Path, folder: Path) -> bool:
    try:
        return folder.is_dir() and path.resolve().is_relative_to(folder.resolve())
    except (OSError, RuntimeError):
        return False


def refuse_overwriting_inputs(outputs: Iterable[str | Path], inputs: Iterable[str | Path | None],
                              read_folders: Iterable[str | Path | None] = (),
                              read_suffixes: tuple[str, ...] | None = None) -> None:
    """Before any work: refuse an output that is one of the ``inputs`` (by any name: a link, another spelling), so
    an input is never overwritten, and one inside any of the ``read_folders`` (folders whose files the command
    reads, searched recursively; only outputs named with one of ``read_suffixes``, when given), where it would be
    read back as input or written over one."""
    inputs = [Path(p) for p in inputs if p is not None]
    folders = [Path(p) for p in read_folders if p is not None]
    for output in map(Path, outputs):
        for source in inputs:
            if same_path(output, source):
                raise ElsrError(f"output is the input{'' if output == source else f' {source}'}", path=output,
                                fix="choose another output path: the input would be overwritten")
        if read_suffixes is not None and output.suffix.lower() not in read_suffixes:
            continue
        for folder in folders:
            if not same_path(output, folder) and _inside(output, folder):
                where = "is one of the files read from" if output.is_file() else "is inside"
                raise ElsrError(f"output {where} the input folder {folder}", path=output,
                                fix="write it outside the input folder: an input would be overwritten or read back")


def section_markers(name: str) -> tuple[str, str]:
    return f"<!-- begin {name}: written by a command, edits here are replaced -->", f"<!-- end {name} -->"


def write_section(path: str | Path, name: str, text: str, title: str) -> None:
    """Put ``text`` into the section ``name`` of a Markdown file, atomically: between its two marker comments,
    replacing what was there, or appended when the file has no such section (a new file starts with ``title``).
    Several commands can so share one report file, each rewriting only its own part."""
    path = Path(path)
    begin, end = section_markers(name)
    block = f"{begin}\n{text.strip()}\n{end}\n"
    try:
        old = path.read_text(encoding="utf-8") if path.exists() else f"{title}\n\n"
    except (OSError, UnicodeDecodeError) as exc:
        raise ElsrError(f"cannot read it to update its {name!r} section: {exc}", path=path,
                        fix="write the report somewhere else") from exc
    start, stop = old.find(begin), old.find(end)
    if start >= 0 and stop > start:
        new = old[:start] + block + old[stop + len(end):].lstrip("\n")
    else:
        new = old.rstrip("\n") + "\n\n" + block
    write_text(path, new)
