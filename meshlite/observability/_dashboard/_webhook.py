"""Alert webhook: one JSON POST per fired or resolved alert.

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

__all__ = ["alert_payload", "post_alert"]

_log = logging.getLogger("meshlite.dashboard")


def alert_payload(alert: Alert) -> bytes:
    """The JSON body POSTed for ``alert``: ``{"status": ..., "alert": {...}}``."""
    return json.dumps({"status": alert.state, "alert": alert.as_dict()}).encode()


def _post(url: str, body: bytes, timeout: float) -> int:
    request = urllib.request.Request(
        url, data=body, method="POST",
        headers={"Content-Type": "application/json", "User-Agent": "meshlite-dashboard"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return int(response.status)


async def post_alert(url: str, alert: Alert, seconds: float) -> bool:
    """POST ``alert`` to ``url`` within ``seconds``; returns whether the receiver
    answered 2xx.

    Never raises except on cancellation: network errors, timeouts and non-2xx
    answers are logged (without the URL's query, which may hold a secret).
    """
    where = url.split("?", 1)[0]
    try:
        status = await asyncio.to_thread(_post, url, alert_payload(alert), seconds)
    except (OSError, ValueError) as error:  # URLError, HTTPError and timeouts are OSErrors
        _log.warning("alert webhook %s failed for %s/%s: %s", where, alert.service,
                     alert.rule, error)
        return False
    if not 200 <= status < 300:  # pragma: no cover - urllib raises HTTPError for these
        _log.warning("alert webhook %s answered %d", where, status)
        return False
    return True
