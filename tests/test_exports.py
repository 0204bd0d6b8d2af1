"""The public surface: every contract name of DESIGN.md exists, with the right kind."""

from __future__ import annotations

import inspect
import subprocess
import sys

import pytest

import meshlite as ml

POLICIES = [
    "Pipeline", "Timeout", "Retry", "CircuitBreaker", "RateLimit", "Bulkhead", "Cache",
    "Fallback", "Hedge", "Trace", "FaultInjection", "AdaptiveConcurrency",
]
ERRORS = [
    "MeshliteError", "CircuitOpenError", "RateLimitedError", "BulkheadFullError",
    "TimeoutExceeded", "NoHealthyBackendError", "ConfigError",
]
ROUTING = ["Mesh", "Service", "Backend", "HttpHealthCheck", "HealthCheck", "OutlierDetection"]
FUNCTIONS = ["resilient", "gather", "gather_sync", "remaining", "set_testing"]


def test_all_matches_module() -> None:
    missing = [name for name in ml.__all__ if not hasattr(ml, name)]
    assert missing == []
    assert len(set(ml.__all__)) == len(ml.__all__)


@pytest.mark.parametrize("name", POLICIES)
def test_policies_are_policies(name: str) -> None:
    assert name in ml.__all__
    assert issubclass(getattr(ml, name), ml.Policy)


@pytest.mark.parametrize("name", ERRORS)
def test_errors_are_meshlite_errors(name: str) -> None:
    assert name in ml.__all__
    assert issubclass(getattr(ml, name), ml.MeshliteError)


@pytest.mark.parametrize("name", ROUTING)
def test_routing_names(name: str) -> None:
    assert name in ml.__all__
    assert inspect.isclass(getattr(ml, name))


def test_mesh_contract_surface() -> None:
    for method in ("http", "http_sync", "call", "call_sync", "health", "snapshot", "override",
                   "register", "service", "from_config"):
        assert callable(getattr(ml.Mesh, method)), method
    mesh = ml.Mesh([ml.Service("users", backends=["http://127.0.0.1:8001",
                                                  ml.Backend("http://127.0.0.1:8002", weight=2)],
                               balancer="p2c_ewma")])
    assert [b.address for b in mesh.service("users").backends] == [
        "http://127.0.0.1:8001", "http://127.0.0.1:8002"]
    assert mesh.config_version >= 0
    assert list(mesh.reload_errors) == []


@pytest.mark.parametrize("name", FUNCTIONS)
def test_functions(name: str) -> None:
    assert name in ml.__all__
    assert callable(getattr(ml, name))


def test_backoff_namespace() -> None:
    for name in ("exponential", "constant", "decorrelated"):
        assert callable(getattr(ml.backoff, name))
    assert ml.backoff.exponential(initial=0.05, maximum=2.0) is not None


def test_retry_budget_and_breaker_adapter() -> None:
    assert inspect.isclass(ml.RetryBudget)
    assert callable(ml.CircuitBreaker.from_pybreaker)
    assert callable(ml.RateLimit.from_aiolimiter)


def test_contract_signatures_accept_contract_arguments() -> None:
    ml.Pipeline(
        ml.Trace(),
        ml.Fallback(value=None, on=(ml.CircuitOpenError,)),
        ml.Cache(ttl=30.0, maxsize=1024),
        ml.Timeout(2.0),
        ml.Retry(attempts=3, backoff=ml.backoff.exponential(initial=0.05, maximum=2.0)),
        ml.CircuitBreaker(failure_rate=0.5, window=100, min_calls=20, open_seconds=30.0,
                          half_open_calls=5),
        ml.RateLimit(rate=100.0, per=1.0, mode="wait"),
        ml.Bulkhead(max_concurrent=32),
    )
    ml.resilient(timeout=2.0, retries=3, breaker=True, rate=100.0, cache_ttl=30.0)
    ml.Retry(attempts=3, budget=ml.RetryBudget(ratio=0.2, min_per_second=10.0),
             respect_retry_after=True)
    ml.CircuitBreaker(failure_rate=0.5, window=10, window_type="time", min_calls=5,
                      slow_call_seconds=1.0, slow_call_rate=1.0, open_seconds=30.0,
                      half_open_calls=5, name="users", store=None)
    ml.RateLimit(rate=10.0, per=1.0, burst=None, mode="reject", max_wait=None, key=None,
                 store=None)
    ml.Bulkhead(max_concurrent=2, max_queue=0)
    ml.Cache(ttl=1.0, maxsize=10, key=None, stale_ttl=0.0, store=None)
    ml.Hedge(delay=0.1, max_hedges=1)
    ml.Trace(name=None, attributes=None, record_args=False)
    ml.FaultInjection(0.5, error=None, latency=None, enabled=True)


