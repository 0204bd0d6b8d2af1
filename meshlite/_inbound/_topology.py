"""The service-to-service edges a mesh knows: who calls it (learned by its inbound
middleware from ``x-meshlite-caller``) and what it calls (its own services)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from ..routing._snapshot import totals_of

__all__ = ["inbound", "topology"]


def topology(mesh: Any, latest: Mapping[str, Any]) -> dict[str, Any]:
    """The ``/api/topology`` answer: this service's name and each edge ``from -> to``
    with request and error totals and rates per second.

    Args:
        mesh: The mesh (its ``name``, services and ``inbound`` middleware).
        latest: Each service's last measured second (the dashboard's sampler), whose
            ``requests``/``errors`` are the outgoing rates.
    """
    me = mesh.name or "this service"
    edges: list[dict[str, Any]] = []
    inbound = mesh.inbound
    if inbound is not None:
        for c in inbound.stats.callers(time.monotonic()):
            edges.append({"from": c["caller"], "to": me, "requests": c["requests"],
                          "errors": c["errors"], "request_rate": round(c["request_rate"], 3),
                          "error_rate": round(c["error_rate"], 3)})
    # Two totals a service, not mesh.snapshot(): at 300 services of 50 backends that
    # was 120-150 ms of the event loop for each answer, polled by every open page.
    for name, service in mesh.services_now():
        second = latest.get(name)
        requests, errors = totals_of(service)
        edges.append({"from": me, "to": name, "requests": requests, "errors": errors,
                      "request_rate": None if second is None else second.requests,
                      "error_rate": None if second is None else second.errors})
    return {"service": mesh.name, "edges": edges}


def inbound(mesh: Any) -> dict[str, Any]:
    """The ``/api/inbound`` answer: the mesh's inbound middleware's routes (requests,
    answers by status, refusals), callers and last aggregated refusal entries (as the
    dashboard's ticks carried them); empty without a middleware."""
    middleware = mesh.inbound
    if middleware is None:
        return {"enabled": False, "routes": [], "callers": [], "refusals": []}
    stats = middleware.stats
    return {"enabled": True, "routes": stats.routes(),
            "callers": stats.callers(time.monotonic()),
            "refusals": list(middleware.refusals.recent)}
