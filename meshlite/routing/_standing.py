"""An endpoint's standing: its outlier-detection and health-check state.

The base class of :class:`~meshlite.routing._endpoint.Endpoint` that holds the fields
routing's judges write and the rotation reads: outlier detection
(:mod:`meshlite.routing._outlier`) and the service's health checker
(:mod:`meshlite.routing._health`). Routing reads them only when an endpoint's
standing changes, never per attempt.
"""

from __future__ import annotations

from collections import deque

__all__ = ["Standing"]


class Standing:
    """The outlier and health state of one endpoint (a base of ``Endpoint``).

    The streak and the window move under the endpoint's lock: a success in
    ``Endpoint.succeeded`` (with the rest of the attempt's bookkeeping), a failure
    in outlier detection's ``failed``. Outlier detection writes the ejection fields
    under the service's lock; the health checker writes the health fields.

    Attributes:
        consecutive_failures: Attempts failed in a row (outlier detection's streak).
        outcomes: The recent attempts' outcomes (True: failed) while outlier
            detection keeps a failure-rate window for it; None otherwise.
        ejected_until: When the current ejection ends on the service clock
            (``math.inf`` when ejected by hand for good); None while not ejected.
        ejected_reason: Why it was last ejected.
        ejections: The ejection count that multiplies the base ejection time; time
            back in rotation earns it down.
        returned_at: When it last returned from an ejection; None before that.
        healthy: Whether the health check counts it healthy.
        health_reason: What its last failed health probe said.
        health_successes: Health probes passed in a row.
        health_failures: Health probes failed in a row.
    """

    __slots__ = (
        "consecutive_failures",
        "ejected_reason",
        "ejected_until",
        "ejections",
        "health_failures",
        "health_reason",
        "health_successes",
        "healthy",
        "outcomes",
        "returned_at",
    )

    def __init__(self) -> None:
        self.consecutive_failures = 0
        self.outcomes: deque[bool] | None = None
        self.ejected_until: float | None = None
        self.ejected_reason = ""
        self.ejections = 0
        self.returned_at: float | None = None
        self.healthy = True
        self.health_reason = ""
        self.health_successes = 0
        self.health_failures = 0
