"""Applying a built config to a mesh: diff it against what the last one put there and
change only what differs.

- A service whose policies changed gets a new pipeline in one swap of its compiled
  handler; the policies whose section is unchanged are the same objects, so an open
  breaker stays open and a rate limit keeps its tokens.
- A service whose static backends changed gets ``set_backends`` (unchanged backends
  keep their statistics and ejection state).
- A service whose routing changed (balancer, health check, outlier detection,
  dependencies, discovery) is rebuilt and replaces the old one, which drains.
- What an operator set by hand carries over to what replaces it (:func:`carry`): a
  circuit breaker forced open or disabled stays so when its section changed, and a
  backend ejected by hand stays out (for the rest of its ``seconds``) when its
  service is rebuilt. Each is read at the switch itself, so an action that lands
  on the old object while the reload is prepared is not lost.
- A removed service leaves the registry at once and drains: calls already running
  finish, then its components stop and its connection pools close.

The costly part of a change, building each changed service's pipeline and compiling
its chain, is done ahead by :func:`prepare` (a service at a time, between turns of
the event loop during a reload); then only switches remain. The registry (services
added, replaced, removed) changes without yielding to the event loop; then each
running service whose policies or backends changed switches, in one assignment
each, in chunks with the loop running between (:func:`switch`); starting the new
services' components (health checks, discovery) comes after, and the replaced
plan is let go of in chunks too (:func:`release`). A service whose section is
unchanged is not touched. Draining the services taken out of the registry is
:mod:`meshlite.mesh._retire`'s.

It changes a mesh and its services only through the methods they keep for it
(``Mesh.put_service``, ``drop_service``, ``start_services``, ``release_components``,
``close_service_pools``, ``forget_service``; ``Service.compile_pipeline``,
``set_pipeline``), never
through their private attributes.
"""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .._audit import audited_by_caller
from .._pipeline import Pipeline
from .._statelog import unlogged
from ..mesh._retire import retire
from ..routing._rotation import MANUAL
from ..routing._service import Service
from ._build import Plan, ServicePlan
from ._diff import Diff, diff_of, diff_steps
from ._steps import Steps, drain

if TYPE_CHECKING:
    from ..mesh._mesh import Mesh

__all__ = [
    "Changes",
    "apply_plan",
    "carry",
    "changes_of",
    "describe",
    "finish",
    "install",
    "prepare",
    "prepare_steps",
    "register",
    "release",
    "swap_pipeline",
    "switch",
    "switch_now",
]

@dataclass
class Changes:
    """What applying a plan changed; ``started``/``retired`` are left for the async
    part (:meth:`finish`)."""

    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    """What was set by hand and carried over to what replaced it (:func:`carry`), in
    words: ``"users/breakers/users: forced_open"``, ``"users/backends/<address>:
    ejected"``."""
    started: list[Service] = field(default_factory=list)
    retired: list[Service] = field(default_factory=list)
    updates: list[tuple[ServicePlan, ServicePlan]] = field(default_factory=list)
    """Running services whose section changed but not their routing (the plan in
    force, the new one): switched to their new pipeline and backends by
    :func:`switch`."""

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.changed)


_log = logging.getLogger("meshlite.config")

_HELD = {"forced_open": "force_open", "disabled": "disable"}
"""The breaker states an operator sets by hand, and the control that sets each."""


def _breaker(plan: ServicePlan) -> Any:
    found = plan.policies.get("circuit_breaker")
    return None if found is None else found[1]


def carry(old: ServicePlan, new: ServicePlan, live: Service | None = None) -> list[str]:
    """Give what replaces ``old`` what an operator set by hand on it: its circuit
    breaker's ``forced_open`` or ``disabled`` state when ``new`` has another breaker
    (its section changed), and, when ``new`` has another service (``live``: the one
    it will run on; rebuilt), each backend ejected by hand and still among its
    backends, for what is left of the ejection. Neither audited nor logged as a new
    change (it was recorded when it was made; the new objects are not in use yet):
    hooks get the new objects' events, and one line here says what was kept. Returns
    what was carried, in words, for the reload's log and audit record."""
    kept: list[str] = []
    target = new.service if live is None else live
    before, after = _breaker(old), _breaker(new)
    if before is not None and after is not None and before is not after:
        state = before.state
        if state in _HELD and after.state != state:  # (a shared store may hold it)
            try:  # not a new action: audited when it was made, logged below in words
                with audited_by_caller(), unlogged():  # (its own event says "was closed")
                    getattr(after, _HELD[state])()
            except Exception as error:  # a store that does not answer: say so, go on
                _log.warning("service %r: the breaker %s by hand could not be carried "
                             "over to its new section: %s", new.name, state, error)
            else:
                kept.append(f"{new.name}/breakers/{after.name}: {state}")
    if target is not old.service:
        now = old.service.clock.monotonic()
        addresses = {e.address for e in target.endpoints}
        for endpoint in old.service.endpoints:
            until = endpoint.ejected_until
            if (until is None or endpoint.ejected_reason != MANUAL
                    or endpoint.address not in addresses or until <= now):
                continue
            with audited_by_caller(), unlogged():
                target.eject(endpoint.address, None if math.isinf(until) else until - now)
            kept.append(f"{new.name}/backends/{endpoint.address}: ejected")
    for what in kept:
        _log.info("reload of service %r kept %s, set by hand", new.name, what,
                  extra={"meshlite_event": "ConfigKeptManual", "kept": what})
    return kept


