"""Validate: check a call's arguments before it runs and its result after, with a
callable or a pydantic model, and fail with a message that names the field, never
the value."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .._context import CallContext
from .._errors import ConfigError, ValidationError
from .._events import Event
from .._policy import AsyncHandler, Handler, Policy
from .._validate import fail, fail_choice
from ._validate_checks import Check, Problem, bind, current_leading, is_type, make_check

__all__ = [
    "DEFAULT_SHOWN_PROBLEMS",
    "Validate",
    "ValidateOptions",
    "ValidationError",
    "ValidationFailed",
]

DEFAULT_SHOWN_PROBLEMS = 5
"""Problems listed in one error message; ``.errors`` has all of them."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ValidationFailed(Event):
    """A call's ``stage`` (``"args"`` or ``"result"``) failed validation at
    ``fields`` (the values are not recorded)."""

    stage: str
    fields: tuple[str, ...]


_Before = Callable[[CallContext], None]
_After = Callable[[CallContext, Any], None]

ArgsSpec = Any
"""``fn(*args, **kwargs)``, a pydantic type (model class, ``TypedDict``,
``TypeAdapter``...) or a mapping of parameter name to ``fn(value)`` or a type.
(``Any``: typing forms such as ``list[User]`` are not ``type`` objects to mypy.)"""

ResultSpec = Any
"""``fn(value)`` or a pydantic type (``User``, ``list[User]``, ``int | None``,
a ``TypeAdapter``)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ValidateOptions:
    """Validated options of :class:`Validate`."""

    args: Any = None
    result: Any = None

    def __post_init__(self) -> None:
        if self.args is None and self.result is None:
            fail_choice("Validate", "at least one of args= or result=", [])
        if isinstance(self.args, Mapping):
            if not self.args:
                fail("Validate", "args", self.args, "a non-empty mapping of parameter names")
            for name in self.args:
                if not isinstance(name, str) or not name.isidentifier():
                    fail("Validate", "args", name, "keyed by parameter names")


def _message(ctx: CallContext, stage: str, problems: list[Problem]) -> str:
    where = f"{ctx.operation!r}" + (f" (service {ctx.service!r})" if ctx.service else "")
    shown = problems[:DEFAULT_SHOWN_PROBLEMS]
    more = len(problems) - len(shown)
    tail = f"; and {more} more" if more else ""
    if stage == "result":
        if len(problems) == 1 and not problems[0][0]:
            return f"Validate: the result of {where} is invalid: {problems[0][1]}"
        listed = "; ".join(f"at {p!r}: {e}" if p else e for p, e in shown)
        return f"Validate: the result of {where} is invalid {listed}{tail}"
    if len(problems) == 1:
        path, expected = problems[0]
        if not path:
            return f"Validate: the arguments of {where} are invalid: {expected}"
        return f"Validate: argument {path!r} of {where} is invalid: {expected}"
    listed = "; ".join(f"{p!r}: {e}" if p else e for p, e in shown)
    return f"Validate: {len(problems)} arguments of {where} are invalid: {listed}{tail}"


def _args_check(spec: Any) -> Callable[[CallContext, int], list[Problem] | str | None]:
    """``check(ctx, leading)``: the problems of the call's arguments, a string when
    they do not fit the function's signature, or None when valid."""
    if isinstance(spec, Mapping):
        per_param = [(name, make_check("Validate", f"args[{name!r}]", s))
                     for name, s in spec.items()]
        return lambda ctx, leading: _check_params(ctx, leading, per_param)
    whole = make_check("Validate", "args", spec, spread=True)
    if not is_type(spec):
        return lambda ctx, leading: whole((ctx.args, ctx.kwargs))

    def check_model(ctx: CallContext, leading: int) -> list[Problem] | str | None:
        arguments = bind(ctx.fn, leading, ctx.args, ctx.kwargs)
        return arguments if isinstance(arguments, str) else whole(arguments)

    return check_model


