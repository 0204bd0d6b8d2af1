"""Constructors given arguments they do not take say which ones they take (and the
one most likely meant), for every public class a user builds by hand."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

import meshlite as ml
import meshlite.asgi as asgi
import meshlite.testing as testing
from meshlite._arguments import explained
from meshlite.routing._balancers import Random

NOT_EXPLAINED = {
    # Built by the library on every call or request, where one more frame would
    # count; a user does not build them.
    "CallContext": "built per call",
    "Inbound": "built per inbound request",
    "Principal": "built per authenticated request",
    "ReceivedRequest": "built per request a FakeBackend receives",
    "BackendStats": "a FakeBackend's counters, read not built",
    "ScriptedCall": "built per scripted call",
    "InjectedFault": "built per injected fault",
    "BackendFactory": "built by the fake_backend fixture",
    "MeshFactory": "built by the mesh fixture",
    "FakeBackend": "takes any behaviour keyword; says which are valid itself",
    "SystemClock": "takes no arguments (Python says so)",
}


def _public_classes() -> list[tuple[str, type]]:
    found = []
    for module in (ml, asgi, testing):
        for name in module.__all__:
            value = getattr(module, name)
            if (inspect.isclass(value) and not issubclass(value, BaseException)
                    and not issubclass(value, ml.Event) and not inspect.isabstract(value)
                    and not getattr(value, "_is_protocol", False)
                    and value.__name__ not in NOT_EXPLAINED):
                found.append((f"{module.__name__}.{name}", value))
    return found


@pytest.mark.parametrize(("name", "cls"), _public_classes(), ids=lambda v: v if
                         isinstance(v, str) else "")
def test_an_unknown_keyword_is_answered_with_the_arguments_taken(name: str,
                                                                   cls: type) -> None:
    with pytest.raises(TypeError) as raised:
        cls(no_such_option=1)
    message = str(raised.value)
    assert f"{cls.__name__}() got an unexpected keyword argument 'no_such_option'" in message
    takes = message.split(f"; {cls.__name__} takes: ", 1)[1]
    parameters = list(inspect.signature(cls).parameters)
    assert all(p in takes for p in parameters), (parameters, takes)


@pytest.mark.parametrize(("build", "meant"), [
    (lambda: ml.Retry(atempts=3), "attempts"),
    (lambda: ml.Service("users", ["http://127.0.0.1:1"], balancr="round_robin"),
     "balancer"),
    (lambda: ml.OutlierDetection(consecutive_failure=3), "consecutive_failures"),
    (lambda: ml.Backend(adress="http://127.0.0.1:1"), "address"),
    (lambda: asgi.MeshMiddleware(None, rutes=()), "routes"),
    (lambda: ml.P2CEwma(rando=None), "random"),  # inherits its balancer base's
    (lambda: Random(rnadom=None), "random"),  # balancer="random": its own constructor
    (lambda: ml.HttpHealthCheck(pth="/"), "path"),  # a health check's subclass
])
def test_a_misspelt_keyword_names_the_one_meant(build: Any, meant: str) -> None:
    with pytest.raises(TypeError, match=rf"\(did you mean '{meant}'\?\)"):
        build()


def test_a_missing_argument_and_too_many_are_explained_too() -> None:
    with pytest.raises(TypeError, match=r"Service\(\) missing a required argument: "
                                        r"'name'; Service takes: name, backends"):
        ml.Service()  # type: ignore[call-arg]
    with pytest.raises(TypeError, match=r"Timeout\(\) too many positional arguments; "
                                        r"Timeout takes: seconds"):
        ml.Timeout(1.0, False, None, 4)  # type: ignore[call-arg, misc]


def test_an_error_raised_inside_a_constructor_passes_through_unchanged() -> None:
    @explained
    class Strict:
        def __init__(self, size: int) -> None:
            if not isinstance(size, int):
                raise TypeError("size must be an int")

    with pytest.raises(TypeError) as raised:
        Strict("3")  # type: ignore[arg-type]
    assert str(raised.value) == "size must be an int"
    with pytest.raises(TypeError, match="Strict takes: size"):
        Strict(sise=3)  # type: ignore[call-arg]


def test_a_user_policy_is_explained_and_its_signature_is_kept() -> None:
    class Quota(ml.Policy):
        kind = "quota"

        def __init__(self, calls: int = 10) -> None:
            super().__init__()
            self.calls = calls

        def wrap(self, call_next: Any) -> Any:
            return call_next

        def awrap(self, call_next: Any) -> Any:
            return call_next

    with pytest.raises(TypeError, match=r"did you mean 'calls'"):
        Quota(cals=3)  # type: ignore[call-arg]
    assert list(inspect.signature(Quota).parameters) == ["calls"]
    assert Quota(calls=3).calls == 3
