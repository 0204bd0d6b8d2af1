"""What a policy does when its store cannot answer: the ``on_error`` modes, the
:class:`StoreFallback` event, and the one rule every policy applies
(:func:`fall_back`; :func:`give_back` for the operations after a decision)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from .._errors import StoreUnavailableError
from .._events import Event

if TYPE_CHECKING:
    from .._context import CallContext
    from .._policy import Policy
    from ._base import Store

__all__ = ["ALLOW", "DENY", "LOCAL", "ON_ERROR_MODES", "RAISE", "OnError", "StoreFallback",
           "agive_back", "fall_back", "give_back"]

OnError = Literal["local", "allow", "deny", "raise"]
"""What a decision does when the store cannot answer in time."""

LOCAL: OnError = "local"
ALLOW: OnError = "allow"
DENY: OnError = "deny"
RAISE: OnError = "raise"
ON_ERROR_MODES: tuple[OnError, ...] = (LOCAL, ALLOW, DENY, RAISE)

_RAISING_STEPS = ("decide", "manage")


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreFallback(Event):
    """One decision of a policy fell back because its store was unavailable.

    ``policy`` is the policy's kind; ``action`` is ``"local"``, ``"allow"``,
    ``"deny"`` or ``"raise"``; ``step`` says which store operation failed
    (``"decide"``, ``"record"``, ``"store"``, ``"manage"``, ``"read"``; ``"release"``:
    giving back a rate limit's slot, a breaker's permit or a cache's single-flight
    lock; ``"lock"``: taking a cache's single-flight lock).
    """

    store: str
    action: str
    step: str = "decide"
    error: BaseException | None = None


def fall_back(policy: Policy, store: Store, ctx: CallContext | None,
              error: StoreUnavailableError, step: str = "decide") -> OnError:
    """Apply ``store.on_error`` to a failed store operation of ``policy``.

    Counts the fallback, emits :class:`StoreFallback` to the policy's hooks, and
    returns the action for the policy to take (``"local"``, ``"allow"`` or
    ``"deny"``). Only a decision (``step="decide"``) or a management operation
    (``"manage"``: invalidate, force_open...) raises: an operation after the call ran
    (recording its outcome, storing its result) never replaces the call's result or
    error, whatever ``on_error`` says.

    Raises:
        StoreUnavailableError: ``on_error="raise"`` and a raising step, naming the
            call's service and the policy, chained to ``error``.
    """
    action = store.on_error
    store.note_fallback(policy.kind, action)
    service = None if ctx is None else ctx.service
    if policy.hooks.active:
        policy.hooks.emit(StoreFallback(
            policy=policy.kind, service=service,
            operation=None if ctx is None else ctx.operation,
            store=store.label, action=action, step=step, error=error))
    if action == RAISE and step in _RAISING_STEPS:
        raise StoreUnavailableError(
            f"{policy.kind}: {error} (on_error='raise'). Bring the store back, or "
            "choose on_error='local', 'allow' or 'deny' to fall back instead",
            service=service, policy=policy.kind) from error
    return action


def give_back(policy: Policy, store: Store, ctx: CallContext | None,
              release: Callable[[], object]) -> None:
    """Run ``release()``, a store operation after the decision (giving back a slot, a
    permit or a lock); when the store cannot answer, announce it as :func:`fall_back`
    does (``step="release"``), and never raise: the call's outcome stands."""
    try:
        release()
    except StoreUnavailableError as error:
        fall_back(policy, store, ctx, error, step="release")


async def agive_back(policy: Policy, store: Store, ctx: CallContext | None,
                     release: Callable[[], Awaitable[object]]) -> None:
    """The async twin of :func:`give_back`."""
    try:
        await release()
    except StoreUnavailableError as error:
        fall_back(policy, store, ctx, error, step="release")
