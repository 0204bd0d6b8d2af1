"""The Python bytecodes a piece of code runs, by function: the ``--opcodes`` modes of
``metrics.py`` and ``dataplane_layers.py``. A count that neither the machine's load nor
where objects land in memory moves, for comparing two trees of the code."""

from __future__ import annotations

import os
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any


@contextmanager
def counting() -> Iterator[Counter[str]]:
    """Count every bytecode run in this thread while the block runs, by
    ``file:function``, into the counter it yields."""
    counts: Counter[str] = Counter()

    def count(frame: FrameType, event: str, arg: Any) -> Any:
        frame.f_trace_opcodes = True
        if event == "opcode":
            code = frame.f_code
            counts[f"{os.path.basename(code.co_filename)}:{code.co_name}"] += 1
        return count

    sys.settrace(count)
    try:
        yield counts
    finally:
        sys.settrace(None)


def report(name: str, counts: Counter[str], runs: int, unit: str, most: int) -> None:
    """Print the total per run (``"<name>: N bytecodes a <unit>"``) and the ``most``
    busiest functions."""
    print(f"{name}: {sum(counts.values()) / runs:,.0f} bytecodes a {unit}")
    for where, n in counts.most_common(most):
        print(f"{n / runs:8.1f}  {where}")