def swap_pipeline(service: Service, pipeline: Pipeline) -> None:
    """Make ``service`` run ``pipeline``: one assignment of its compiled async handler
    (the sync one is recompiled on next use; injected chaos policies stay). Policies
    new to the service get the hooks subscribed to it (``mesh.add_hook`` and the
    mesh's metrics included)."""
    service.set_pipeline(pipeline)


def install(plan: ServicePlan) -> Service:
    """Give a newly built service its pipeline and discovery (once: not again when
    :func:`prepare` did); returns the service."""
    service = plan.service
    if plan.installed:
        return service
    swap_pipeline(service, plan.pipeline())
    if plan.discovery is not None:
        plan.discovery.driver.service = service
        service.attach(plan.discovery.driver)
    plan.installed = True
    return service


def prepare(old: Plan | None, new: Plan) -> None:
    """Do ahead, from any thread, the costly part of applying ``new`` over ``old``:
    install each new service (not registered yet, so no call sees it) and compile
    the new pipeline of each running service whose policies changed (switched to
    by :func:`apply_plan`). Changes nothing a call can see; raises (a reload
    rejected) if a pipeline cannot be compiled."""
    drain(prepare_steps(old, new))


def prepare_steps(old: Plan | None, new: Plan) -> Steps[None]:
    """:func:`prepare` a service at a time (yielding before each); a service whose
    plan is the one in force (its section unchanged) is left alone."""
    diff = yield from diff_steps(old, new)
    for plan, _ in diff.put:
        yield
        install(plan)
        plan.prepared = True
    for previous, plan in diff.update:
        yield
        if _policies_changed(previous, plan):
            plan.compiled = previous.service.compile_pipeline(plan.pipeline())
        plan.prepared = True


def _policies_changed(old: ServicePlan, new: ServicePlan) -> bool:
    return [id(p) for _, p in old.policies.values()] != [id(p) for _, p in
                                                          new.policies.values()]


def _update(mesh: Mesh, old: ServicePlan, new: ServicePlan, changes: Changes) -> None:
    live = old.service
    tell = None
    # Backends first, the pipeline right after, the news of the backends last: a
    # thread's call starting between the two runs the old pipeline on the new
    # backends, as a call begun before the reload does; the other order ran the new
    # pipeline on the old backends, a config never in force.
    if (new.section.discovery is None and new.backends is not old.backends
            and new.backends != live.backends):
        tell = live.replace_backends(new.backends)
    touched = tell is not None
    changes.kept.extend(carry(old, new, live))
    if new.compiled is not None:
        live.set_pipeline(new.compiled)
        new.compiled = None  # handed over: the plan holds no handler of the live service
        touched = True
    elif not new.prepared and _policies_changed(old, new):
        swap_pipeline(live, new.pipeline())
        touched = True
    if tell is not None:
        tell()
    new.service, new.discovery = live, old.discovery
    if touched:
        changes.changed.append(new.name)


def apply_plan(mesh: Mesh, old: Plan | None, new: Plan, diff: Diff | None = None,
               ) -> Changes:
    """Change ``mesh``'s registry from ``old`` (None: nothing from a config yet) to
    ``new``, in one go on the caller's thread; returns what changed, with the
    running services whose policies or backends changed left for :func:`switch`.
    ``diff``: ``new`` against ``old``, worked out ahead (``_diff.diff_steps``)."""
    diff = diff_of(old, new) if diff is None else diff
    return changes_of(diff, register(mesh, diff))


def register(mesh: Mesh, diff: Diff) -> list[Service | None]:
    """The registry change of :func:`apply_plan` alone, in one go: register the
    services ``diff`` puts, drop those it removes; returns the service each one put
    replaced (None: a new name). Holds the mesh's registration lock
    (``Mesh.changing_registry``) throughout, so a ``mesh.register()`` on another
    thread runs wholly before or after it: a service it registered under a name the
    config gives is replaced (as one registered before the reload is), or it finds
    the name taken."""
    registered, put = mesh.registered(), mesh.put_service
    replaced: list[Service | None] = []
    for plan, previous in diff.put:
        if not plan.installed:  # installed ahead when prepared
            install(plan)  # not under the lock: compiling runs the policies' code
        if (plan.discovery is not None and previous is not None
                and previous.discovery is not None and previous.service.backends):
            # A discovered service rebuilt (its balancer changed, say) starts from what
            # the old one discovered: its static backends, often none, would serve
            # every call until its own discovery's first resolve.
            plan.service.set_backends(previous.service.backends)
    # What an operator set by hand on the services replaced, read now: on the event
    # loop's thread, no admin action lands between this and the registry change.
    diff.kept = [what for plan, previous in diff.put if previous is not None
                 for what in carry(previous, plan)]
    with mesh.changing_registry():
        for plan, previous in diff.put:
            replacing = (previous.service if previous is not None
                         else registered.get(plan.name))
            put(plan.service, replacing=replacing, adopted=plan.adopted)
            replaced.append(replacing)
            if previous is not None:
                _narrow(previous, plan)
        version = mesh.config_version + 1  # (what this reload makes it)
        for previous in diff.removed:
            mesh.drop_service(previous.service, f"the config reload to version {version} "
                                                "removed it")
    return replaced


