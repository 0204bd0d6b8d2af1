"""A real redis-server on a free loopback port, for the tests of meshlite.state."""

from __future__ import annotations

import socket
import subprocess
import tempfile
import time

from _system import free_port

__all__ = ["RedisServer", "free_port"]


def _pong(port: int) -> bool:
    """Whether the server answers (a NOAUTH error is an answer too)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16)[:1] in (b"+", b"-")
    except OSError:
        return False


class RedisServer:
    """``redis-server --port N --bind 127.0.0.1 --save '' --appendonly no``; no data on
    disk, so a restart comes back empty, as a crashed cache would."""

    def __init__(self, binary: str, port: int | None = None, *extra: str) -> None:
        self.binary = binary
        self.extra = extra
        self.port = free_port() if port is None else port
        self._dir = tempfile.TemporaryDirectory(prefix="meshlite-redis-")
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self._proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self._dir.name, *self.extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10.0
        while not _pong(self.port):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.01)
        return self

    def kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            proc.kill()
            proc.wait()

    def pause(self) -> None:
        """Stop the server process (SIGSTOP): it accepts connections, answers nothing."""
        assert self._proc is not None
        self._proc.send_signal(19)

    def resume(self) -> None:
        assert self._proc is not None
        self._proc.send_signal(18)

    def close(self) -> None:
        self.kill()
        self._dir.cleanup()
