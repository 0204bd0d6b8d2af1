"""The inbound side: ``MeshMiddleware`` for ASGI services (Starlette, FastAPI, Django's
ASGI handler, Quart, plain ASGI).

::

    import meshlite as ml
    import meshlite.asgi

    app = meshlite.asgi.MeshMiddleware(app, mesh=mesh, routes=[
        meshlite.asgi.Route("/orders/*", rate=50.0, key="client", max_concurrent=64),
    ])

See docs/inbound.md: the headers it reads and writes, the status of each refusal,
and what it defends against.
"""

from ._inbound._answers import (
    ForbiddenError,
    InboundError,
    RequestTooLargeError,
    UnauthorizedError,
    answer_for,
    exception_handlers,
    status_for,
)
from ._inbound._auth import Auth, Verifier, jwt_verifier
from ._inbound._body import ClientGone
from ._inbound._django import DjangoErrorMiddleware
from ._inbound._frameworks import quart_error_handler
from ._inbound._headers import CALLER_HEADER, DEADLINE_HEADER, GRPC_TIMEOUT_HEADER
from ._inbound._keys import ApiKeys
from ._inbound._middleware import PRINCIPAL_KEY, MeshMiddleware
from ._inbound._request import Inbound, Principal
from ._inbound._routes import DEFAULT_MAX_DEADLINE, Route

__all__ = [
    "CALLER_HEADER",
    "DEADLINE_HEADER",
    "DEFAULT_MAX_DEADLINE",
    "GRPC_TIMEOUT_HEADER",
    "PRINCIPAL_KEY",
    "ApiKeys",
    "Auth",
    "ClientGone",
    "DjangoErrorMiddleware",
    "ForbiddenError",
    "Inbound",
    "InboundError",
    "MeshMiddleware",
    "Principal",
    "RequestTooLargeError",
    "Route",
    "UnauthorizedError",
    "Verifier",
    "answer_for",
    "exception_handlers",
    "jwt_verifier",
    "quart_error_handler",
    "status_for",
]
