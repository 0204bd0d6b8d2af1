"""Sync connection pools a forked child inherited: closed there without a lock.

A pre-fork server's worker (gunicorn's ``gthread`` and sync workers with
``preload_app``, a Celery prefork pool, ``multiprocessing`` with the fork start
method) starts with a copy of its parent's pools. Their keep-alive connections are
the parent's sockets: a child sending on one writes into the parent's connection
(two processes' requests and responses interleave on one socket). The child must
never use them, and closes its copies of the sockets (closing a descriptor the
parent still holds sends nothing: the connection stays the parent's).

Closing goes round the pools' own ``close()``: that takes the pools' locks, and a
lock a parent's thread held at the fork stays held in the child for good (the
thread is not there to release it). The child has one thread, so nothing else
reads these objects while they are walked.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import Any

__all__ = ["close_inherited"]


def close_inherited(transports: Iterable[Any]) -> None:
    """Close the sockets of ``transports`` (urllib3 wires, httpx's own sync
    transports, ``requests`` adapters) in this forked child, taking none of their
    locks."""
    for transport in transports:
        for connection in _connections(transport):
            with contextlib.suppress(Exception):  # best effort: a socket is a socket
                connection.close()


def _connections(transport: Any) -> list[Any]:
    manager = (getattr(transport, "_manager", None)  # a Urllib3Transport
               or getattr(transport, "poolmanager", None))  # a requests HTTPAdapter
    if manager is not None:
        pools = list(getattr(manager.pools, "_container", {}).values())
        found = [c for p in pools for c in list(getattr(p.pool, "queue", ()) or ())]
        return [c for c in found if c is not None]
    pool = getattr(transport, "_pool", None)  # httpx.HTTPTransport's httpcore pool
    return list(getattr(pool, "_connections", ()))
