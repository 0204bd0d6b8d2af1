"""A service's compiled chains: its pipeline around routing, and changing them.

A mixin of :class:`~meshlite.routing.Service`. The async chain is compiled when the
service is made and whenever its pipeline or injected policies change, and swapped
in one assignment, so a call never sees half a change; the sync chain is compiled on
its first use. A config reload compiles ahead (:meth:`Chains.compile_pipeline`) and
switches later (:meth:`Chains.set_pipeline`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from .._errors import ConfigError
from .._events import EventHooks, Hook
from .._pipeline import Pipeline
from .._policy import AsyncHandler, Handler, Policy
from .._validate import fail
from ..policies._trace import Trace
from ..policies._validate_checks import leading_arguments
from ._route import async_route, sync_route

if TYPE_CHECKING:
    from ._service import Service

__all__ = ["Chains", "CompiledPipeline"]


@dataclass(frozen=True)
class CompiledPipeline:
    """A pipeline compiled for a service (:meth:`Service.compile_pipeline`), ready
    to be switched to in one assignment."""

    service: Chains
    pipeline: Pipeline
    injected: tuple[Policy, ...]
    handler: AsyncHandler
    base: Policy
    """The service's pipeline when this was compiled."""
    hooks: tuple[Hook, ...]
    """The service's hooks then, given to ``fresh``."""
    fresh: tuple[Policy, ...]
    """The policies of ``pipeline`` not in ``base``."""

    def current(self, service: Chains) -> bool:
        """Whether ``service`` is as it was when this was compiled for it."""
        return (service is self.service and service.pipeline is self.base
                and service.hooks._hooks is self.hooks
                and service._injected == self.injected)

    def unhook(self) -> None:
        """Take the hooks given to ``fresh`` back (before compiling again)."""
        for policy in self.fresh:
            for hook in self.hooks:
                policy.hooks.remove(hook)


