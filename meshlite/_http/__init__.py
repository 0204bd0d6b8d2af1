"""HTTP through the mesh: ``httpx`` transports that route every request.

The only module that imports ``httpx`` (``import meshlite`` does not load it;
``mesh.http()`` imports this module on first use).

For each request, :class:`MeshTransport` runs the service's pipeline around the
routing handler; each attempt picks a backend and sends a copy of the request to it,
through one pooled ``httpx`` transport per backend shared by every client of the
service. 5xx and 429 answers are raised inside the pipeline as
:class:`~meshlite.routing.ResponseStatusError` so retry, breakers and outlier
detection count them; when the pipeline gives up, the last such response is returned
(so ``raise_for_status()`` works as usual).
"""

from ._pools import http_probe_session
from ._send import IDEMPOTENT_METHODS, HttpResponseError, parse_retry_after
from ._transport import MeshTransport, SyncMeshTransport, async_client, sync_client

__all__ = [
    "IDEMPOTENT_METHODS",
    "HttpResponseError",
    "MeshTransport",
    "SyncMeshTransport",
    "async_client",
    "http_probe_session",
    "parse_retry_after",
    "sync_client",
]
