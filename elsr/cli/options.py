"""Options several commands share, and the one way a command turns its options into a library config."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any, TypeVar

from elsr.model.devices import DEVICES
from elsr.pretrained import MODELS

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


def bundled_names() -> str:
    return ", ".join(MODELS)
