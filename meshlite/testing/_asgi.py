"""AsgiServer: any ASGI app served by uvicorn on a free loopback port, in the
background of the running event loop (tests, examples, the multi-service demo)."""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Any

from .._arguments import explained
from .._extras import requires_extra
from .._validate import fail

__all__ = ["AsgiServer"]


@explained
class AsgiServer:
    """Serve ``app`` with uvicorn while the ``async with`` block runs.

    Args:
        app: The ASGI app.
        host: A loopback address to listen on.
        port: The port; 0 picks a free one (read it from :attr:`url`).
        lifespan: Run the app's ASGI lifespan (Starlette's ``lifespan=``, Quart's
            ``before_serving``): its startup completes before the block starts and its
            shutdown runs on exit; a startup that fails raises ``RuntimeError``.
            Default ``False``: the app only gets HTTP and WebSocket scopes.

    Example::

        async with AsgiServer(app) as server:
            r = await httpx.AsyncClient().get(server.url + "/")
    """

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0, *,
                 lifespan: bool = False) -> None:
        if not isinstance(lifespan, bool):
            fail("AsgiServer", "lifespan", lifespan, "True or False")
        self.app = app
        self.lifespan = lifespan
        self.host = host
        self.port = port
        self.url = ""
        self._server: Any = None
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> AsgiServer:
        with requires_extra("AsgiServer", "dashboard"):
            import uvicorn

            from ..observability._dashboard._uvicorn import Background, bind, start, url_of

        # log_config=None: uvicorn's default config would stop its loggers propagating
        # to the root logger for the rest of the process, hiding them from the app's
        # own logging (and from tests that capture every record).
        # ws="websockets-sansio": uvicorn's default ("auto") is its legacy websockets
        # server, which fails every handshake under websockets 13, the lowest the
        # dashboard extra allows (its handler lacks the `path` argument 13 passes).
        config = uvicorn.Config(self.app, host=self.host, port=self.port, log_level="error",
                                lifespan="on" if self.lifespan else "off", access_log=False,
                                log_config=None, ws="websockets-sansio")
        self._server = Background(config)
        sock = bind(self.host, self.port, "AsgiServer")
        self.port = sock.getsockname()[1]
        self.url = url_of(self.host, self.port)
        self._task = await start(self._server, sock, "AsgiServer")
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        tb: TracebackType | None) -> None:
        if self._task is not None:
            self._server.should_exit = True
            await asyncio.wait([self._task])
            self._task = None

    def __repr__(self) -> str:
        return f"AsgiServer({self.url or 'not started'!r})"
