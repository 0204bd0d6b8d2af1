"""The headers meshlite reads on the way in and writes on the way out.

Deadline: ``x-meshlite-deadline`` carries the milliseconds the caller has left for
the whole request (a decimal number, ``"1500"`` or ``"1500.5"``), measured when the
request is sent, so neither side's wall clock matters. gRPC's ``grpc-timeout``
(``"<digits><unit>"``, unit one of ``H M S m u n``) is accepted too. Caller: the
calling mesh's service name, in ``x-meshlite-caller``.

:func:`stamp_outgoing` is the one function the HTTP layer calls to add both to every
routed request.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, MutableMapping
from typing import Any

__all__ = [
    "CALLER_HEADER",
    "DEADLINE_HEADER",
    "GRPC_TIMEOUT_HEADER",
    "NOTHING",
    "format_budget",
    "parse_budget",
    "parse_grpc_timeout",
    "scan",
    "stamp_outgoing",
]

DEADLINE_HEADER = "x-meshlite-deadline"
"""Milliseconds the request has left, as a decimal number."""

GRPC_TIMEOUT_HEADER = "grpc-timeout"
"""gRPC's timeout header, accepted on the way in."""

CALLER_HEADER = "x-meshlite-caller"
"""The service name of the mesh that sent the request."""

# \Z, not $ (which also matches before a final newline); [0-9], not \d (any
# Unicode digit).
_GRPC = re.compile(r"([0-9]{1,8})([HMSmun])\Z")  # the gRPC spec: at most 8 digits
_GRPC_UNITS = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}
_CALLER = re.compile(r"[A-Za-z0-9._-]{1,128}\Z")
_BUDGET = re.compile(r"[0-9]{1,15}(?:\.[0-9]{1,9})?\Z")  # up to 30,000 years of ms


def parse_grpc_timeout(value: str) -> float | None:
    """Seconds from a ``grpc-timeout`` value (``"250m"``), or None when malformed."""
    found = _GRPC.match(value.strip())
    if found is None:
        return None
    return int(found.group(1)) * _GRPC_UNITS[found.group(2)]


def parse_budget(value: str) -> float | None:
    """Seconds from an ``x-meshlite-deadline`` value (milliseconds), or None when
    malformed: not a decimal number of ASCII digits with an optional fraction
    (``"1500"``, ``"1500.5"``). Python's ``float`` would also take ``"1e3"``,
    ``"1_000"``, ``"+5"`` or ``"infinity"``, which no mesh sends; another reader of
    the header would not agree with it on their value."""
    value = value.strip()
    if _BUDGET.match(value) is None:
        return None
    return float(value) / 1000.0


def format_budget(seconds: float) -> str:
    """The ``x-meshlite-deadline`` value for ``seconds`` left (whole milliseconds,
    rounded down so a callee never believes it has more time than it has)."""
    return str(max(0, math.floor(seconds * 1000.0)))


def valid_caller(value: str) -> str | None:
    """``value`` when it is a plausible service name, else None (so a forged header
    cannot put arbitrary text into metrics labels or the dashboard)."""
    return value if _CALLER.match(value) else None


def stamp_outgoing(headers: MutableMapping[str, str], left: float | None,
                   caller: str | None) -> None:
    """Add the remaining budget and the caller's name to an outgoing request's headers.

    Args:
        headers: The request's headers (an ``httpx.Headers`` or any mutable mapping).
        left: Seconds the call has left, or None without a deadline.
        caller: The calling mesh's service name, or None when it has none.
    """
    if left is not None:
        headers[DEADLINE_HEADER] = format_budget(left)
    if caller is not None:
        headers[CALLER_HEADER] = caller


_RAW_DEADLINE = DEADLINE_HEADER.encode()
_RAW_GRPC_TIMEOUT = GRPC_TIMEOUT_HEADER.encode()
_RAW_CALLER = CALLER_HEADER.encode()
_RAW_CONTEXT = frozenset({b"traceparent", b"tracestate", b"baggage"})
_RAW_READ = frozenset({_RAW_DEADLINE, _RAW_GRPC_TIMEOUT, _RAW_CALLER, *_RAW_CONTEXT})


NOTHING: tuple[float | None, str | None, bool] = (None, None, False)
"""What :func:`scan` returns, this very object, when none of its headers came."""


def _sooner(kept: str | None, value: str, parse: Callable[[str], float | None]) -> str:
    """Of a repeated deadline header, the value giving the smaller valid budget (a
    malformed one counts as absent): a repeat, a hop's own or a client's, can
    shorten the budget, never lengthen it. A line a proxy folded (``500, 300``, as
    RFC 9110 allows for repeated fields) counts as its values repeated."""
    if "," in value:
        for part in value.split(","):
            kept = _sooner(kept, part.strip(), parse)
        return kept if kept is not None else value
    if kept is None:
        return value
    first, other = parse(kept), parse(value)
    return value if other is not None and (first is None or other < first) else kept


def scan(raw: Any) -> tuple[float | None, str | None, bool]:
    """The budget (seconds), the caller's name and whether W3C trace context came,
    from the raw ASGI headers, read without decoding the others (:data:`NOTHING`
    itself when none of them came)."""
    deadline = grpc = caller = None
    context = False
    for name, value in raw:
        if name in _RAW_READ:
            if name == _RAW_DEADLINE:
                deadline = _sooner(deadline, value.decode("latin-1"), parse_budget)
            elif name == _RAW_GRPC_TIMEOUT:
                grpc = _sooner(grpc, value.decode("latin-1"), parse_grpc_timeout)
            elif name == _RAW_CALLER:
                caller = value.decode("latin-1")
            else:
                context = True
    if deadline is None and grpc is None and caller is None and not context:
        return NOTHING
    budget = None if deadline is None else parse_budget(deadline)
    if budget is None and grpc is not None:  # a malformed deadline header counts as none
        budget = parse_grpc_timeout(grpc)
    return budget, caller, context
