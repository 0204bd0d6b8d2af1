"""The ``meshlite`` command line as docs/cli.md describes it: each command's one-line
help and each option's placeholder as the page writes them, a wrong flag of a command
answered with that command's usage (exit 2), a port out of range refused as a usage
error."""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from _docblocks import ROOT, blocks_of

from meshlite.cli import _parser, main

PAGE = ROOT / "docs" / "cli.md"


def _commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    (action,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def _helps(parser: argparse.ArgumentParser) -> dict[str, str]:
    (action,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {c.dest: " ".join(str(c.help).split()) for c in action._choices_actions}


def _listed() -> dict[str, str]:
    """The commands of the page's overview block and what it says each does."""
    block = next(b for b in blocks_of(PAGE) if b.text.startswith("meshlite COMMAND"))
    found: dict[str, str] = {}
    name = ""
    for line in block.text.splitlines()[1:]:
        match = re.match(r"^  (\w+)\s+(.*)$", line)
        if match:
            name = match[1]
            found[name] = match[2]
        elif line.strip() and name:
            found[name] += " " + line.strip()
    return found


def test_the_overview_lists_each_command_with_its_help() -> None:
    assert _listed() == _helps(_parser())


def _metavars(parser: argparse.ArgumentParser, path: str) -> dict[tuple[str, str], str]:
    found: dict[tuple[str, str], str] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.update(_metavars(sub, f"{path} {name}"))
        elif action.nargs != 0 and action.option_strings:
            metavar = action.metavar or action.dest.upper()
            found.update({(path, o): str(metavar) for o in action.option_strings})
    return found


def test_each_option_has_the_placeholder_the_page_writes() -> None:
    page = PAGE.read_text(encoding="utf-8")
    written = dict(re.findall(r"(?<![\w-])(--[a-z][\w-]*) ([A-Z][A-Z_]*)\b", page))
    parsed = {option: metavar for (_, option), metavar in _metavars(_parser(), "").items()}
    assert "--max-clients" in written
    assert "--group" in written
    assert {o: parsed.get(o) for o in written} == written


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MESHLITE_")}
    return subprocess.run([sys.executable, "-m", "meshlite", *argv], env=env,
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.parametrize(("argv", "usage", "error"), [
    (["check", "{config}", "--verbose"], "usage: meshlite check [-h] CONFIG",
     "meshlite check: error: unrecognized arguments: --verbose"),
    (["alerts", "export", "{config}", "--grup", "x"], "usage: meshlite alerts export ",
     "meshlite alerts export: error: unrecognized arguments: --grup x"),
    (["dashboard", "{config}", "--tokn", "x"], "usage: meshlite dashboard ",
     "meshlite dashboard: error: unrecognized arguments: --tokn x"),
])
def test_a_wrong_flag_shows_the_command_usage(tmp_path: Path, argv: list[str],
                                              usage: str, error: str) -> None:
    config = tmp_path / "mesh.yaml"
    config.write_text("services: {}\n", encoding="utf-8")
    done = _run(*(a.format(config=config) for a in argv))
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert lines[0].startswith(usage)
    assert lines[-1] == error


@pytest.mark.parametrize("port", ["70000", "-1"])
def test_a_port_out_of_range_is_a_usage_error(tmp_path: Path, port: str,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "mesh.yaml"
    config.write_text("services: {}\n", encoding="utf-8")
    with pytest.raises(SystemExit) as info:
        main(["dashboard", str(config), "--port", port])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: meshlite dashboard ")
    assert err.rstrip().endswith(f"meshlite dashboard: error: argument --port: must be a "
                                 f"port number in [0, 65535] (0 picks a free one), got "
                                 f"'{port}'")


def test_the_help_of_each_command_shows_no_escape_when_piped() -> None:
    for command in ["", *_commands(_parser())]:
        done = _run(*([command] if command else []), "--help")
        assert done.returncode == 0, done.stderr
        assert "\x1b" not in done.stdout
        assert done.stderr == ""
