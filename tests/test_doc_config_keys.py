"""Every key of the config file's schema is named in the docs.

A key added to the schema (``meshlite.config.MeshConfig`` and the sections under it)
must be named on docs/config.md, or, for the ``inbound:`` section, on docs/inbound.md,
so a reader of the pages can find every key ``meshlite check`` accepts.
"""

from __future__ import annotations

import re
import typing
from collections.abc import Iterator

from _docblocks import ROOT

from meshlite.config import MeshConfig
from meshlite.config._sections import Section

PAGES = {"config": ROOT / "docs" / "config.md", "inbound": ROOT / "docs" / "inbound.md"}


def _sections(hint: object, seen: set[type]) -> Iterator[type[Section]]:
    """The Section classes in a type hint, and those under them, each once."""
    for outer in typing.get_args(hint) or (hint,):
        for inner in typing.get_args(outer) or (outer,):
            if isinstance(inner, type) and issubclass(inner, Section) and inner not in seen:
                seen.add(inner)
                yield inner
                hints = typing.get_type_hints(inner)
                for name in inner.__struct_fields__:
                    yield from _sections(hints[name], seen)


def _page(section: type[Section]) -> str:
    return "inbound" if section.__name__.startswith("Inbound") else "config"


def test_every_config_key_is_named_on_its_page() -> None:
    texts = {name: path.read_text(encoding="utf-8") for name, path in PAGES.items()}
    sections = list(_sections(MeshConfig, set()))
    names = {section.__name__ for section in sections}
    assert {"MeshConfig", "BackoffSection", "InboundJwtSection"} <= names  # leaves reached
    missing = [f"{section.__name__}.{key} (docs/{_page(section)}.md)"
               for section in sections for key in section.__struct_fields__
               if not re.search(rf"\b{key}\b", texts[_page(section)])]
    assert missing == []
