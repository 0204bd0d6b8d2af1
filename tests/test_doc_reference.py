"""The API reference (docs/reference/) covers the public API: every name of
``meshlite.__all__`` has its ``::: meshlite.<name>`` entry, and each entry names
something that exists (the site build renders the docstrings behind them)."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import meshlite as ml

REFERENCE = Path(__file__).resolve().parent.parent / "docs" / "reference"

PROSE_ONLY = {"__version__": "a string: named in engine.md's prose"}


def _entries() -> list[str]:
    return re.findall(r"^::: (meshlite[\w.]*)$", "".join(
        p.read_text(encoding="utf-8") for p in sorted(REFERENCE.glob("*.md"))), re.M)


def _covered(name: str, entries: set[str]) -> bool:
    # A subpackage (meshlite.state) is covered by entries of its names.
    full = f"meshlite.{name}"
    return full in entries or any(e.startswith(full + ".") for e in entries)


def test_every_public_name_has_a_reference_entry() -> None:
    entries = set(_entries())
    missing = [n for n in ml.__all__ if not _covered(n, entries) and n not in PROSE_ONLY]
    assert missing == []
    assert "`meshlite.__version__`" in (REFERENCE / "engine.md").read_text(encoding="utf-8")


def test_every_reference_entry_names_something_that_exists() -> None:
    unknown = []
    for entry in _entries():
        module, _, name = entry.rpartition(".")
        try:
            found = importlib.import_module(entry)
        except ImportError:
            found = getattr(importlib.import_module(module), name, None)
        if found is None:
            unknown.append(entry)
    assert unknown == []
