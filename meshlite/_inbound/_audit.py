"""Audit of refused requests (auth failures, exhausted quotas), rate-limited: under
attack a client yields one record per interval carrying how many it stood for, and
past :data:`MAX_CLIENT_RECORDS` clients in an interval the rest share one record, so
an attack from many addresses never writes one record per request either."""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable

__all__ = ["DEFAULT_AUDIT_INTERVAL", "MAX_CLIENT_RECORDS", "OTHER_CLIENTS", "RefusalAudit"]

DEFAULT_AUDIT_INTERVAL = 60.0
"""Seconds between two records of one (action, client) pair."""

MAX_CLIENT_RECORDS = 100
"""Records of one action in one interval that name their client; past them, clients
share the :data:`OTHER_CLIENTS` record (addresses are cheap to an attacker: IPv6
ranges, a proxy's ``X-Forwarded-For``)."""

OTHER_CLIENTS = "(other clients)"
"""The client of the record standing for the clients past :data:`MAX_CLIENT_RECORDS`."""

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
        self._written: dict[str, list[float]] = {}  # action -> [interval start, records]

    def refused(self, action: str, client: str, route: str, status: int) -> bool:
        """Note one refusal; returns whether a record was written for it."""
        key = (action, client)
        now = self._clock()
        seen = self._seen.get(key)
        if (seen is None or now - seen[0] >= self.interval) and self._spent(action, now):
            client = OTHER_CLIENTS
            key = (action, client)
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
        if client != OTHER_CLIENTS:
            self._written[action][1] += 1
        details = {"client": client, "route": route, "status": status, "count": count}
        _log.warning("inbound %s: %s on %s (%d since the last record)", action, client,
                     route, count, extra={"meshlite_" + k: v for k, v in details.items()})
        record = getattr(self.log, "record", None)
        if record is not None:
            record(actor=client, action=f"inbound.{action}", target=route, result="error",
                   error=f"answered {status}", details=details)
        return True

    def _spent(self, action: str, now: float) -> bool:
        """Whether ``action``'s records naming their client are used up for the
        current interval (one starts when the last one is over)."""
        written = self._written.get(action)
        if written is None or now - written[0] >= self.interval:
            written = self._written[action] = [now, 0.0]
        return written[1] >= MAX_CLIENT_RECORDS
