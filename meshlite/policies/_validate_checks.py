"""The checks behind :class:`meshlite.Validate`: callables and pydantic types turned
into functions that return the problems they found, never the values they saw.

pydantic is imported only here, and only when a type is given.
"""

from __future__ import annotations

import importlib
import inspect
import os
import re
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, get_origin

from .._callables import is_async_callable
from .._errors import ConfigError
from .._memo import remember
from .._validate import fail

__all__ = [
    "Check",
    "Problem",
    "bind",
    "check_name",
    "is_type",
    "leading_arguments",
    "make_check",
]

Problem = tuple[str, str]
"""One thing wrong: the field path (``""`` for the whole value) and what was expected."""

Check = Callable[[Any], list[Problem] | None]
"""A compiled check: ``None`` when the value is valid, else its problems."""

_LEADING: ContextVar[int] = ContextVar("meshlite_leading_arguments", default=0)
_USER_TEXT = frozenset({"value_error", "assertion_error"})
_PREFIXES = ("Value error, ", "Assertion failed, ")  # pydantic's wrapping of user text
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
_TEXT_ERRORS = (ValueError, TypeError, AssertionError)
_MAX_TEXT = 160


@contextmanager
def leading_arguments(count: int) -> Iterator[None]:
    """While a chain is compiled inside this block, its bottom handler calls
    ``ctx.fn`` with ``count`` leading arguments that are not in ``ctx.args``
    (routing passes the chosen backend first), so signature binding skips them."""
    token = _LEADING.set(count)
    try:
        yield
    finally:
        _LEADING.reset(token)


def current_leading() -> int:
    """The leading-argument count of the chain being compiled (0 outside a service)."""
    return _LEADING.get()


def is_type(value: Any) -> bool:
    """Whether ``value`` is validated by pydantic (a class, a typing form such as
    ``list[User]`` or ``int | None``, or a ``pydantic.TypeAdapter``) rather than
    called."""
    if isinstance(value, type) or get_origin(value) is not None:
        return True
    pydantic = sys.modules.get("pydantic")
    return pydantic is not None and isinstance(value, pydantic.TypeAdapter)


def check_name(fn: Any) -> str:
    """How a check is named in messages: its qualified name, and for a lambda where
    it was written."""
    name = getattr(fn, "__qualname__", None) or type(fn).__qualname__
    code = getattr(fn, "__code__", None)
    if name.endswith("<lambda>") and code is not None:
        return f"{name} at {os.path.basename(code.co_filename)}:{code.co_firstlineno}"
    return str(name)


def scrub(text: str) -> str:
    """Text written by user code (a validator's ``ValueError``) with the parts that
    usually echo the value removed: whatever follows the first ``": "`` (Python puts
    the offending value there) and every quoted span."""
    for prefix in _PREFIXES:
        if text.startswith(prefix):
            text = text[len(prefix):]
    text = _QUOTED.sub("…", text.split(": ", 1)[0]).strip()
    return text if len(text) <= _MAX_TEXT else text[:_MAX_TEXT] + "…"


