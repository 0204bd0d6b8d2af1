"""The span attribute caches on a call's path and of the SERVER span follow the one
policy of the small caches (``meshlite._memo``): emptied when full, so after
discovery churn (or many operations, or made-up Host headers) new keys are cached
again. They kept their first entries for good, and
every attempt on a backend that came later parsed its address again."""

from __future__ import annotations

from meshlite._context import CallContext
from meshlite.policies._trace_attributes import _MAX_CACHED as MAX_OPERATIONS
from meshlite.policies._trace_attributes import call_attributes
from meshlite.telemetry import _spans


def test_a_backend_after_the_first_256_is_cached() -> None:
    _spans._targets.clear()
    addresses = [f"http://10.0.{i // 250}.{i % 250}:8080" for i in range(_spans._MAX_CACHED + 5)]
    for address in addresses:
        _spans._target(address)
    latest = addresses[-1]
    assert latest in _spans._targets
    assert _spans._target(latest) is _spans._targets[latest]  # parsed once
    assert len(_spans._targets) <= _spans._MAX_CACHED


def test_an_operation_after_the_first_1024_is_cached() -> None:
    attributes_for = call_attributes({}, record_args=False)

    def ctx(operation: str) -> CallContext:
        return CallContext(print, (), {}, operation, "users", None)

    for i in range(MAX_OPERATIONS + 5):
        attributes_for(ctx(f"op{i}"))
    last = f"op{MAX_OPERATIONS + 4}"
    assert attributes_for(ctx(last)) is attributes_for(ctx(last))  # built once, reused


def test_a_host_after_the_first_256_is_cached() -> None:
    # Made-up Host headers filled it first: the service's own was parsed on every
    # request from then on.
    from meshlite._inbound import _span

    _span._hosts.clear()
    for i in range(_span._MAX_HOSTS + 5):
        _span._server("http", f"made-up-{i}.example")
    found = _span._server("http", "orders.internal:8080")
    assert _span._hosts[("http", "orders.internal:8080")] is found
    assert found == {"server.address": "orders.internal", "server.port": 8080}
