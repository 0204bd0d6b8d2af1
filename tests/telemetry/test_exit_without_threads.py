"""Telemetry's flush at exit where the interpreter starts no thread any more (Python
3.12.0 and 3.12.1 refuse ``Thread.start()`` in exit hooks): the shutdowns run in the
exiting thread, and the exit prints no traceback."""

from __future__ import annotations

import subprocess
import sys
import textwrap

CHILD = textwrap.dedent("""
    import atexit, threading

    from meshlite.telemetry import _bounded

    def shutdown(timeout_millis):
        print("shut down", flush=True)

    def flush(timeout_millis):
        pass

    _bounded.shut_down_at_exit(object(), shutdown, flush)

    def refuse(*args, **kwargs):
        raise RuntimeError("can't create new thread at interpreter shutdown")

    # Registered after meshlite's hook, so it runs before it (exit hooks run last
    # first): from then on no thread starts, as at a 3.12.1 interpreter's exit.
    atexit.register(setattr, threading, "_start_new_thread", refuse)
""")


def test_the_exit_flush_runs_where_no_thread_can_start() -> None:
    done = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["shut down"]
    assert "Traceback" not in done.stderr, done.stderr
