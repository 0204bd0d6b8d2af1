"""Plain-text output for the command line: a progress bar and tables, no dependencies."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TextIO

__all__ = ["Progress", "render_table"]


class Progress:
    """A progress bar on a terminal; on a pipe or file, a line at every quarter."""

    def __init__(self, total: int, label: str, stream: TextIO | None = None, width: int = 30):
        self.total = max(1, total)
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self.done = 0
        self._tty = self.stream.isatty()
        self._last_quarter = -1

    def advance(self, n: int = 1) -> None:
        """Mark ``n`` more units done and redraw."""
        self.done = min(self.total, self.done + n)
        if self._tty:
            filled = self.width * self.done // self.total
            bar = "#" * filled + "-" * (self.width - filled)
            self.stream.write(f"\r{self.label} [{bar}] {self.done}/{self.total}")
            if self.done == self.total:
                self.stream.write("\n")
            self.stream.flush()
            return
        quarter = 4 * self.done // self.total
        if quarter != self._last_quarter:
            self._last_quarter = quarter
            self.stream.write(f"{self.label}: {self.done}/{self.total} ({25 * quarter}%)\n")
            self.stream.flush()


def render_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Render rows as an aligned text table (first column left, others right)."""
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        parts = [row[0].ljust(widths[0])]
        parts += [cell.rjust(w) for cell, w in zip(row[1:], widths[1:], strict=True)]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), rule, *(line(r) for r in cells[1:])])
