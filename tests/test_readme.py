"""The README opens with its two set-up commands (its code blocks run in test_docs.py)."""

from __future__ import annotations

from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_opens_with_the_two_commands() -> None:
    head = README.read_text().split("## ")[0]
    assert "make demo" in head
    assert "make test" in head


def _nav_pages() -> set[str]:
    mkdocs = (README.parent / "mkdocs.yml").read_text()
    nav = mkdocs[mkdocs.index("\nnav:"):]
    return {line.strip()[2:].split(": ")[-1] for line in nav.splitlines()
            if line.strip().startswith("- ") and line.strip().endswith(".md")}


def test_every_page_of_the_site_is_linked_from_the_readme_and_the_home_page() -> None:
    pages = {p for p in _nav_pages()
             if not p.startswith(("reference/", "policies/")) and p != "index.md"}
    readme, home = README.read_text(), (README.parent / "docs" / "index.md").read_text()
    assert sorted(p for p in pages if f"(docs/{p}" not in readme) == []
    assert sorted(p for p in pages if f"({p}" not in home) == []


def test_the_readme_names_every_command() -> None:
    import argparse

    from meshlite.cli import _parser

    (commands,) = [a.choices for a in _parser()._actions
                   if isinstance(a, argparse._SubParsersAction)]
    tail = README.read_text().split("The command line:")[-1]
    assert sorted(c for c in commands if f"`meshlite {c}" not in tail) == []
