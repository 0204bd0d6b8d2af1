"""Find the code blocks of README.md and docs/ and run each one as a reader would.

The convention every page follows (docs/writing-docs.md says it for writers):

- A ```python block runs on its own, in a fresh interpreter, in an empty directory.
  A block with a top-level ``def test_...`` is a pytest module instead: it is run by
  pytest (with ``asyncio_mode = "auto"``, as the testing pages tell readers to set).
- A ```yaml, ```toml or ```json block whose top level has a ``services`` key (and is
  not a Docker Compose file), or any block marked ``<!-- config -->``, is a complete
  mesh config: ``meshlite check`` must accept it.
- In ```console blocks the ``$ meshlite check|--version|--help`` lines run (in ```sh
  blocks, lines starting with ``meshlite`` and one of those); every output line the
  page shows under a command must appear in what the command prints. The file a
  ``check`` names is the page's ``file:`` block of that name, else the nearest mesh
  config block above the command.
- Markers go on the line(s) just above the fence:
  ``<!-- not-run: REASON -->`` skips the block, showing REASON;
  ``<!-- file: NAME -->`` makes the block the file NAME, written beside every block
  of the same page when it runs (so ``Mesh.from_config("mesh.yaml")`` and
  ``meshlite check mesh.yaml`` find it);
  ``<!-- needs: redis -->`` runs the block with a redis-server of its own on loopback,
  its URL in ``REDIS_URL``.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent

_FENCE = re.compile(r"^(?P<indent>\s*)```(?P<lang>[\w+-]*)\s*$")
_MARKER = re.compile(r"^\s*<!--\s*(?P<key>[\w-]+)\s*(?::\s*(?P<value>.*?))?\s*-->\s*$")
_CONFIG_LANGS = ("yaml", "yml", "toml", "json")
_RUN_COMMANDS = ("check", "--version", "--help", "-h")


@dataclass(frozen=True, slots=True)
class Block:
    """One fenced block: where it is, its language, text and markers."""

    page: str           # path relative to the repository root, "/" separated
    line: int           # line number of the opening fence (1-based)
    lang: str
    text: str
    markers: dict[str, str] = field(default_factory=dict)

    @property
    def id(self) -> str:
        """The test id: ``docs/mesh.md:42``."""
        return f"{self.page}:{self.line}"

    @property
    def not_run(self) -> str | None:
        """The reason given by a ``not-run`` marker, or None."""
        return self.markers.get("not-run")

    @property
    def file_name(self) -> str | None:
        """The name given by a ``file`` marker, or None."""
        return self.markers.get("file")


def pages() -> list[Path]:
    """README.md and every Markdown page under docs/, recursively, sorted."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def _markers_above(lines: list[str], index: int) -> dict[str, str]:
    markers: dict[str, str] = {}
    j = index - 1
    while j >= 0 and (match := _MARKER.match(lines[j])):
        markers.setdefault(match.group("key"), (match.group("value") or "").strip())
        j -= 1
    return markers


def blocks_of(path: Path, page: str | None = None) -> list[Block]:
    """Every fenced block of one page, in order (``page`` names it; default: its path
    relative to the repository root)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    page = path.relative_to(ROOT).as_posix() if page is None else page
    found: list[Block] = []
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if opening is None:
            i += 1
            continue
        indent = len(opening.group("indent"))
        body: list[str] = []
        j = i + 1
        while j < len(lines) and lines[j].strip() != "```":
            body.append(lines[j][indent:] if lines[j][:indent].isspace() else lines[j])
            j += 1
        text = "\n".join(body) + "\n"
        found.append(Block(page, i + 1, opening.group("lang").lower(), text,
                           _markers_above(lines, i)))
        i = j + 1
    return found


def all_blocks() -> list[Block]:
    """Every fenced block of every page."""
    return [block for page in pages() for block in blocks_of(page)]


def parse_config(block: Block) -> Any:
    """The block's data when it is a config-language block that parses, else None."""
    if block.lang not in _CONFIG_LANGS:
        return None
    try:
        if block.lang == "toml":
            import tomllib

            return tomllib.loads(block.text)
        return yaml.safe_load(block.text)  # JSON is YAML
    except Exception:
        return None


_COMPOSE_KEYS = frozenset({"image", "build", "command", "ports", "volumes", "environment"})


def is_mesh_config(block: Block) -> bool:
    """A complete mesh config: marked ``<!-- config -->``, or a mapping with a top-level
    ``services`` key that is not a Docker Compose file (no service with ``image``,
    ``build``, ``ports``...)."""
    if "config" in block.markers:
        return True
    data = parse_config(block)
    if not isinstance(data, dict) or not isinstance(data.get("services"), dict):
        return False
    services = data["services"].values()
    return not any(isinstance(s, dict) and _COMPOSE_KEYS & s.keys() for s in services)


def is_pytest_module(block: Block) -> bool:
    """A python block that defines top-level test functions."""
    return block.lang == "python" and re.search(
        r"^(async\s+)?def test_\w*\(", block.text, re.M) is not None


@dataclass(frozen=True, slots=True)
class Command:
    """A ``meshlite`` command line of a shell block and the output the page shows."""

    argv: list[str]
    shown: list[str]


def commands_of(block: Block) -> list[Command]:
    """The runnable ``meshlite`` commands of a console/sh block (see the module doc)."""
    if block.lang not in ("console", "sh", "shell", "bash"):
        return []
    prompt = block.lang == "console"
    commands: list[Command] = []
    current: Command | None = None
    for raw in block.text.splitlines():
        line = raw.strip()
        is_command = line.startswith("$ ") if prompt else bool(line)
        if is_command:
            current = None
            command = line.removeprefix("$ ")
            if not command.startswith("meshlite "):
                continue
            argv = shlex.split(command, comments=True)
            if len(argv) >= 2 and argv[0] == "meshlite" and (
                    argv[1] in _RUN_COMMANDS or argv[-1] in ("--help", "-h")):
                current = Command(argv[1:], [])
                commands.append(current)
        elif current is not None and prompt and line:
            current.shown.append(line)
    return commands


def kind(block: Block) -> str | None:
    """What running the block means: python, pytest, config, commands, or None."""
    if block.lang == "python":
        return "pytest" if is_pytest_module(block) else "python"
    if is_mesh_config(block):
        return "config"
    if commands_of(block):
        return "commands"
    return None


def page_files(page: str) -> dict[str, str]:
    """The ``file:``-marked blocks of a page, by file name."""
    return {b.file_name: b.text for b in blocks_of(ROOT / page) if b.file_name}


def placeholder_env(text: str) -> dict[str, str]:
    """A value for every ``${NAME}`` a config refers to: a loopback address for
    ``*HOST*`` names, else a token-like string (long enough for a dashboard token)."""
    names = re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-[^}]*)?\}", text)
    return {name: "127.0.0.1" if "HOST" in name.upper() else f"placeholder-{name.lower()}-0123"
            for name in names}


def squash(line: str) -> str:
    """A line with its runs of whitespace made one space (tables re-align)."""
    return " ".join(line.split())
