"""The README opens with its two set-up commands (its code blocks run in test_docs.py)."""

from __future__ import annotations

from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_opens_with_the_two_commands() -> None:
    head = README.read_text().split("## ")[0]
    assert "make demo" in head
    assert "make test" in head
