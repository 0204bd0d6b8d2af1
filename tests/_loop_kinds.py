"""The event loops the HTTP layer's loop tests run on: asyncio's own and uvloop's
(the loop uvicorn[standard] installs for the whole process), set as the process's
loop policy for one test (tests/conftest.py puts asyncio's back after it).

A module parametrizes its tests with a fixture of its own::

    @pytest.fixture(params=LOOP_KINDS, autouse=True)
    def loop_kind(request: pytest.FixtureRequest) -> str:
        return use_loop_kind(request.param)
"""

from __future__ import annotations

import asyncio

import pytest

__all__ = ["LOOP_KINDS", "use_loop_kind"]

LOOP_KINDS = ["asyncio", "uvloop"]


def use_loop_kind(kind: str) -> str:
    """Make ``kind`` the loop of every loop made from now on in the test (``asyncio.run``,
    ``asyncio.new_event_loop``, on any thread); ``kind`` back."""
    if kind == "uvloop":
        uvloop = pytest.importorskip("uvloop")  # the dev extra has it (not on Windows)
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    else:
        asyncio.set_event_loop_policy(None)
    return kind