class Chains:
    """Compiling and switching a service's chains (mixed into ``Service``)."""

    name: str
    pipeline: Policy
    hooks: EventHooks
    _lock: threading.Lock
    _call_span: Trace | None
    _ahandler: AsyncHandler
    _handler: Handler | None

    def sync_handler(self) -> Handler:
        """The compiled sync chain: pipeline around routing (built on first use).

        Raises:
            ConfigError: a policy of the pipeline cannot run synchronously.
        """
        handler = self._handler
        while handler is None:
            # Compiled outside the lock (a policy's wrap may take time), from what
            # was in force when it started, and kept only if nothing changed since:
            # a pipeline switched or a policy injected meanwhile (each makes a new
            # async chain) would otherwise be undone for sync calls for good.
            with self._lock:
                version, pipeline, injected = self._ahandler, self.pipeline, self._injected
            with leading_arguments(1):
                inner = sync_route(cast("Service", self))
                try:
                    for policy in reversed(injected):
                        inner = policy.wrap(inner)
                    compiled = self._chain(pipeline).wrap(inner)
                except ConfigError as error:  # a policy that cannot run sync (Hedge)
                    raise ConfigError(
                        f"service {self.name!r} cannot be called synchronously "
                        f"(mesh.call_sync, mesh.http_sync()): {error}. Call it with "
                        "mesh.call or mesh.http() from async code instead",
                        service=self.name, policy=error.policy) from None
            with self._lock:
                if self._ahandler is version:
                    # A thread that compiled the same meanwhile won: one chain.
                    handler = self._handler = self._handler or compiled
                else:
                    handler = self._handler  # None: compile what is in force now
        return handler

    def _chain(self, pipeline: Policy | None = None) -> Policy:
        """What calls run through: the pipeline (``pipeline``, default the running
        one), under the call span (an ``INTERNAL`` ``ml.Trace``) unless the pipeline
        has a ``Trace`` of its own or the service was made with ``trace=False``."""
        chain = self.pipeline if pipeline is None else pipeline
        if self._call_span is None or any(isinstance(p, Trace) for p in chain.walk()):
            return chain
        return Pipeline(self._call_span, chain)

    def async_handler(self) -> AsyncHandler:
        """The compiled async chain: pipeline around routing."""
        return self._ahandler

    _injected: tuple[Policy, ...] = ()
    # Policies run between the pipeline and routing (inject); a class default, so
    # services without any store nothing.

    def inject(self, policy: Policy) -> Callable[[], None]:
        """Run ``policy`` innermost, between the pipeline and routing: once per
        attempt, with every policy of the pipeline reacting to it as to a real
        failure (chaos testing with ``ml.FaultInjection``; the ``chaos`` fixture of
        meshlite's pytest plugin). Calls starting later use it; calls already running
        finish without it. Hooks subscribed to the service also get its events.

        Args:
            policy: The policy to run; several injected policies nest in the order
                given (the first outermost).

        Returns:
            A function that removes ``policy`` again (calling it twice is harmless).

        Raises:
            ConfigError: ``policy`` is not a meshlite policy.
        """
        if not isinstance(policy, Policy):
            fail(f"Service {self.name!r}", "policy", policy,
                 "a meshlite policy such as ml.FaultInjection(rate=0.5)")
        with self._lock:
            self._recompile((*self._injected, policy))
        unhook = [policy.hooks.add(hook) for hook in self.hooks._hooks]

        def remove() -> None:
            with self._lock:
                if not any(p is policy for p in self._injected):
                    return
                self._recompile(tuple(p for p in self._injected if p is not policy))
            for r in unhook:
                r()

        return remove

    def _compile(self, pipeline: Policy, injected: tuple[Policy, ...]) -> AsyncHandler:
        with leading_arguments(1):
            inner: AsyncHandler = async_route(cast("Service", self))
            for policy in reversed(injected):
                inner = policy.awrap(inner)
            return self._chain(pipeline).awrap(inner)

    def _recompile(self, injected: tuple[Policy, ...]) -> None:
        """Compile the async chain with ``injected`` and switch to it (the sync chain
        is rebuilt on its next use); nothing changes if compiling raises."""
        handler = self._compile(self.pipeline, injected)
        self._injected, self._ahandler, self._handler = injected, handler, None

    # -- what the mesh's config changes a service through (not public API) --------

    def compile_pipeline(self, pipeline: Pipeline) -> CompiledPipeline:
        """``pipeline`` compiled for this service without running it (from any
        thread: a config reload compiles in a worker thread); :meth:`set_pipeline`
        switches to it. The policies of ``pipeline`` new to the service (not shared
        with a running pipeline) get the hooks subscribed to the service now.

        Raises:
            ConfigError: a policy of ``pipeline`` cannot wrap this service.
        """
        base, hooks, injected = self.pipeline, self.hooks._hooks, self._injected
        handler = self._compile(pipeline, injected)
        fresh = self._fresh(base, pipeline) if hooks else ()
        for policy in fresh:
            for hook in hooks:
                policy.hooks.add(hook)
        return CompiledPipeline(self, pipeline, injected, handler, base, hooks, fresh)

    @staticmethod
    def _fresh(base: Policy, pipeline: Policy) -> tuple[Policy, ...]:
        known = {id(p) for p in base.walk()}
        return tuple(p for p in pipeline.walk() if id(p) not in known)

    def set_pipeline(self, pipeline: Pipeline | CompiledPipeline) -> None:
        """Run ``pipeline`` from the next call on: one assignment of the compiled async
        handler (the sync one is recompiled on its next use; injected policies stay).
        One from :meth:`compile_pipeline` is switched to as it is when the service
        has not changed since (pipeline, injected policies, hooks), else compiled
        again. Policies new to the service get the hooks subscribed to it; nothing
        changes if compiling raises."""
        if isinstance(pipeline, CompiledPipeline):
            compiled, pipeline = pipeline, pipeline.pipeline
            with self._lock:
                if compiled.current(self):
                    self.pipeline, self._ahandler, self._handler = (
                        pipeline, compiled.handler, None)
                    return
            compiled.unhook()
        hooks, base = self.hooks._hooks, self.pipeline
        with self._lock:
            old, self.pipeline = self.pipeline, pipeline
            try:
                self._recompile(self._injected)
            except BaseException:
                self.pipeline = old
                raise
        for policy in self._fresh(base, pipeline) if hooks else ():
            for hook in self.hooks._hooks:
                policy.hooks.add(hook)

    def add_hook(self, hook: Hook) -> Callable[[], None]:
        """Subscribe ``hook`` to this service's routing events, its pipeline's policy
        events and those of the policies injected into it (:meth:`inject`); returns
        the unsubscribe function."""
        removers = [self.hooks.add(hook)]
        removers.extend(p.hooks.add(hook) for p in (*self.pipeline.walk(), *self._injected))

        def remove() -> None:
            for r in removers:
                r()

        return remove