def test_breaker_states_and_controls() -> None:
    cb = ml.CircuitBreaker()
    assert cb.state == "closed"
    cb.force_open()
    assert cb.state == "forced_open"
    cb.reset()
    assert cb.state == "closed"
    cb.disable()
    assert cb.state == "disabled"


def test_testing_namespace() -> None:
    from meshlite.testing import FakeClock

    assert FakeClock().monotonic() == 0.0


def test_import_loads_no_optional_library() -> None:
    code = (
        "import sys, meshlite\n"
        "heavy = ['httpx', 'aiohttp', 'urllib3', 'starlette', 'uvicorn', 'redis', "
        "'opentelemetry.sdk', "
        "'tenacity', 'pybreaker', 'aiolimiter', 'pydantic', 'yaml', 'msgspec', "
        "'asyncio']\n"
        "print(','.join(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def _walk_modules() -> list[str]:
    import pkgutil

    skip = ("meshlite.__main__",)
    return [m.name for m in pkgutil.walk_packages(ml.__path__, "meshlite.")
            if m.name not in skip]


def _event_classes() -> set[type[ml.Event]]:
    import importlib

    for name in _walk_modules():
        importlib.import_module(name)
    found: set[type[ml.Event]] = set()
    todo = [ml.Event]
    while todo:
        for sub in todo.pop().__subclasses__():
            todo.append(sub)
            # a slotted dataclass replaces the class it was made from: keep the real one
            if getattr(sys.modules[sub.__module__], sub.__name__, None) is sub:
                found.add(sub)
    return found


def test_every_event_class_is_exported() -> None:
    events = _event_classes()
    assert len(events) > 30
    missing = sorted(e.__name__ for e in events if getattr(ml, e.__name__, None) is not e)
    assert missing == []
    assert {e.__name__ for e in events} <= set(ml.__all__)


@pytest.mark.parametrize("package", ["meshlite", "meshlite.discovery"])
def test_lazy_names_are_declared_once_and_read_as_python_reads_them(package: str) -> None:
    import ast
    import importlib
    from pathlib import Path

    from meshlite._lazy import declared_imports

    module = importlib.import_module(package)
    source = Path(module.__file__ or "").read_text(encoding="utf-8")
    lazy, modules, public = declared_imports(source)
    tree = ast.parse(source)
    block = next(n for n in tree.body if isinstance(n, ast.If))
    expected = {a.asname or a.name: node.module for node in block.body
                if isinstance(node, ast.ImportFrom) and node.module for a in node.names}
    assert {k: v.lstrip(".") for k, v in lazy.items()} == expected
    assert modules == ({"asgi", "backoff", "config", "discovery", "state", "telemetry"}
                       if package == "meshlite" else set())
    reexported = [a.asname for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                  for a in node.names if a.asname == a.name]
    assert public == reexported == module.__all__
    assert len(set(public)) == len(public)
    for name in public:
        assert getattr(module, name) is not None


def test_every_error_is_defined_in_the_error_tree() -> None:
    from meshlite import _errors

    _event_classes()  # imports every module
    found, todo = {"meshlite._errors.MeshliteError"}, [ml.MeshliteError]
    while todo:
        for sub in todo.pop().__subclasses__():
            todo.append(sub)
            if sub.__module__.startswith("meshlite"):
                found.add(f"{sub.__module__}.{sub.__qualname__}")
    # the HTTP answers and the wire timeouts at a deadline also subclass their client
    # library's error: they stay with it
    beside_their_library = {"meshlite._http._send.HttpResponseError",
                            "meshlite._http._aio_session.AiohttpResponseError",
                            *(f"meshlite._http._deadline_errors.{kind}TimeoutAtDeadline"
                              for kind in ("Connect", "Read", "Write", "Pool"))}
    elsewhere = sorted(found - beside_their_library)
    assert [n for n in elsewhere if not n.startswith("meshlite._errors.")] == []
    assert sorted(n.rpartition(".")[2] for n in elsewhere) == sorted(_errors.__all__)
    for name in _errors.__all__:
        assert name in (_errors.__doc__ or ""), f"{name} is not drawn in the tree"


def test_inbound_contract_surface() -> None:
    import meshlite.asgi

    assert ml.asgi is meshlite.asgi
    assert callable(meshlite.asgi.MeshMiddleware)
    assert all(hasattr(meshlite.asgi, name) for name in meshlite.asgi.__all__)
    params = inspect.signature(meshlite.asgi.MeshMiddleware).parameters
    assert params["mesh"].kind is inspect.Parameter.KEYWORD_ONLY
    assert inspect.signature(ml.Mesh).parameters["name"].default is None
