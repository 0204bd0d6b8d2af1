"""HTTP through the mesh: the ``httpx`` transports behind ``mesh.http()`` and
``mesh.http_sync()``.

Importing this module imports ``httpx`` (``import meshlite`` does not). Most code
never needs it: ``mesh.http("users")`` returns a ready ``httpx.AsyncClient``.
"""

from ._http import (
    IDEMPOTENT_METHODS,
    HttpResponseError,
    MeshTransport,
    SyncMeshTransport,
    parse_retry_after,
)
from .routing._events import ResponseStatusError

__all__ = [
    "IDEMPOTENT_METHODS",
    "HttpResponseError",
    "MeshTransport",
    "ResponseStatusError",
    "SyncMeshTransport",
    "parse_retry_after",
]
