"""The dashboard's live state: once a second it samples every service, stores the
aggregates, evaluates the alert rules and pushes a frame to every WebSocket."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from ..._errors import ConfigError
from ..._events import Event
from ..._inbound._stats import DEFAULT_RATE_WINDOW
from ..._printable import origin_shown
from ..._statelog import log_state_change
from ..._throttle import Throttle, held_back
from ...routing._service import Service
from ...routing._snapshot import ServiceHealth, ServiceSnapshot, health_of, snapshot_of
from .._hostview import CallerRates
from ._attached import AttachedView, attached
from ._frames import Feed
from ._history import DEFAULT_HISTORY_SECONDS, History, ServiceSecond
from ._payload import micro, tick_payload
from ._rules import Alert
from ._sampler import Sampler
from ._webhook import post_alerts

if TYPE_CHECKING:
    from ...mesh._mesh import Mesh

__all__ = ["Client", "Monitor"]

_log = logging.getLogger("meshlite.dashboard")

_SAVE_EVERY = 5  # ticks between saves of the history (several workers)
_BASELINE = "$baseline"  # the saved history's key of its counts (no service's name)
_CARRIED_SECONDS = 60  # the longest gap a takeover fills with the calls made in it
_STEP_SECONDS = 2  # a wall clock moving this much more or less than the monotonic one was stepped
_SEND_TIMEOUT = 2.0  # a client that cannot take one update in this long is dropped

MAX_PENDING_NOTIFICATIONS = 100
"""Webhook notifications waiting for the ones before them at most: past it (alerts
changing faster than the webhook answers), the oldest waiting is dropped, logged at
most once a minute, so that neither memory nor the delay grows without end."""
_DROP_LOG_SECONDS = 60.0


class Client(Protocol):
    """What the monitor pushes updates to (a Starlette WebSocket)."""

    async def send_text(self, data: str) -> None: ...

    async def close(self, code: int = 1000, reason: str | None = None) -> None: ...


def dumps(data: Any) -> str:
    """Compact JSON."""
    return json.dumps(data, separators=(",", ":"))


class Monitor:
    """Samples ``mesh`` once a second while started.

    Args:
        mesh: The mesh to watch.
        max_clients: WebSocket clients served at once.
        history_seconds: Slots of each service's ring buffer.
        wall: Wall clock (seconds since the epoch) for timestamps; tests inject one.
            Only what is shown is stamped with it (the history's seconds, alerts'
            ``started_at``); the alerts' durations are measured on the mesh's clock
            (``mesh.clock.monotonic()``), which a stepped wall clock does not move.
        monotonic: The real monotonic clock a wall-clock step is told by (the
            history then moves with it); tests inject one.
    """

    def __init__(self, mesh: Mesh, *, max_clients: int,
                 history_seconds: int = DEFAULT_HISTORY_SECONDS,
                 wall: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.mesh = mesh
        self.max_clients = max_clients
        self.history_seconds = history_seconds
        self.wall = wall
        self.monotonic = monotonic
        self._stamps: tuple[float, float] | None = None  # (wall, monotonic) last tick
        self.histories: dict[str, History] = {}
        self.latest: dict[str, ServiceSecond] = {}
        self.clients: set[Client] = set()
        self.feed = Feed()  # who got the last frame: they are sent what changed since
        metrics = mesh.metrics
        self.attached = AttachedView(mesh) if attached(mesh) else None
        """The workers' state, for a dashboard attached to them (else None)."""
        self._sampler = (Sampler() if metrics is None else Sampler(
            metrics.call_counts, metrics.host_latency,
            None if self.attached is None else self.attached.state))
        self._task: asyncio.Task[None] | None = None
        # Webhook notifications (url, service, alerts, timeout) in order, sent one at
        # a time by one task: a receiver must never see "resolved" before "fired".
        self._outbox: deque[tuple[str, str, list[Alert], float]] = deque()
        self._sender: asyncio.Task[None] | None = None
        self._drops = Throttle(_DROP_LOG_SECONDS)
        shared = None if metrics is None else metrics.shared
        # With several workers, the history is kept in the shared directory: the
        # worker serving the dashboard next (after a restart) carries it on.
        self.saved = (None if shared is None
                      else os.path.join(shared.directory, "dashboard-history.json"))
        self._ticks = 0
        self.callers = CallerRates(DEFAULT_RATE_WINDOW)
        """The host's callers, second by second (several workers)."""
        self.owner = False
        """Made by a dashboard (which stops it), not by the mesh's HostMonitor."""
        self.servers = 0
        """Dashboards serving from it now: an owned monitor stops with the last one
        (a reload moving the dashboard starts the new server before the old stops)."""

    def services(self) -> list[Service]:
        """The services as calls see them now (an override's service while active)."""
        return [self.mesh.service(s.name) for s in self.mesh.services]

    def state(self, service: Service) -> tuple[ServiceSnapshot, ServiceHealth]:
        """``service``'s snapshot and health as the dashboard shows them: its own,
        or the workers' for a dashboard attached to them."""
        if self.attached is not None:
            return self.attached.state(service)
        return snapshot_of(service), health_of(service)

    def tick(self, now: float | None = None, at: float | None = None) -> dict[str, Any]:
        """Measure the second that just ended, record it, evaluate alerts, and
        return the update to push (see :func:`tick_payload`).

        ``now`` is the wall time (default ``wall()``); ``at`` the monotonic instant
        alert durations are measured on (default: the mesh clock's when ``now`` is
        not given, else ``now``, so a test drives both with one number)."""
        if now is None:
            now = self.wall()
            at = self.mesh.clock.monotonic() if at is None else at
            self._follow_steps(now)
        last = max((h.last for h in self.histories.values()), default=-1)
        second = max(int(now) - 1, last)
        measured = self._sampler.sample(self.services(), second)
        for s in measured:
            history = self.histories.get(s.name)
            if history is None:
                history = self.histories[s.name] = History(self.history_seconds)
            history.record(second, s.requests, s.errors, micro(s.p50), micro(s.p99))
        self.latest = {s.name: s for s in measured}
        if len(self.histories) > len(measured):  # a service left the mesh
            for name in self.histories.keys() - self.latest.keys():
                del self.histories[name]
        self._count_callers()
        alerts = self.mesh.alerts
        host = getattr(self.mesh, "host_monitor", None)
        # With several workers only the leading one evaluates (and notifies).
        changed = (alerts.evaluate(now, measured, self._emit, at)
                   if host is None or host.leading else [])
        for service, group in alerts.notifications(changed):
            self._post(service, group)
        payload = tick_payload(measured, alerts.as_dict() if changed else None,
                               len(alerts.firing()))
        inbound = getattr(self.mesh, "inbound", None)  # its meshlite.asgi middleware
        if inbound is not None:
            refusals = inbound.refusals.drain(second)
            if refusals:  # aggregated: one entry per action and route, never per request
                payload["refusals"] = refusals
        return payload

    def _follow_steps(self, now: float) -> None:
        """Move the history with a stepped wall clock (NTP, a resumed VM): one step back
        would otherwise pile every second into the newest until the wall clock passed it
        again, one forward would push the whole history out of the charts."""
        real = self.monotonic()
        previous, self._stamps = self._stamps, (now, real)
        if previous is None:
            return
        step = round((now - previous[0]) - (real - previous[1]))
        if abs(step) >= _STEP_SECONDS:
            _log.warning("dashboard: the wall clock was stepped by %+d s; the history "
                         "moves with it", step, extra={"step_seconds": step})
            for history in self.histories.values():
                history.shift(step)

    def _count_callers(self) -> None:
        metrics = self.mesh.metrics
        host = None if metrics is None else metrics.host_callers()
        if host is not None:
            self.callers.add(host)

    def _emit(self, name: str, event: Event) -> None:
        log_state_change(event)
        try:
            hooks = self.mesh.service(name).hooks
        except ConfigError:  # the service was removed meanwhile
            return
        if hooks.active:
            hooks.emit(event)

    def _post(self, service: str, group: list[Alert]) -> None:
        alerts = self.mesh.alerts
        if alerts.webhook is None:
            return
        outbox = self._outbox
        if len(outbox) >= MAX_PENDING_NOTIFICATIONS:
            url, late, _, _ = outbox.popleft()
            held = self._drops.passes(url)
            if held is not None:
                _log.warning("alert webhook %s is behind: %d notifications wait; the "
                             "oldest (for %s) was dropped%s", origin_shown(url), len(outbox), late,
                             held_back(held))
        outbox.append((alerts.webhook, service, group, alerts.webhook_timeout))
        if self._sender is None or self._sender.done():
            self._sender = asyncio.get_running_loop().create_task(self._deliver())

    async def _deliver(self) -> None:
        outbox = self._outbox
        while outbox:
            await post_alerts(*outbox.popleft())

    async def push(self, update: dict[str, Any]) -> None:
        """Send ``update`` (see :meth:`tick`) to every client at once: whole to a
        client that just connected, else only what changed since the frame it got
        before (:mod:`._frames`). A client that fails or stalls is dropped."""
        clients = list(self.clients)
        texts = self.feed.frames(update, clients, dumps)
        if not clients:
            return
        results = await asyncio.gather(
            *(asyncio.wait_for(c.send_text(t), _SEND_TIMEOUT)
              for c, t in zip(clients, texts, strict=True)), return_exceptions=True)
        for client, result in zip(clients, results, strict=True):
            if isinstance(result, Exception):
                self.clients.discard(client)
                with contextlib.suppress(Exception):
                    await client.close(1011)
            elif isinstance(result, BaseException):  # cancellation: ours, not the client's
                raise result
        self.feed.sent(c for c in clients if c in self.clients)  # not those that left

    async def _run(self) -> None:
        while True:
            # Wake just after each wall-clock second so slots line up with seconds.
            await asyncio.sleep(1.0 - self.wall() % 1.0 + 0.002)
            try:
                update = self.tick()
                self._ticks += 1
                if self._ticks % _SAVE_EVERY == 0:
                    self.save()
            except Exception:
                _log.exception("dashboard sampling failed; retrying next second")
                continue
            await self.push(update)

    def save(self) -> None:
        """Write the history to the shared directory (with several workers), with
        the host's call counts it was recorded up to: the dashboard serving next
        counts the calls made since into the seconds it missed."""
        if self.saved is None:
            return
        data: dict[str, Any] = {name: h.dump() for name, h in self.histories.items()}
        last = max((h.last for h in self.histories.values()), default=-1)
        data[_BASELINE] = {"second": last, "calls": self._sampler.counted()}
        tmp = f"{self.saved}.{os.getpid()}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f, separators=(",", ":"))
        os.replace(tmp, self.saved)

    def _restore(self) -> dict[str, Any] | None:
        """Load the saved history; returns its baseline (the second it was recorded
        up to and the host's call counts then), or None."""
        if self.saved is None or self.histories:
            return None
        try:
            with open(self.saved, encoding="utf-8") as f:
                data = json.load(f)
            baseline = data.pop(_BASELINE, None)
            self.histories = {name: History.load(h, self.history_seconds)
                              for name, h in data.items()}
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            _log.warning("dashboard: could not read the saved history %s; starting afresh",
                         self.saved, exc_info=True)
            return None
        return baseline if isinstance(baseline, dict) else None

    def _carry(self, baseline: dict[str, Any], now: int) -> None:
        """Count the calls made between the saved history's last second and ``now``
        (a dashboard that stopped, or was killed, up to five seconds after its last
        save; the takeover's own seconds) evenly into those seconds: without them
        the chart would dip, or miss them, at every takeover. A gap longer than
        :data:`_CARRIED_SECONDS`, or counts that went back (the directory was
        emptied), is left empty."""
        try:
            second = int(baseline["second"])
            saved = {name: (int(c[0]), int(c[1])) for name, c in baseline["calls"].items()}
        except (KeyError, TypeError, ValueError, IndexError, AttributeError):
            return
        seconds = range(second + 1, now + 1)
        n = len(seconds)
        if not 0 < n <= _CARRIED_SECONDS:
            return
        for name, (calls, failed) in self._sampler.counted().items():
            history, before = self.histories.get(name), saved.get(name)
            if history is None or before is None or history.last != second:
                continue
            made, errors = calls - before[0], failed - before[1]
            if made < 0 or errors < 0:
                continue
            for i, t in enumerate(seconds):  # the remainders go to the later seconds
                history.record(t, made * (i + 1) // n - made * i // n,
                               errors * (i + 1) // n - errors * i // n, None, None)

    def start(self) -> None:
        """Begin sampling on the running loop (takes a baseline at once; with several
        workers, carries on the history the host's dashboard saved)."""
        if self._task is None:
            baseline = self._restore()
            now = int(self.wall()) - 1
            self._sampler.sample(self.services(), now)
            if baseline is not None:
                self._carry(baseline, now)
            self._count_callers()
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Stop sampling and wait (bounded by their timeout) for webhook posts."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait([task])  # unlike `await task`, never raises its CancelledError
            with contextlib.suppress(OSError):
                self.save()
        sender = self._sender
        if sender is not None and not sender.done():
            # each post is bounded by its timeout; in order, so allow for all of them
            bound = sum(t for *_, t in self._outbox) + self.mesh.alerts.webhook_timeout + 1.0
            _, late = await asyncio.wait([sender], timeout=bound)
            for post in late:
                post.cancel()
