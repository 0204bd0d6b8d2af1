"""Route patterns compiled to matchers: ``{name}`` one path segment, ``*`` anything,
matched in time proportional to the path's length whatever the pattern."""

from __future__ import annotations

import re
from collections.abc import Callable

__all__ = ["matcher"]


def matcher(pattern: str) -> Callable[[str], bool]:
    """Whether a path matches ``pattern``: ``*`` anything (newlines included), ``{name}``
    one segment's characters (at least one), the rest itself; a final newline is let
    through, as the ``$`` ending the frameworks' own route regexes lets it (Starlette
    serves ``/admin/users\\n`` as ``/admin/users``: a route that did not match it would
    be a way around its checks).

    The regex looks at each character of the path a number of times the pattern
    bounds, not the path: a plain regex tries every split of the path at each star
    and ``{name}``, a power of the path's length (0.16 s for an 8 KB path against
    ``/*{a}.json``; cubic with three stars). Between two stars a piece is taken where
    it ends first (a star follows, which takes whatever a later end would leave); a
    piece with a ``{name}`` after a star is tried once per segment it may start in,
    found by whole segments (a ``{name}`` cannot cross a slash); a ``{name}`` followed
    by text is taken up to that text's first place, except that the text ending a
    segment must end it.
    """
    if "*" not in pattern and "{" not in pattern:
        return frozenset({pattern, pattern + "\n"}).__contains__
    first, *stars = pattern.split("*")
    if not stars:
        regex = "/".join(_full(s) for s in _segments(first))
    else:
        regex = _ahead(_segments(first))
        for piece in stars[:-1]:
            regex += _after_star(piece, last=False)
        regex += _after_star(stars[-1], last=True)
    compiled = re.compile(regex + r"\n?\Z", re.DOTALL)
    return lambda path: compiled.match(path) is not None


_SKIP = "(?:[^/]*+/)*?"  # whole segments, fewest first: where a piece after a star starts


def _after_star(piece: str, *, last: bool) -> str:
    """The regex of a star and the piece after it (up to the next star, or the end)."""
    segments = _segments(piece)
    if all(len(s) == 1 for s in segments):  # no {name}: one compare per place
        return ".*" + re.escape(piece) if last else f"(?>.*?{re.escape(piece)})"
    return _behind(segments) if last else f"(?>{_SKIP}{_ahead(segments, starting=True)})"


def _segments(piece: str) -> list[list[str]]:
    """A piece's segments (split at its slashes), each as the texts around its
    ``{name}``s: ``"{y}-{m}.json"`` is ``["", "-", ".json"]``."""
    return [_SEGMENT.split(s)[::2] for s in piece.split("/")]


def _full(texts: list[str]) -> str:
    """A whole segment: each text inside it at its first place (a ``{name}`` follows,
    which takes what a later place would leave), the last one at the segment's end."""
    regex = re.escape(texts[0])
    for text in texts[1:-1]:
        regex += f"(?>[^/]+?{re.escape(text)})" if text else "[^/]"
    if len(texts) > 1:
        regex += f"(?>[^/]+{re.escape(texts[-1])})" if texts[-1] else "[^/]++"
    return regex


def _shortest(texts: list[str]) -> str:
    """The start of a segment, its shortest match (a star follows)."""
    return re.escape(texts[0]) + "".join(
        f"(?>[^/]+?{re.escape(text)})" if text else "[^/]" for text in texts[1:])


def _ending(texts: list[str], end: str) -> str:
    """The end of a segment (``end`` follows): its first text at its first place from
    here (a ``{name}`` follows it), or, alone, where it ends the segment."""
    if len(texts) == 1:
        return f"(?>[^/]*?{re.escape(texts[0])}(?={end}))"
    return f"(?>[^/]*?{re.escape(texts[0])})" + _full(["", *texts[1:]])


def _ahead(segments: list[list[str]], *, starting: bool = False) -> str:
    """A piece a star follows, ending as early as it can: from here (the pattern's
    first piece) or, ``starting`` anywhere in this segment (the piece after a star)."""
    *whole, last = segments
    if not whole:
        return f"(?>[^/]*?{re.escape(last[0])})" + _shortest(["", *last[1:]])
    head = _ending(whole[0], "/") if starting else _full(whole[0])
    return "/".join([head, *(_full(s) for s in whole[1:]), _shortest(last)])


def _behind(segments: list[list[str]]) -> str:
    """The piece after the last star, which ends the path: it starts in the segment
    that has as many slashes after it as the piece has."""
    head = _ending(segments[0], "/" if len(segments) > 1 else r"\n?\Z")
    return _SKIP + "/".join([head, *(_full(s) for s in segments[1:])])


_SEGMENT = re.compile(r"(\{[^}/]+\})")
