"""Running a piece of a test in a forked child (a pre-fork server's worker)."""

from __future__ import annotations

import os
import threading
import traceback
from collections.abc import Callable

__all__ = ["in_child"]


def in_child(action: Callable[[], int], timeout: float = 10.0) -> int:
    """Fork, run ``action`` in the child and return what it returned (an int; -1 when
    it raised, -2 when it did not finish within ``timeout`` seconds: it hung)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report and leave at once
        os.close(read)
        threading.Timer(timeout, lambda: (os.write(write, b"-2\n"), os._exit(1))).start()
        try:
            answer = str(action())
        except BaseException:
            traceback.print_exc()  # in the test's captured output
            answer = "-1"
        os.write(write, f"{answer}\n".encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        line = pipe.readline()
    os.waitpid(pid, 0)
    return int(line)
