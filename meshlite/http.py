"""HTTP through the mesh: the ``httpx`` transports behind ``mesh.http()`` and
``mesh.http_sync()``.

Importing this module imports ``httpx`` (``import meshlite`` does not); without the
``meshlite-mesh[http]`` extra it raises ``ModuleNotFoundError`` naming that extra. Most code
never needs it: ``mesh.http("users")`` returns a ready ``httpx.AsyncClient``.
"""

from ._extras import requires_extra
from .routing._events import ResponseStatusError

with requires_extra("meshlite.http", "http"):
    from ._http._outgoing import IDEMPOTENT_METHODS, MAX_FAILURE_BODY, parse_retry_after
    from ._http._send import HttpResponseError
    from ._http._transport import MeshTransport, SyncMeshTransport

__all__ = [
    "IDEMPOTENT_METHODS",
    "HttpResponseError",
    "MAX_FAILURE_BODY",
    "MeshTransport",
    "ResponseStatusError",
    "SyncMeshTransport",
    "parse_retry_after",
]
