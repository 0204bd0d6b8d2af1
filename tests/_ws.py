"""websockets' clients, straight to a loopback server on every version the dashboard
extra allows: websockets 15 added ``proxy`` (by default a proxy from the environment,
which these tests turn off with ``proxy=None``); before it, a client connected directly
and took no such argument."""

from __future__ import annotations

import inspect
from typing import Any

from websockets.asyncio.client import connect as _connect
from websockets.sync.client import connect as _sync_connect

__all__ = ["connect", "sync_connect"]


def _direct(client: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
    if "proxy" not in inspect.signature(client).parameters:
        kwargs.pop("proxy", None)
    return kwargs


def connect(uri: str, **kwargs: Any) -> Any:
    """``websockets.asyncio.client.connect`` (``async with`` or ``await`` it)."""
    return _connect(uri, **_direct(_connect, kwargs))


def sync_connect(uri: str, **kwargs: Any) -> Any:
    """``websockets.sync.client.connect``."""
    return _sync_connect(uri, **_direct(_sync_connect, kwargs))
