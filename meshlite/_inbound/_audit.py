"""Audit of refused requests (auth failures, exhausted quotas), rate-limited: under
attack a client yields one record per interval carrying how many it stood for, never
one record per request."""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable

__all__ = ["DEFAULT_AUDIT_INTERVAL", "RefusalAudit"]

DEFAULT_AUDIT_INTERVAL = 60.0
"""Seconds between two records of one (action, client) pair."""

_MAX_KEYS = 1024  # pairs remembered; the least recent is forgotten first
_log = logging.getLogger("meshlite.inbound.audit")


class RefusalAudit:
    """Writes refusals to the ``meshlite.inbound.audit`` logger (WARNING, structured
    ``extra``) and to an :class:`meshlite.AuditLog` when given.

    Args:
        log: An ``ml.AuditLog`` to append records to, or None.
        interval: Seconds between records of one (action, client) pair.
        clock: ``monotonic()`` seconds (injected by tests).
    """

    def __init__(self, log: object = None, *, interval: float = DEFAULT_AUDIT_INTERVAL,
                 clock: Callable[[], float]) -> None:
        self.log = log
        self.interval = interval
        self._clock = clock
        self._seen: OrderedDict[tuple[str, str], list[float]] = OrderedDict()

    def refused(self, action: str, client: str, route: str, status: int) -> bool:
        """Note one refusal; returns whether a record was written for it."""
        key = (action, client)
        now = self._clock()
        seen = self._seen.get(key)
        if seen is not None:
            self._seen.move_to_end(key)
            seen[1] += 1
            if now - seen[0] < self.interval:
                return False
            count, seen[0], seen[1] = int(seen[1]), now, 0.0
        else:
            self._seen[key] = [now, 0.0]
            count = 1
            if len(self._seen) > _MAX_KEYS:
                self._seen.popitem(last=False)
        details = {"client": client, "route": route, "status": status, "count": count}
        _log.warning("inbound %s: %s on %s (%d since the last record)", action, client,
                     route, count, extra={"meshlite_" + k: v for k, v in details.items()})
        record = getattr(self.log, "record", None)
        if record is not None:
            record(actor=client, action=f"inbound.{action}", target=route, result="error",
                   error=f"answered {status}", details=details)
        return True
