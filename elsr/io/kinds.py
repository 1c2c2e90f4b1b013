"""What a file is, by its content, never by its name: the model files elsr reads, and the files a user may hand
it by mistake. Only the first bytes are read (a zip's list of names for a checkpoint), so a huge or hostile
file costs nothing to recognise."""

from __future__ import annotations

import zipfile
from pathlib import Path

from elsr.errors import ElsrError

HEAD_BYTES = 64
# (kind, how a message names it)
KINDS = {
    "checkpoint": "a PyTorch checkpoint",
    "onnx": "an ONNX model",
    "ort": "an ORT-format model",
    "tflite": "a TFLite model",
    "pte": "an ExecuTorch program",
    "mlpackage": "a Core ML model package",
    "hdf5": "an HDF5 file",
    "image": "an image",
    "pickle": "a Python pickle",
    "zip": "a zip archive",
    "text": "a text file",
    "empty": "an empty file",
    "folder": "a folder",
    "special": "a device, pipe or socket, not a regular file",
    "missing": "missing",
    "unknown": "a file of unknown kind",
}
FLATBUFFER_IDS = {b"ORTM": "ort", b"TFL3": "tflite", b"ET12": "pte"}   # the identifier at bytes 4..8
MAGIC = {b"\x89HDF\r\n\x1a\n": "hdf5", b"\x89PNG\r\n\x1a\n": "image", b"\xff\xd8\xff": "image", b"BM": "image",
         b"RIFF": "image", b"II*\x00": "image", b"MM\x00*": "image"}
ONNX_FIELD_TAGS = {0x12, 0x1A, 0x22, 0x28, 0x32, 0x3A, 0x42, 0x72, 0x7A}  # ModelProto fields after ir_version
HDF5_SUFFIXES = (".h5", ".hdf5")  # what elsr prepare writes and elsr train reads as HDF5 patches
RUN_FOLDER_MODEL = "model.pt"  # what a run folder of elsr train holds as its final model
MLPACKAGE_MANIFEST = "Manifest.json"  # the file at the top of every Core ML model package (a folder)


def describe(kind: str) -> str:
    return KINDS.get(kind, kind)


def _is_onnx(head: bytes) -> bool:
    """A protobuf ModelProto: field 1 (ir_version, a small varint), then another ModelProto field."""
    return len(head) >= 3 and head[0] == 0x08 and 0 < head[1] < 32 and head[2] in ONNX_FIELD_TAGS


def _zip_kind(path: Path) -> str:
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return "zip"  # a zip's signature with no readable directory: truncated
    return "checkpoint" if any(name.endswith("/data.pkl") or name == "data.pkl" for name in names) else "zip"


def _text(head: bytes) -> bool:
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(b >= 0x20 or b in b"\t\r\n" for b in head)


def file_kind(path: str | Path) -> str:
    """The kind of ``path`` (a key of KINDS), from its first bytes."""
    path = Path(path)
    if path.is_dir():
        return "mlpackage" if (path / MLPACKAGE_MANIFEST).is_file() else "folder"
    if not path.is_file():
        return "special" if path.exists() else "missing"   # never opened: a pipe would block, /dev/zero never end
    try:
        with open(path, "rb") as handle:
            head = handle.read(HEAD_BYTES)
    except OSError:
        return "unknown"
    if not head:
        return "empty"
    if head[4:8] in FLATBUFFER_IDS:
        return FLATBUFFER_IDS[head[4:8]]
    if head.startswith(b"PK\x03\x04"):
        return _zip_kind(path)
    for magic, kind in MAGIC.items():
        if head.startswith(magic):
            return kind
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "pickle"  # torch.save's legacy format, or any pickle
    if _is_onnx(head):
        return "onnx"
    return "text" if _text(head) else "unknown"


def run_folder_hint(path: Path) -> str | None:
    """For a folder that holds an elsr training run: the model file in it."""
    candidate = path / RUN_FOLDER_MODEL
    return str(candidate) if path.is_dir() and candidate.is_file() else None


def refuse_wrong_kind(path: str | Path, wanted: tuple[str, ...], option: str | None = None,
                      fix: str | None = None) -> str:
    """The kind of ``path``; one line saying what it is and what is wanted when it is recognisably something else,
    e.g. "x.onnx: is an ONNX model; --weights wants a PyTorch checkpoint (fix: ...)". A file of no known kind
    (or a damaged one of the wanted kind) passes: the loader's own parser then says what is wrong with it. A
    legacy-format PyTorch checkpoint is a pickle: it passes where a checkpoint is wanted."""
    path = Path(path)
    kind = file_kind(path)
    if kind in wanted or kind in ("unknown", "zip") or (kind == "pickle" and "checkpoint" in wanted):
        return kind
    wants = " or ".join(describe(k) for k in wanted)
    who = f"{option} wants {wants}" if option else f"{wants} is wanted here"
    if kind == "missing":
        raise ElsrError(f"no such file ({who})", path=path, fix=fix or "check the path")
    hint = run_folder_hint(path)
    raise ElsrError(f"is {describe(kind)}; {who}", path=path,
                    fix=f"did you mean {hint}?" if hint else fix or f"pass {wants}")
