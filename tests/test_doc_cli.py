"""Every option of every ``meshlite`` command is named on docs/cli.md."""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator

from _docblocks import ROOT

from meshlite.cli import _parser


def _options(parser: argparse.ArgumentParser, path: str) -> Iterator[tuple[str, str]]:
    """(command, option) for every long option of ``parser`` and its subcommands."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _options(sub, f"{path} {name}")
        elif not isinstance(action, argparse._HelpAction | argparse._VersionAction):
            yield from ((path, o) for o in action.option_strings if o.startswith("--"))


def test_every_command_option_is_on_the_cli_page() -> None:
    page = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    options = list(_options(_parser(), "meshlite"))
    assert ("meshlite dashboard", "--admin-token-file") in options  # the walk reaches them
    assert [f"{command} {option}" for command, option in options
            if not re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", page)] == []
