"""Help that cannot lag the tool: every option explained with its default, lists taken from the registries."""

import argparse

import pytest

from elsr.cli.main import COMMANDS, build_parser
from elsr.export.formats import FORMATS
from elsr.pretrained import MODELS
from elsr.train.schedule import builtin_schedules


def subcommand(name: str) -> argparse.ArgumentParser:
    parser = build_parser(name)
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[name]


def has_default_worth_showing(action: argparse.Action) -> bool:
    flag = isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction, argparse._StoreConstAction))
    return not flag and action.default not in (None, False, argparse.SUPPRESS)


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_option_has_help_and_shows_its_default(name):
    for action in subcommand(name)._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        label = "/".join(action.option_strings) or action.dest
        assert action.help and action.help != argparse.SUPPRESS, f"elsr {name} {label}: no help"
        if has_default_worth_showing(action):
            assert "default" in action.help, f"elsr {name} {label}: default {action.default!r} not shown"


def test_the_top_level_help_is_plain_text_and_current():
    text = build_parser().format_help()
    assert "``" not in text and ":func:" not in text
    export = COMMANDS["export"].summary.lower()
    assert all(name in export for name in FORMATS), export   # a new format must reach the summary
    assert "video" in COMMANDS["upscale"].summary


def test_lists_in_help_come_from_the_registries():
    schedule = next(a for a in subcommand("train")._actions if "--schedule" in a.option_strings)
    assert all(name in schedule.help for name in builtin_schedules())
    fmt = next(a for a in subcommand("export")._actions if "--format" in a.option_strings)
    assert list(fmt.choices) == list(FORMATS) and all(f.suffix[1:] in subcommand("export").format_help()
                                                      for f in FORMATS.values())
    model = next(a for a in subcommand("upscale")._actions if "--model" in a.option_strings)
    assert all(name in model.help for name in MODELS)
    weights = next(a for a in subcommand("quantize")._actions if "--weights" in a.option_strings)
    assert all(name in weights.help for name, path in MODELS.items() if path.suffix == ".pt")
