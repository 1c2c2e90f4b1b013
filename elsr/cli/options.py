"""Options several commands share, and the one way a command turns its options into a library config."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any, TypeVar

from elsr.io.kinds import refuse_wrong_kind
from elsr.model.devices import DEVICES
from elsr.pretrained import MODELS
from elsr.runtime.loaders import MODEL_KINDS

T = TypeVar("T")
CONVERT_HELP = "convert greyscale / RGBA / 16-bit images to 8-bit RGB instead of refusing them"


def default(cls: type, name: str) -> Any:
    """The default of field ``name`` of dataclass ``cls``: the library's, shown and used by the command."""
    found = next(f for f in dataclasses.fields(cls) if f.name == name)
    return found.default_factory() if found.default is dataclasses.MISSING else found.default


def config_from_args(cls: type[T], args: argparse.Namespace, **values: Any) -> T:
    """``cls`` built from the options named like its fields (the rest from ``values``, or the field's default)."""
    names = {f.name for f in dataclasses.fields(cls)}
    taken = {name: getattr(args, name) for name in names if hasattr(args, name) and name not in values}
    return cls(**taken, **values)


def add_device(parser: argparse.ArgumentParser, what: str = "") -> None:
    parser.add_argument("--device", default="auto", choices=DEVICES,
                        help=f"{what + ' ' if what else ''}device: auto is cuda where there is a GPU, else cpu "
                             "(default: auto)")


def add_convert(parser: argparse.ArgumentParser, help_text: str = CONVERT_HELP) -> None:
    parser.add_argument("--convert", action="store_true", help=help_text)


def add_overwrite(parser: argparse.ArgumentParser, help_text: str = "replace existing output files") -> None:
    parser.add_argument("--overwrite", action="store_true", help=help_text)


def add_no_progress(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")


def bundled_names(checkpoints: bool | None = None) -> str:
    """The bundled models' names for a help text: all, only the PyTorch checkpoints, or only the other files."""
    return ", ".join(name for name, path in MODELS.items()
                     if checkpoints is None or (path.suffix == ".pt") == checkpoints)


def check_kind(path: Path | None, wanted: tuple[str, ...], option: str) -> None:
    """Before any work: a file given to ``option`` that is recognisably of another kind is one line saying
    what it is and what the option wants (a run folder: "did you mean its model.pt?")."""
    if path is not None and Path(path).exists():
        refuse_wrong_kind(path, wanted, option)


def check_model(path: Path | None, option: str = "--model") -> None:
    """Any model file elsr runs: a checkpoint, ONNX, ORT-format or TFLite model."""
    check_kind(path, MODEL_KINDS, option)


def check_checkpoint(path: Path | None, option: str = "--weights") -> None:
    check_kind(path, ("checkpoint",), option)
