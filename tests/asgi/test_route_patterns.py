"""Route patterns: they match what the frameworks' own route regexes match, and the
work of matching a long path grows with its length, not a power of it (counted in
CPU instructions under valgrind's callgrind, which the machine's load does not move)."""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
from collections.abc import Callable

from _system import require_program

from meshlite._inbound._patterns import matcher


def reference(pattern: str) -> Callable[[str], bool]:
    """The pattern as a framework's backtracking route regex: ``{name}`` one segment's
    characters, ``*`` anything, ``$`` (a final newline let through)."""
    regex = ""
    for i, part in enumerate(re.split(r"(\*|\{[^}/]+\})", pattern)):
        regex += (".*" if part == "*" else "[^/]+") if i % 2 else re.escape(part)
    compiled = re.compile(regex + r"\n?\Z", re.DOTALL)
    return lambda path: compiled.match(path) is not None


def instance(pattern: str, rnd: random.Random) -> str:
    """A path made from ``pattern`` (stars and names filled in), often altered by a
    character, sometimes ending in a newline."""
    path = ""
    for i, part in enumerate(re.split(r"(\*|\{[^}/]+\})", pattern)):
        if i % 2 == 0:
            path += part
        else:
            chars, least = ("/ab-.x", 0) if part == "*" else ("ab-.x", 1)
            path += "".join(rnd.choice(chars) for _ in range(rnd.randint(least, 5)))
    if rnd.random() < 0.3:
        at = rnd.randrange(len(path) + 1)
        path = path[:at] + rnd.choice("/ab-.x\n") + path[at:]
    return path + ("\n" if rnd.random() < 0.1 else "")


def test_patterns_match_what_the_frameworks_route_regexes_match() -> None:
    # Texts after a name that also occur inside it (`/{a}-b` and `/x-bb-b`, as
    # Starlette serves it with a = "x-bb") are where a faster matcher goes wrong.
    rnd = random.Random(20_240)
    pieces = ["/", "a", "b", "-", "ab", "a-", "*", "{n}", "{m}"]
    checked = matched = 0
    for _ in range(3_000):
        pattern = "/" + "".join(rnd.choice(pieces) for _ in range(rnd.randint(0, 8)))
        if "//" in pattern:
            continue
        ours, theirs = matcher(pattern), reference(pattern)
        for _ in range(30):
            path = instance(pattern, rnd)
            if "//" in path:  # (the table makes doubled slashes one first)
                continue
            expected = theirs(path)
            assert ours(path) == expected, (pattern, path, expected)
            checked += 1
            matched += expected
    assert checked > 50_000  # both answers well covered
    assert matched > checked / 3


# Pattern shapes and a crafted path for each, a unit repeated between a start and
# an end it is refused with, or one it matches with: a name after a star (in the
# piece after the last one, or between two), several stars, names in one segment.
SHAPES = [("/*{a}.json", "/", "a", "", ".json"), ("/*{a}/x", "/", "a", "", "/x"),
          ("/*{a}x*", "/", "a", "", "x"), ("/*/{a}/b/*", "/", "a/", "", "b/"),
          ("/a/*/b/*/c/*/d", "/a/", "/b//c/", "", "/d"),
          ("/*{a}-{b}-{c}.x", "/", "-", "", "a-b-c.x"),
          ("/reports/{y}-{m}-{d}", "/reports/", "-", "/x", "")]

CHILD = """
import sys
from meshlite._inbound._patterns import matcher
size = int(sys.argv[1])
for pattern, start, unit, refused, matched in (s.split("|") for s in sys.argv[2:]):
    match = matcher(pattern)
    body = start + unit * (size // len(unit))
    print(match(body + refused), match(body + matched))
"""


def instructions(valgrind: str, size: int) -> tuple[int, list[str]]:
    """The instructions the regex engine ran for every shape's two paths of about
    ``size`` characters (one child process under callgrind, counting in the engine's
    match call only), and what the matches answered."""
    run = subprocess.run(
        [valgrind, "--tool=callgrind", "--callgrind-out-file=/dev/null",
         "--collect-atstart=no", "--toggle-collect=*SRE_Pattern_match*",
         sys.executable, "-c", CHILD, str(size), *("|".join(s) for s in SHAPES)],
        capture_output=True, text=True, timeout=600,
        env={**os.environ, "PYTHONHASHSEED": "0"}, check=True)
    counted = re.search(r"Collected : (\d+)", run.stderr)
    assert counted, run.stderr[-2000:]
    return int(counted.group(1)), run.stdout.splitlines()


def test_a_long_path_costs_work_in_proportion_to_its_length() -> None:
    valgrind = require_program("valgrind", "valgrind")
    base, _ = instructions(valgrind, 0)  # start-up's own matches, and the calls
    kilobyte, answers = instructions(valgrind, 1 << 10)
    assert answers == ["False True"] * len(SHAPES)
    per_kilobyte = kilobyte - base
    assert per_kilobyte > 0, "no instructions counted in the match call (no symbols?)"
    # Checked at 4 KB first: a power of the length (16x at 4 KB) fails here in
    # seconds, where the 64 KB paths would run for hours under callgrind.
    four, _ = instructions(valgrind, 4 << 10)
    assert four - base < 6 * per_kilobyte, (four - base) / per_kilobyte
    sixty_four, answers = instructions(valgrind, 64 << 10)
    assert answers == ["False True"] * len(SHAPES)
    assert sixty_four - base < 96 * per_kilobyte, (sixty_four - base) / per_kilobyte