def path_of(loc: tuple[Any, ...]) -> str:
    """A pydantic error location as ``user.tags[0].name``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _pydantic(owner: str, field: str) -> Any:
    try:
        pydantic = importlib.import_module("pydantic")
    except ImportError:
        pydantic = None
    if pydantic is None or not hasattr(pydantic, "TypeAdapter"):
        raise ConfigError(
            f"{owner}: {field} is a type, which needs pydantic >= 2 (pip install "
            "'pydantic>=2'); or pass a callable check instead", policy="validate")
    return pydantic


def _type_check(owner: str, field: str, tp: Any) -> Check:
    pydantic = _pydantic(owner, field)
    try:
        adapter = tp if isinstance(tp, pydantic.TypeAdapter) else pydantic.TypeAdapter(tp)
    except Exception as error:  # pydantic cannot build a schema for it
        raise ConfigError(f"{owner}: {field} must be a type pydantic can validate, got "
                          f"{tp!r} ({type(error).__name__})", policy="validate") from None
    validate = adapter.validate_python
    invalid = pydantic.ValidationError

    def check(value: Any) -> list[Problem] | None:
        try:
            validate(value)
        except invalid as error:
            return [(path_of(e["loc"]),
                     scrub(e["msg"]) if e["type"] in _USER_TEXT else e["msg"])
                    for e in error.errors(include_url=False, include_context=False,
                                          include_input=False)]
        return None

    return check


def _failed(name: str, error: Exception) -> str:
    kind = type(error).__name__
    text = scrub(str(error)) if isinstance(error, _TEXT_ERRORS) else ""
    return f"failed check {name!r} ({kind}: {text})" if text else \
        f"failed check {name!r} ({kind})"


def _callable_check(fn: Callable[..., Any], spread: bool) -> Check:
    name = check_name(fn)
    failed = [("", f"failed check {name!r} (it returned a false value)")]

    def check(value: Any) -> list[Problem] | None:
        try:
            verdict = fn(*value[0], **value[1]) if spread else fn(value)
        except Exception as error:
            return [("", _failed(name, error))]
        return failed if verdict is not None and not verdict else None

    return check


def make_check(owner: str, field: str, spec: Any, spread: bool = False) -> Check:
    """Compile ``spec`` (a type or a callable) into a check. With ``spread``, a
    callable is called as ``fn(*args, **kwargs)`` on an ``(args, kwargs)`` value.

    Raises:
        ConfigError: ``spec`` is neither, is a coroutine function, or is a type and
            pydantic >= 2 is not installed.
    """
    if is_type(spec):
        return _type_check(owner, field, spec)
    if not callable(spec):
        fail(owner, field, spec, "a callable, a pydantic model or type, or None")
    if is_async_callable(spec):
        fail(owner, field, spec, "a sync callable (checks run inline, they are not awaited)")
    return _callable_check(spec, spread)


# -- binding a call's arguments to its function's parameters --------------------

_EMPTY = inspect.Parameter.empty
_SIMPLE_KINDS = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)


class _Plan:
    """A function's signature, with what the fast binding needs precomputed."""

    __slots__ = ("keyword", "params", "positional", "signature", "simple")

    def __init__(self, signature: inspect.Signature) -> None:
        params = signature.parameters.values()
        self.signature = signature
        # Plain parameters only (no /, *args, **kwargs): bound without inspect.
        self.simple = all(p.kind in _SIMPLE_KINDS for p in params)
        self.params = tuple((p.name, p.default) for p in params)
        self.positional = tuple(p.name for p in params
                                if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD)
        self.keyword = frozenset(p.name for p in params)


_plans: dict[Any, _Plan | None] = {}
_MAX_PLANS = 1024


def _plan(fn: Any) -> _Plan | None:
    try:
        return _plans[fn]
    except KeyError:
        pass
    except TypeError:  # an unhashable callable
        return _read_plan(fn)
    # functions made per call (lambdas) must not pile up: a bounded cache
    return remember(_plans, fn, _read_plan(fn), _MAX_PLANS)


def _read_plan(fn: Any) -> _Plan | None:
    try:
        return _Plan(inspect.signature(fn))
    except (TypeError, ValueError):
        return None


def _fast_bind(plan: _Plan, leading: int, args: tuple[Any, ...],
               kwargs: Mapping[str, Any]) -> dict[str, Any] | None:
    """Plain parameters bound with a few dict operations; None when anything is
    unusual (the slow path then binds, or says precisely what does not fit)."""
    positional = plan.positional
    end = leading + len(args)
    if end > len(positional):
        return None
    out = dict(zip(positional[leading:end], args, strict=False))
    for key, value in kwargs.items():
        if key in out or key not in plan.keyword or key in positional[:leading]:
            return None
        out[key] = value
    for name, default in plan.params[leading:]:
        if name not in out:
            if default is _EMPTY:
                return None
            out[name] = default
    return out


def _slow_bind(plan: _Plan, leading: int, args: tuple[Any, ...],
               kwargs: Mapping[str, Any]) -> dict[str, Any] | str:
    sig = plan.signature
    try:
        bound = sig.bind(*((None,) * leading), *args, **kwargs)
    except TypeError as error:
        return str(error)  # names parameters, not values: "missing ... argument: 'x'"
    bound.apply_defaults()
    params = sig.parameters
    out: dict[str, Any] = {}
    for index, (name, value) in enumerate(bound.arguments.items()):
        if index < leading:
            continue
        if params[name].kind is inspect.Parameter.VAR_KEYWORD:
            for key, item in value.items():
                out.setdefault(key, item)
        else:
            out[name] = value
    return out


def bind(fn: Any, leading: int, args: tuple[Any, ...], kwargs: Mapping[str, Any]
         ) -> dict[str, Any] | str:
    """The call's arguments by parameter name, defaults applied, ``**kwargs`` entries
    spread among them, the ``leading`` parameters left out; or, when they do not fit
    the signature, why (parameter names only, never values).

    Raises:
        ConfigError: the signature of ``fn`` cannot be read.
    """
    plan = _plan(fn)
    if plan is None:
        raise ConfigError(f"Validate: cannot read the signature of {fn!r}, so its "
                          "arguments cannot be matched to parameters; pass args= a "
                          "callable check instead", policy="validate")
    if plan.simple:
        out = _fast_bind(plan, leading, args, kwargs)
        if out is not None:
            return out
    return _slow_bind(plan, leading, args, kwargs)
