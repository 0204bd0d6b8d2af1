"""Django's side of the error mapping: Django turns a view's exception into its own
500 before an outer ASGI middleware sees it, so the mapping has to be a Django
middleware too (as it is a Starlette exception handler for Starlette)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .._arguments import explained
from ._answers import answer_for

__all__ = ["DjangoErrorMiddleware"]


@explained
class DjangoErrorMiddleware:
    """Answers meshlite errors escaping Django views as ``MeshMiddleware`` does
    (429/503/504/422 with ``Retry-After``, 400/401/403/413 for inbound refusals);
    other errors are left to Django.

    Add ``"meshlite.asgi.DjangoErrorMiddleware"`` to ``settings.MIDDLEWARE``.
    """

    def __init__(self, get_response: Callable[[Any], Any]) -> None:
        self.get_response = get_response

    def __call__(self, request: Any) -> Any:
        return self.get_response(request)

    def process_exception(self, request: Any, exception: Exception) -> Any:
        """The response for a meshlite error, or None to let Django handle it."""
        answer = answer_for(exception)
        if answer is None:
            return None
        from django.http import HttpResponse  # only Django projects get here

        response = HttpResponse(answer.body, status=answer.status,
                                content_type="application/json")
        for name, value in answer.headers:
            if name not in (b"content-type", b"content-length"):
                response[name.decode()] = value.decode()
        return response
