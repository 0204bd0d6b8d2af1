"""The policy registry is complete: every policy, its events, its config section and its
public names are registered once, and a registration made twice is refused."""

from __future__ import annotations

import importlib
import pkgutil
import sys

import pytest

import meshlite as ml
import meshlite.policies
from meshlite.config._sections import POLICY_SECTIONS
from meshlite.observability._feed import EVENT_METRICS
from meshlite.policies._registry import (
    Count,
    Metric,
    PolicyRegistration,
    policy_class,
    register,
    registrations,
)

REGISTERED = {entry.kind: entry for entry in registrations()}


def _policy_modules() -> list[str]:
    return [m.name for m in pkgutil.walk_packages(meshlite.policies.__path__,
                                                  "meshlite.policies.")]


def _defined_in_policies(base: type) -> dict[str, type]:
    """Classes deriving from ``base`` defined in meshlite/policies/, by name."""
    for name in _policy_modules():
        importlib.import_module(name)
    found: dict[str, type] = {}
    todo = [base]
    while todo:
        for sub in todo.pop().__subclasses__():
            todo.append(sub)
            module = sys.modules[sub.__module__]
            if sub.__module__.startswith("meshlite.policies.") and getattr(
                    module, sub.__name__, None) is sub:  # not a slotted dataclass' draft
                found[sub.__name__] = sub
    return found


def test_every_policy_class_is_registered_under_its_kind() -> None:
    policies = _defined_in_policies(ml.Policy)
    assert len(policies) >= 12
    for name, cls in policies.items():
        kind = getattr(cls, "kind", None)
        assert kind in REGISTERED, f"{name} (kind {kind!r}) is not registered"
        assert policy_class(kind) is cls


def test_every_policy_event_is_registered() -> None:
    events = _defined_in_policies(ml.Event)
    declared = {name for entry in REGISTERED.values() for name in entry.events}
    assert sorted(set(events) - declared) == []
    for name in declared:
        assert issubclass(getattr(ml, name), ml.Event), name


def test_config_sections_are_the_configurable_registrations_in_order() -> None:
    configurable = [e.kind for e in registrations() if e.config]
    assert list(POLICY_SECTIONS) == configurable


def test_exports_are_the_root_names_of_the_module() -> None:
    for entry in REGISTERED.values():
        module = importlib.import_module(entry.module, "meshlite")
        for name in entry.exports:
            assert name in ml.__all__, f"{entry.kind}: {name} is not in meshlite.__all__"
            assert getattr(ml, name) is getattr(module, name)


def test_registered_metrics_are_served() -> None:
    for entry in REGISTERED.values():
        for metric in entry.metrics:
            assert EVENT_METRICS[metric.name] == (metric.type, metric.help, metric.labels)
            assert metric.labels[0] == "service"


@pytest.mark.parametrize("entry", [
    PolicyRegistration(kind="retry", module="._x", exports=("X",)),
    PolicyRegistration(kind="x", module="._x", exports=("Retry",)),
    PolicyRegistration(kind="x", module="._x", exports=("X",),
                       metrics=(Metric(name="meshlite_retries_total", help="."),)),
    PolicyRegistration(kind="x", module="._x", exports=("X",),
                       events={"RetryScheduled": ()}),
    PolicyRegistration(kind="x", module="._x", exports=("X",),
                       events={"XHappened": (Count("meshlite_x_total"),)}),
    PolicyRegistration(kind="x", module="._x", exports=()),
], ids=["kind", "export", "metric", "event", "undeclared-metric", "no-export"])
def test_a_duplicate_or_incomplete_registration_is_refused(entry: PolicyRegistration) -> None:
    with pytest.raises(ValueError, match=r"policy '(x|retry)'"):
        register(entry)
    assert [e.kind for e in registrations()] == list(REGISTERED)
