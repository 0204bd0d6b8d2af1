"""Every relative link and #anchor in README.md and docs/ resolves.

Anchors are the heading slugs the site's table of contents makes (Python-Markdown's
``toc`` slugify, the one ``mkdocs build --strict`` checks), so a renamed heading or a
moved page fails here without building the site.
"""

from __future__ import annotations

import re
import unicodedata
from functools import cache
from pathlib import Path

from _docblocks import ROOT, pages

_FENCE = re.compile(r"^\s*(```|~~~)")
_HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$")
_CODE_SPAN = re.compile(r"`[^`\n]*`")
# [text](target) with the text over one or more lines; images too (![alt](src)).
_LINK = re.compile(r"\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\)")
_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)


def _prose(page: Path, *, spans: bool = True) -> str:
    """The page without its fenced code blocks (and inline code spans unless ``spans``)."""
    kept: list[str] = []
    inside = False
    for line in page.read_text(encoding="utf-8").splitlines():
        if _FENCE.match(line):
            inside = not inside
        elif not inside:
            kept.append(line if spans else _CODE_SPAN.sub("", line))
    return "\n".join(kept)


def _slug(heading: str) -> str:
    """Python-Markdown's toc slug of a heading's visible text."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = re.sub(r"<[^>]+>", "", text.replace("`", "").replace("*", ""))
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


@cache
def _anchors(page: Path) -> frozenset[str]:
    """The anchors of a page's headings (a repeated slug gets ``_1``, ``_2``...)."""
    seen: dict[str, int] = {}
    found: set[str] = set()
    for line in _prose(page).splitlines():
        if match := _HEADING.match(line):
            slug = _slug(match.group(1))
            count = seen.get(slug, 0)
            seen[slug] = count + 1
            found.add(slug if count == 0 else f"{slug}_{count}")
    return frozenset(found)


def _broken(page: Path) -> list[str]:
    problems: list[str] = []
    for match in _LINK.finditer(_prose(page, spans=False)):
        target = match.group(1)
        if _SCHEME.match(target):
            continue
        path, _, fragment = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if not resolved.exists():
            problems.append(f"{target}: no such file")
        elif fragment and resolved.suffix == ".md" and fragment not in _anchors(resolved):
            problems.append(f"{target}: no heading with anchor #{fragment}")
    return problems


def test_every_relative_link_and_anchor_resolves() -> None:
    assert [f"{page.relative_to(ROOT)}: {problem}"
            for page in pages() for problem in _broken(page)] == []


def test_the_checker_finds_a_missing_page_and_a_missing_anchor(tmp_path: Path) -> None:
    (tmp_path / "other.md").write_text("# Other page\n\n## The `Retry` policy: options\n")
    page = tmp_path / "page.md"
    page.write_text(
        "# Page\n\n[ok](other.md#the-retry-policy-options) [self](#page)\n"
        "[gone](missing.md) [a multi-line\nlink](other.md#nope)\n"
        "```\n[in code](nowhere.md)\n```\n`[in a span](nowhere.md)`\n"
        "[web](https://example.org/x.md)\n"
    )
    assert _broken(page) == [
        "missing.md: no such file",
        "other.md#nope: no heading with anchor #nope",
    ]
