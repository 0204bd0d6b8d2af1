"""Build a service's policies from its sections, reusing unchanged ones (and their
state) from the previous build; each option error is recorded under its path."""

from __future__ import annotations

import builtins
import functools
import importlib
import inspect
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from .. import _backoff
from .._clock import Clock
from .._policy import Policy
from ..policies._registry import policy_class, registrations
from ..policies._retry import Retry, RetryBudget
from ..routing._service import DEFAULT_RETRY_ATTEMPTS
from ._fieldset import field_names
from ._problems import Path, Problems, construct
from ._sections import POLICY_SECTIONS, BackoffSection, BudgetSection, Section, TraceSection

__all__ = ["DEFAULT_SPEC", "BuiltPolicies", "build_policies", "exception_types"]

BuiltPolicies = dict[str, tuple[Any, Policy]]
"""Policy kind -> (the section as written, the policy), in pipeline order."""

DEFAULT_SPEC: Any = {"default": True}
"""The spec recorded for the default pipeline (no policy section written)."""


class _Factories(Mapping[str, Callable[..., Policy]]):
    """Policy kind -> its class, from the policy registry; each imported the first
    time a config uses it (a config pays only for the policies it has: start-up
    time)."""

    def __getitem__(self, kind: str) -> Callable[..., Policy]:
        factory: Callable[..., Policy] = policy_class(kind)
        return factory

    def __iter__(self) -> Iterator[str]:
        return (entry.kind for entry in registrations() if entry.config)

    def __len__(self) -> int:
        return sum(1 for _ in self)


_FACTORIES: Mapping[str, Callable[..., Policy]] = _Factories()

_BACKOFFS: dict[str, Callable[..., Any]] = {
    "exponential": _backoff.exponential,
    "constant": _backoff.constant,
    "decorrelated": _backoff.decorrelated,
}


class _Invalid(Exception):
    """An option's value could not be converted; recorded at ``path``."""

    def __init__(self, path: Path, message: str) -> None:
        super().__init__(message)
        self.path = path
        self.message = message


def _exception_type(name: Any, path: Path) -> type[BaseException]:
    found: Any = None
    if isinstance(name, str) and name:
        module, _, attr = name.rpartition(".")
        if not module:
            import meshlite

            found = getattr(builtins, name, None) or getattr(meshlite, name, None)
        else:
            try:
                found = getattr(importlib.import_module(module), attr, None)
            except ImportError:
                found = None
    if not (isinstance(found, type) and issubclass(found, BaseException)):
        raise _Invalid(path, "must be an exception class name such as 'ConnectionError', "
                             f"'meshlite.CircuitOpenError' or 'httpx.ConnectError', got {name!r}")
    return found


def exception_types(value: Any, path: Path) -> tuple[type[BaseException], ...]:
    """Exception classes named by ``value`` (a name or a list of names)."""
    names = [value] if isinstance(value, str) else list(value)
    if not names:
        raise _Invalid(path, "must name at least one exception class")
    return tuple(_exception_type(n, (*path, i) if len(names) > 1 else path)
                 for i, n in enumerate(names))


@functools.cache
def _parameters(factory: Callable[..., Any]) -> list[str]:
    return list(inspect.signature(factory).parameters)


def _make_backoff(section: BackoffSection, path: Path, problems: Problems) -> Any:
    factory = _BACKOFFS[section.type]
    valid = _parameters(factory)
    args = {k: v for k, v in section.arguments().items() if k != "type"}
    for key in [k for k in args if k not in valid]:
        problems.add((*path, key), f"is not an option of the {section.type!r} backoff "
                                   f"(valid: {', '.join(valid)})")
        del args[key]
    return construct(factory, args, problems, path, field_names(BackoffSection))


def _convert(key: str, value: Any, path: Path, problems: Problems, clock: Clock | None,
             ) -> Any:
    """The constructor argument for option ``key`` (exception names to classes,
    sections to objects); raises _Invalid, or returns _FAILED after recording."""
    if key in ("on", "failure_on") and value is not None:
        return exception_types(value, path)
    if key == "error" and value is not None:
        return _exception_type(value, path)
    if isinstance(value, BackoffSection):
        made = _make_backoff(value, path, problems)
        return _FAILED if made is None else made
    if isinstance(value, BudgetSection):
        budget = construct(RetryBudget, {**value.arguments(), "clock": clock}, problems,
                           path, field_names(BudgetSection))
        return _FAILED if budget is None else budget
    return value


_FAILED: Any = object()


def _build_one(kind: str, section: Section, path: Path, problems: Problems,
               clock: Clock | None, service: str) -> Policy | None:
    factory = _FACTORIES[kind]
    args: dict[str, Any] = {}
    failed = False
    for key, value in section.arguments().items():
        try:
            converted = _convert(key, value, (*path, key), problems, clock)
        except _Invalid as invalid:
            problems.add(invalid.path, invalid.message)
            converted = _FAILED
        if converted is _FAILED:
            failed = True
        else:
            args[key] = converted
    if clock is not None and "clock" in _parameters(factory):
        args["clock"] = clock
    if kind == "circuit_breaker":
        args.setdefault("name", service)
    policy = construct(factory, args, problems, path, field_names(type(section)))
    return None if failed else policy


def _wanted(sections: Mapping[str, Section | None], written: set[str]) -> dict[str, Any]:
    """Kind -> spec (the section as written) of each policy to build, in order."""
    if not written & set(POLICY_SECTIONS):
        return {"retry": DEFAULT_SPEC}
    specs: dict[str, Any] = {}
    for kind in POLICY_SECTIONS:
        section = sections.get(kind)
        if section is None or (isinstance(section, TraceSection) and not section.enabled):
            continue
        specs[kind] = section.dump(exclude_unset=True)
    return specs


def build_policies(sections: Mapping[str, Section | None], written: set[str], path: Path,
                   problems: Problems, previous: BuiltPolicies | None, clock: Clock | None,
                   service: str) -> BuiltPolicies:
    """Build the policies of one service, outermost first.

    Args:
        sections: Each policy kind's section (None when absent or turned off).
        written: The keys the service's section sets (a policy set to ``false``
            counts: it turns the default pipeline off).
        path: The service's path (``("services", "users")``).
        problems: Where errors go.
        previous: The last build of this service: a policy whose spec is unchanged
            is reused, with its state.
        clock: Given to every policy that takes one (tests).
        service: The service's name (the breaker's default name).
    """
    built: BuiltPolicies = {}
    for kind, spec in _wanted(sections, written).items():
        old = (previous or {}).get(kind)
        if old is not None and old[0] == spec:
            built[kind] = old
            continue
        if spec is DEFAULT_SPEC:
            built[kind] = (spec, Retry(attempts=DEFAULT_RETRY_ATTEMPTS, clock=clock))
            continue
        section = sections[kind]
        assert section is not None
        policy = _build_one(kind, section, (*path, kind), problems, clock, service)
        if policy is not None:
            built[kind] = (spec, policy)
    return built
