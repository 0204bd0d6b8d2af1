"""Reading a Prometheus text exposition in tests."""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["by_label", "requests_by_status"]

REQUESTS = "meshlite_server_requests_total"


def by_label(text: str, family: str, label: str) -> dict[str, float]:
    """The samples of ``family`` in ``text``, by the value of their label ``label``."""
    found = {}
    for line in text.splitlines():
        if line.startswith(family + "{"):
            head, _, value = line.rpartition(" ")
            found[head.split(f'{label}="')[1].split('"')[0]] = float(value)
    return found


async def requests_by_status(mesh: Any, count: int) -> dict[str, float]:
    """The inbound requests ``mesh`` counted by status, once ``count`` of them are
    (or as they are after ten seconds)."""
    import meshlite as ml

    for _ in range(1000):
        found = by_label(ml.observability.render(mesh), REQUESTS, "status")
        if sum(found.values()) >= count:
            return found
        await asyncio.sleep(0.01)
    return by_label(ml.observability.render(mesh), REQUESTS, "status")
