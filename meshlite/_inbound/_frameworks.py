"""Give the wrapped framework meshlite's error mapping: Starlette, FastAPI and Quart
each turn an unhandled error into a 500 before it reaches an outer middleware, so
the middleware installs the mapping as the framework's own error handler (unless
the app already has one for meshlite errors)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .._errors import MeshliteError
from ._answers import answer_for, exception_handlers

__all__ = ["install_handlers", "quart_error_handler"]


def install_handlers(app: Any) -> None:
    """Install meshlite's mapping in ``app`` when it is a Starlette/FastAPI app or a
    Quart app (or a Quart app's ``asgi_app`` method); other apps are left alone."""
    owner = getattr(app, "__self__", app)  # app.asgi_app = MeshMiddleware(app.asgi_app)
    if _is_quart(owner):
        spec = owner.error_handler_spec.get(None, {}).get(None, {})
        if MeshliteError not in spec:
            owner.register_error_handler(MeshliteError, quart_error_handler())
        return
    add = getattr(app, "add_exception_handler", None)
    handlers = getattr(app, "exception_handlers", None)
    if add is None or not isinstance(handlers, dict):
        return
    for kind, handler in exception_handlers().items():
        if kind not in handlers:
            add(kind, handler)


def _is_quart(app: Any) -> bool:
    return (callable(getattr(app, "register_error_handler", None))
            and isinstance(getattr(app, "error_handler_spec", None), dict)
            and type(app).__module__.split(".")[0] == "quart")


def quart_error_handler() -> Callable[[BaseException], Any]:
    """A Quart error handler mapping meshlite errors to responses:
    ``app.register_error_handler(ml.MeshliteError, quart_error_handler())``. Errors
    the mapping does not cover are re-raised (Quart answers 500)."""
    from quart import Response  # the handler is Quart's own shape

    async def handle(error: BaseException) -> Any:
        answer = answer_for(error)
        if answer is None:
            raise error
        headers = {k.decode(): v.decode() for k, v in answer.headers
                   if k != b"content-length"}
        return Response(answer.body, status=answer.status, headers=headers)

    return handle
