"""Alert webhook: one JSON POST per service per evaluation, grouping the alerts of
that service that fired or resolved in it.

Uses the standard library (``urllib``) in a worker thread, so the dashboard extra
needs no HTTP client; the timeout bounds how long that thread lives. Failures are
logged, never raised: an unreachable receiver must not stop the dashboard.
"""

from __future__ import annotations

import asyncio
import json
import logging
import urllib.request

from ._rules import Alert

__all__ = ["group_payload", "post_alerts"]

_log = logging.getLogger("meshlite.dashboard")


def group_payload(service: str, alerts: list[Alert]) -> bytes:
    """The JSON body POSTed for one service's ``alerts``: ``{"service": ...,
    "status": "firing" | "resolved", "alerts": [...], "alert": {...}}``; ``status``
    is ``firing`` when any of them fired, ``alert`` the first of them."""
    status = "firing" if any(a.state == "firing" for a in alerts) else "resolved"
    listed = [a.as_dict() for a in alerts]
    return json.dumps({"service": service, "status": status, "alerts": listed,
                       "alert": listed[0]}).encode()


def _post(url: str, body: bytes, timeout: float) -> int:
    request = urllib.request.Request(
        url, data=body, method="POST",
        headers={"Content-Type": "application/json", "User-Agent": "meshlite-dashboard"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return int(response.status)


async def post_alerts(url: str, service: str, alerts: list[Alert], seconds: float) -> bool:
    """POST one notification of ``service``'s ``alerts`` to ``url`` within
    ``seconds``; returns whether the receiver answered 2xx.

    Never raises except on cancellation: network errors, timeouts and non-2xx
    answers are logged (without the URL's query, which may hold a secret).
    """
    where = url.split("?", 1)[0]
    try:
        status = await asyncio.to_thread(_post, url, group_payload(service, alerts), seconds)
    except (OSError, ValueError) as error:  # URLError, HTTPError and timeouts are OSErrors
        _log.warning("alert webhook %s failed for %s/%s: %s", where, service,
                     ",".join(a.rule for a in alerts), error)
        return False
    if not 200 <= status < 300:  # pragma: no cover - urllib raises HTTPError for these
        _log.warning("alert webhook %s answered %d", where, status)
        return False
    return True
