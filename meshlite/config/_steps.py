"""Work done in steps: a generator that yields between units of work (a service
validated, built or prepared) and returns its result. :func:`drain` runs one in a
go; :func:`in_slices` runs one on an event loop a slice at a time, letting the loop
serve calls between slices, so a large reload never holds it up for long."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Generator
from typing import TypeVar

__all__ = ["SLICE_SECONDS", "Steps", "drain", "in_slices"]

T = TypeVar("T")

Steps = Generator[None, None, T]
"""Work that yields between its units and returns a ``T``."""

SLICE_SECONDS = 0.001
"""Longest run of steps on the event loop between two turns of it (one step more
may end a slice: a step is one service, some tens of microseconds)."""


def drain(steps: Steps[T]) -> T:
    """Run ``steps`` to the end, without pausing; returns its result."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            result: T = done.value
            return result


async def in_slices(steps: Steps[T], seconds: float | None = None) -> T:
    """Run ``steps`` on the running event loop, yielding to it whenever a slice has
    run ``seconds`` (default :data:`SLICE_SECONDS`); returns its result."""
    budget = SLICE_SECONDS if seconds is None else seconds
    clock = time.perf_counter
    end = clock() + budget
    while True:
        try:
            next(steps)
        except StopIteration as done:
            result: T = done.value
            return result
        if clock() >= end:
            await asyncio.sleep(0)
            end = clock() + budget
