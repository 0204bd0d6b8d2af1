"""The OTLP exporters' HTTP session, safe across a fork: :func:`exporter_session`.

The OTLP/HTTP exporters send through a ``requests.Session``, whose pool keeps its
connection to the collector alive. A process forked after an export (a pre-fork
server's worker, a Celery prefork pool, ``multiprocessing`` with the fork start
method) inherits that connection, and its exports went out on the parent's socket,
two processes' requests interleaving on one connection. The session meshlite gives
its exporters starts afresh in a forked child: new adapters, and the child's copies
of the parent's sockets closed (without the pools' locks, which the parent's export
thread may have held at the fork: ``_http._inherited``).
"""

from __future__ import annotations

import os

import requests

from .._fork import after_fork_in_child
from .._http._inherited import close_inherited

__all__ = ["ForkSafeSession", "exporter_session"]


class ForkSafeSession(requests.Session):
    """A ``requests.Session`` whose forked children open connections of their own."""

    def __init__(self) -> None:
        super().__init__()
        after_fork_in_child(self)

    def after_fork(self) -> None:
        """In a forked child: fresh adapters; the inherited ones' sockets closed."""
        inherited = list(self.adapters.values())
        for prefix in list(self.adapters):
            self.mount(prefix, requests.adapters.HTTPAdapter())
        close_inherited(inherited)


def exporter_session(signal: str) -> ForkSafeSession | None:
    """The session for the OTLP/HTTP exporter of ``signal`` (``"TRACES"`` or
    ``"METRICS"``), or None when the environment names a credential provider (a
    session of the user's, which the exporter then builds)."""
    for name in (f"OTEL_PYTHON_EXPORTER_OTLP_HTTP_{signal}_CREDENTIAL_PROVIDER",
                 "OTEL_PYTHON_EXPORTER_OTLP_HTTP_CREDENTIAL_PROVIDER"):
        if os.environ.get(name, "").strip():
            return None
    return ForkSafeSession()
