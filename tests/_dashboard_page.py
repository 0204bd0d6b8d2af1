"""What the tests of the dashboard page in Chromium share: calls that answer or fail,
and a bounded wait for a condition (no timed assertion)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

__all__ = ["WAIT", "broken", "ok", "until"]

WAIT = 30.0  # seconds: a bound for a loaded machine's browser, not an expectation


async def ok(backend: Any) -> str:
    return "ok"


async def broken(backend: Any) -> str:
    raise ConnectionError("refused")


async def until(what: str, check: Any) -> None:
    """Wait until ``await check()`` is true, at most :data:`WAIT` seconds."""
    deadline = time.monotonic() + WAIT
    while not await check():
        assert time.monotonic() < deadline, f"not within {WAIT} s: {what}"
        await asyncio.sleep(0.05)
