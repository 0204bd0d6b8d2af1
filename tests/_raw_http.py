"""Requests written as bytes, for what httpx would re-encode or refuse (raw paths,
non-ASCII header bytes)."""

from __future__ import annotations

import asyncio

__all__ = ["raw_get"]


async def raw_get(url: str, target: bytes, headers: bytes = b"") -> bytes:
    """The status line of a GET of ``target`` sent as bytes to ``url``'s host."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"GET " + target + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                 + headers + b"\r\n")
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return answer.split(b"\r\n", 1)[0]
