"""A loopback proxy in front of a real redis-server that can hold Redis's replies back
and let them go at a moment the test picks: a reply that Redis sent in time but that
reaches the store when the test says."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable

__all__ = ["ReplyGate"]


class ReplyGate:
    """Forwards each connection to ``127.0.0.1:port``; while :meth:`hold` is on, the
    replies Redis sends are kept (``on_held`` is called, from the proxy's thread, as
    each one arrives) until :meth:`release`."""

    def __init__(self, port: int) -> None:
        self._target = port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._holding = False
        self._on_held: Callable[[], object] | None = None
        self._held: list[tuple[socket.socket, bytes]] = []
        self._sockets: list[socket.socket] = [self._listener]
        self._threads: list[threading.Thread] = []
        self._start(self._accept)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def hold(self, on_held: Callable[[], object] | None = None) -> None:
        """Keep the replies from now on."""
        with self._lock:
            self._holding, self._on_held = True, on_held

    def release(self) -> None:
        """Send the kept replies to the store (they are in its socket on return) and
        stop keeping them."""
        with self._lock:
            self._holding = False
            held, self._held = self._held, []
            for client, data in held:
                client.sendall(data)

    def close(self) -> None:
        for s in self._sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()
        for t in self._threads:
            t.join(10.0)

    def _start(self, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:  # closed
                return
            upstream = socket.create_connection(("127.0.0.1", self._target))
            with self._lock:
                self._sockets += [client, upstream]
            self._start(self._pump, client, upstream, False)
            self._start(self._pump, upstream, client, True)

    def _pump(self, source: socket.socket, sink: socket.socket, replies: bool) -> None:
        while True:
            try:
                data = source.recv(65536)
            except OSError:
                data = b""
            if not data:
                with contextlib.suppress(OSError):
                    sink.shutdown(socket.SHUT_WR)
                return
            with self._lock:
                held = replies and self._holding
                if held:
                    self._held.append((sink, data))
                    on_held = self._on_held
                else:
                    try:
                        sink.sendall(data)
                    except OSError:
                        return
            if held and on_held is not None:
                on_held()
