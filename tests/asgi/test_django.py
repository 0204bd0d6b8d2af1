"""MeshMiddleware around Django's ASGI handler, under uvicorn: a sync view sees the
caller's deadline, a quota answers 429, and a meshlite error in a view maps to 503
through ``DjangoErrorMiddleware``."""

from __future__ import annotations

import os
from typing import Any

import httpx
import pytest

import meshlite as ml
from meshlite.asgi import MeshMiddleware, Route
from meshlite.testing import AsgiServer

try:
    import django
except ImportError:  # pragma: no cover - depends on the environment
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail("Django is not installed (a dev dependency); CI=true, so this is a "
                    "failure", pytrace=False)
    pytest.skip("Django is not installed (pip install django)", allow_module_level=True)


def django_app() -> Any:
    from django.conf import settings

    if not settings.configured:
        settings.configure(DEBUG=False, ALLOWED_HOSTS=["*"], ROOT_URLCONF=__name__,
                           SECRET_KEY="test-only-not-secret",
                           MIDDLEWARE=["meshlite.asgi.DjangoErrorMiddleware"],
                           INSTALLED_APPS=[])
    django.setup()
    from django.core.asgi import get_asgi_application

    return get_asgi_application()


def budget(request: Any) -> Any:
    from django.http import JsonResponse

    return JsonResponse({"remaining": ml.remaining()})


def broken(request: Any) -> Any:
    raise ml.CircuitOpenError("open", policy="circuit_breaker", retry_after=4.0)


def _urls() -> list[Any]:
    from django.urls import path

    return [path("budget", budget), path("broken", broken)]


urlpatterns: list[Any] = []


async def test_django_asgi_handler_behind_the_middleware() -> None:
    application = django_app()
    urlpatterns[:] = _urls()
    app = MeshMiddleware(application, routes=[Route("/budget", rate=2.0, per=60.0)])
    async with AsgiServer(app) as server, httpx.AsyncClient(base_url=server.url) as client:
        first = await client.get("/budget", headers={"x-meshlite-deadline": "1500"})
        await client.get("/budget")
        limited = await client.get("/budget")
        broken_view = await client.get("/broken")
    assert first.status_code == 200
    # A sync view, run in a thread: less the time spent (at most half, on a loaded machine).
    assert 0.75 < first.json()["remaining"] <= 1.5
    assert limited.status_code == 429
    assert broken_view.status_code == 503
    assert broken_view.headers["retry-after"] == "4"
