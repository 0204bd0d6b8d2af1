"""AsgiServer: any ASGI app served by uvicorn on a free loopback port, in the
background of the running event loop (tests, examples, the multi-service demo)."""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Any

from .._arguments import explained
from .._extras import requires_extra

__all__ = ["AsgiServer"]


@explained
class AsgiServer:
    """Serve ``app`` with uvicorn while the ``async with`` block runs.

    Args:
        app: The ASGI app.
        host: A loopback address to listen on.
        port: The port; 0 picks a free one (read it from :attr:`url`).

    Example::

        async with AsgiServer(app) as server:
            r = await httpx.AsyncClient().get(server.url + "/")
    """

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.url = ""
        self._server: Any = None
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> AsgiServer:
        with requires_extra("AsgiServer", "dashboard"):
            import uvicorn

            from ..observability._dashboard._server import _Background, _bind, _start, _url

        # log_config=None: uvicorn's default config would stop its loggers propagating
        # to the root logger for the rest of the process, hiding them from the app's
        # own logging (and from tests that capture every record).
        config = uvicorn.Config(self.app, host=self.host, port=self.port, log_level="error",
                                lifespan="off", access_log=False, log_config=None)
        self._server = _Background(config)
        sock = _bind(self.host, self.port)
        self.port = sock.getsockname()[1]
        self.url = _url(self.host, self.port)
        self._task = await _start(self._server, sock)
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        tb: TracebackType | None) -> None:
        if self._task is not None:
            self._server.should_exit = True
            await asyncio.wait([self._task])
            self._task = None

    def __repr__(self) -> str:
        return f"AsgiServer({self.url or 'not started'!r})"
