"""A feature used without its extra raises one error naming the extra to install, as
docs/getting-started.md promises: not a chained traceback whose first half is the
``ImportError`` of the module the extra brings."""

from __future__ import annotations

import sys

import pytest

import meshlite as ml


def test_jwt_verifier_without_pyjwt(monkeypatch: pytest.MonkeyPatch) -> None:
    from meshlite.asgi import jwt_verifier

    monkeypatch.setitem(sys.modules, "jwt", None)  # as if PyJWT were not installed
    with pytest.raises(ml.ConfigError, match=r"meshlite-mesh\[jwt\]") as refused:
        jwt_verifier("a-secret-of-32-bytes-at-least-000", algorithms=["HS256"])
    assert refused.value.__cause__ is None
    assert refused.value.__suppress_context__


def test_telemetry_without_the_sdk(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "meshlite.telemetry._sdk", None)
    with pytest.raises(ml.ConfigError, match=r"meshlite-mesh\[otlp\]") as refused:
        ml.telemetry.configure("shop")
    assert refused.value.__cause__ is None
    assert refused.value.__suppress_context__