def _narrow(old: ServicePlan, new: ServicePlan) -> None:
    """Take out of ``old``'s service (rebuilt, about to drain) the static backends
    ``new`` no longer has: a call begun before the reload makes its later attempts
    (retries, hedges) on the retired service, and those must not go to a backend the
    config no longer names. Its attempts in flight there finish; with no backend
    left, a later attempt fails with ``NoHealthyBackendError``. Silently: the
    retired service is out of the registry, and the new one told of its backends."""
    if old.section.discovery is not None or new.section.discovery is not None:
        return  # (discovery owns the set; the old driver stops when it retires)
    keep = {b.address for b in new.service.backends}
    live = old.service
    if any(b.address not in keep for b in live.backends):
        live.replace_backends([b for b in live.backends if b.address in keep])


def changes_of(diff: Diff, replaced: list[Service | None]) -> Changes:
    """What :func:`register` changed (``replaced``: what it returned), with the
    running services to switch."""
    changes = Changes(updates=list(diff.update),  # switched later, in chunks
                      kept=list(diff.kept))
    for (plan, _), replacing in zip(diff.put, replaced, strict=True):
        changes.started.append(plan.service)
        (changes.changed if replacing is not None else changes.added).append(plan.name)
        if replacing is not None:
            changes.retired.append(replacing)
    for previous in diff.removed:
        changes.removed.append(previous.name)
        changes.retired.append(previous.service)
    return changes


SWITCH_CHUNK = 100
"""Services switched to their new pipelines between two turns of the event loop."""


async def switch(mesh: Mesh, changes: Changes) -> None:
    """Switch each running service of ``changes.updates`` to its new pipeline (compiled
    ahead by :func:`prepare`) and backends, letting the event loop run between
    chunks of :data:`SWITCH_CHUNK`: a service switches in one assignment (its calls
    see the old pipeline or the new one), and thousands of them never hold up the
    loop more than one chunk. The switches cannot fail: each pipeline was compiled
    for its service ahead (compiled again here only if the service changed since,
    as ``Service.set_pipeline`` does), each backend checked when it was built."""
    for index, (old, new) in enumerate(changes.updates):
        if index and index % SWITCH_CHUNK == 0:
            await asyncio.sleep(0)
        _update(mesh, old, new, changes)
    changes.updates.clear()


def switch_now(mesh: Mesh, changes: Changes) -> None:
    """:func:`switch` in one go, without an event loop."""
    for old, new in changes.updates:
        _update(mesh, old, new, changes)
    changes.updates.clear()


async def release(plan: Plan) -> None:
    """Let go of ``plan`` (replaced by a reload) :data:`SWITCH_CHUNK` services at a
    time, the event loop running between: dropped at once, the thousands of objects
    of its services (policies, sections, pipelines) are freed in one go, tens of
    milliseconds for 3,000 services in which the loop serves nothing. Its services'
    plans, sections and data are held here (the plan itself, its config included,
    is left as it is for whoever still holds it) and let go of in chunks."""
    data = plan.document.data.get("services")
    parts: list[object] = [*plan.services.values(), *plan.config.services.values(),
                           *(data.values() if isinstance(data, dict) else ())]
    del plan, data  # only the caller's reference is left: dropping it is cheap now
    while parts:
        del parts[-SWITCH_CHUNK:]
        await asyncio.sleep(0)


async def finish(mesh: Mesh, changes: Changes, drains: set[asyncio.Task[None]]) -> None:
    """The async part of applying: start the new services' components (when the mesh
    is open), and drain the retired services in the background (tasks in ``drains``),
    :data:`SWITCH_CHUNK` services at a time with the event loop running between."""
    await mesh.start_services(changes.started)
    for index, service in enumerate(changes.retired):
        if index and index % SWITCH_CHUNK == 0:
            await asyncio.sleep(0)  # the retiring tasks run in chunks, calls between
        task = asyncio.get_running_loop().create_task(retire(mesh, service))
        drains.add(task)
        task.add_done_callback(drains.discard)


def describe(changes: Changes) -> str:
    """``changes`` in words, for logs."""
    parts = [f"{what} {', '.join(names)}" for what, names in
             (("added", changes.added), ("changed", changes.changed),
              ("removed", changes.removed)) if names]
    return "; ".join(parts) or "nothing changed"