def _check_params(ctx: CallContext, leading: int, per_param: list[tuple[str, Check]]
                  ) -> list[Problem] | str | None:
    arguments = bind(ctx.fn, leading, ctx.args, ctx.kwargs)
    if isinstance(arguments, str):
        return arguments
    problems: list[Problem] = []
    for name, check in per_param:
        if name not in arguments:
            known = ", ".join(arguments) or "none"
            raise ConfigError(f"Validate: args names parameter {name!r}, which "
                              f"{ctx.operation!r} does not have (its parameters: {known})",
                              service=ctx.service, policy="validate")
        found = check(arguments[name])
        if found:
            problems.extend((f"{name}.{p}" if p and p[0] != "[" else name + p, e)
                            for p, e in found)
    return problems or None


class Validate(Policy):
    """Check each call's arguments before it runs and its result after it returns.

    A check is a callable or a pydantic type (a model class, ``list[User]``, a
    ``TypeAdapter``...; pydantic >= 2 is imported only when one is given). A callable
    check is invalid when it returns a false value other than ``None`` or raises. A
    failed check raises :class:`ValidationError`, whose message names the field and
    what was expected but never the value. Values are validated, never converted:
    the call receives its arguments, and the caller its result, exactly as they were.

    Args:
        args: ``fn(*args, **kwargs)`` called with the call's arguments; or a type
            validating the arguments bound to the function's parameters (a model
            whose fields are named like the parameters); or a mapping of parameter
            name to a callable ``fn(value)`` or a type.
        result: ``fn(value)`` called with the result, or a type validating it.

    Raises:
        ConfigError: neither given, a check that is neither a callable nor a type, a
            coroutine function, or a type without pydantic >= 2 installed.
    """

    kind = "validate"

    def __init__(self, args: ArgsSpec | None = None, result: ResultSpec | None = None
                 ) -> None:
        super().__init__()
        self.options = ValidateOptions(args=args, result=result)
        self._check_args = None if args is None else _args_check(args)
        self._check_result = None if result is None else make_check(
            "Validate", "result", result)

    def _reject(self, ctx: CallContext, stage: str, found: list[Problem] | str
                ) -> ValidationError:
        if isinstance(found, str):
            found = [("", f"they do not fit its signature ({found})")]
        problems = tuple(found)
        if self.hooks.active:
            self._emit(ValidationFailed(policy=self.kind, service=ctx.service,
                                        operation=ctx.operation, stage=stage,
                                        fields=tuple(p for p, _ in problems)))
        one = len(found) == 1 and (stage == "result" or bool(found[0][0]))
        hidden = "(the value is not shown)" if one else "(the values are not shown)"
        return ValidationError(
            f"{_message(ctx, stage, found)} {hidden}", service=ctx.service,
            operation=ctx.operation, stage=stage, problems=problems)

    def _checks(self) -> tuple[_Before | None, _After | None]:
        # Read once per compiled chain: whether routing passes a backend first is
        # known when the chain is built, never looked up per call.
        leading = current_leading()
        check_args, check_result, reject = self._check_args, self._check_result, self._reject
        before: _Before | None = None
        after: _After | None = None
        if check_args is not None:
            def before(ctx: CallContext) -> None:
                found = check_args(ctx, leading)
                if found is not None:
                    raise reject(ctx, "args", found)
        if check_result is not None:
            def after(ctx: CallContext, value: Any) -> None:
                found = check_result(value)
                if found is not None:
                    raise reject(ctx, "result", found)
        return before, after

    def wrap(self, call_next: Handler) -> Handler:
        before, after = self._checks()

        def handle(ctx: CallContext) -> Any:
            if before is not None:
                before(ctx)
            result = call_next(ctx)
            if after is not None:
                after(ctx, result)
            return result

        return handle

    def awrap(self, call_next: AsyncHandler) -> AsyncHandler:
        before, after = self._checks()

        async def handle(ctx: CallContext) -> Any:
            if before is not None:
                before(ctx)
            result = await call_next(ctx)
            if after is not None:
                after(ctx, result)
            return result

        return handle

    def __repr__(self) -> str:
        o = self.options
        parts = [f"{k}={_spec_name(v)}" for k, v in (("args", o.args), ("result", o.result))
                 if v is not None]
        return f"Validate({', '.join(parts)})"


def _spec_name(spec: Any) -> str:
    if isinstance(spec, Mapping):
        return "{" + ", ".join(f"{k!r}: {_spec_name(v)}" for k, v in spec.items()) + "}"
    name = getattr(spec, "__qualname__", None)
    return str(name) if isinstance(name, str) else repr(spec)
