"""Running a piece of a test in a forked child (a pre-fork server's worker)."""

from __future__ import annotations

import os
import select
import threading
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["in_child", "in_child_meanwhile", "in_child_while_held", "serving"]


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


def in_child_while_held(locks: list[Any], action: Callable[[], int]) -> int:
    """``in_child(action)`` forked while a thread of the parent holds ``locks`` (a
    parent's thread mid-call when the fork comes)."""
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        for lock in locks:
            lock.acquire()
        held.set()
        release.wait(15.0)
        for lock in locks:
            lock.release()

    holder = threading.Thread(target=hold)
    holder.start()
    assert held.wait(5.0)
    try:
        return in_child(action)
    finally:
        release.set()
        holder.join()


def in_child_meanwhile(child: Callable[[Callable[[], None]], int],
                       parent: Callable[[], None]) -> int:
    """:func:`in_child` of ``child(wait)``, while the parent runs ``parent`` once the
    child is running: ``wait()`` returns in the child once ``parent`` has returned
    (the child runs on, holding what it inherited, until then). The parent waits for
    the child's word, not a delay: a loaded machine may fork late."""
    started_read, started_write = os.pipe()
    read, write = os.pipe()

    def wait() -> None:
        os.read(read, 1)

    def started_then_child() -> int:
        os.write(started_write, b"1")  # what the child holds was copied at the fork
        return child(wait)

    def meanwhile() -> None:
        try:
            ready, _, _ = select.select([started_read], [], [], 10.0)
            if ready:  # (else the child failed to start: in_child says how)
                parent()
        finally:
            os.write(write, b"1")

    thread = threading.Thread(target=meanwhile)
    thread.start()
    try:
        return in_child(started_then_child)
    finally:
        thread.join()
        for fd in (started_read, started_write, read, write):
            os.close(fd)


@contextmanager
def serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """A threaded HTTP server of ``handler`` on loopback; yields its URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
