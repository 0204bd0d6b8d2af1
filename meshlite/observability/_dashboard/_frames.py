"""The WebSocket feed's frames: a viewer gets the whole mesh once, in its ``hello``
(or in a ``tick``, when it connects before the first second was measured), then
each second only what changed since the frame it got before (a ``delta``).

At 300 services of 50 backends the whole mesh is about 0.8 MB; in a steady second
where a few backends took calls, a delta is a few kilobytes. Every viewer that got
the previous frame gets the same delta, so each frame is encoded at most twice a
second (once whole, for viewers that connected before any frame; once as a delta),
however many viewers there are.

The format is documented in docs/dashboard.md (WebSocket ``/ws``), for anyone
writing a viewer of their own; ``FEED_VERSION`` is in the ``hello``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["FEED_VERSION", "Feed", "delta_frame", "hello_frame"]

FEED_VERSION = 3
"""The feed's format: 1 sent a whole ``tick`` every second; 2 sends one ``tick``, then
``delta`` frames; 3 puts the whole mesh in the ``hello``, in the tick's shape, with
each service's balancer once (2 sent every service as ``/api/services`` does, about
315 bytes a backend, then a tick), and the deltas follow it."""


def _service_delta(before: dict[str, Any], now: dict[str, Any]) -> dict[str, Any]:
    """The fields of a service that changed, the backend rows that changed or were
    added (``backends``) and the addresses of the rows that left (``removed``)."""
    out = {k: v for k, v in now.items() if k != "backends" and before.get(k) != v}
    rows, old = now["backends"], before["backends"]
    if rows != old:  # most services: equal lists, compared without a dictionary
        previous = {row[0]: row for row in old}
        changed = [row for row in rows if previous.get(row[0]) != row]
        if changed:
            out["backends"] = changed
        present = {row[0] for row in rows}
        removed = [address for address in previous if address not in present]
        if removed:
            out["removed"] = removed
    return out


def delta_frame(before: dict[str, Any], now: dict[str, Any]) -> dict[str, Any]:
    """The ``delta`` from the tick payload ``before`` (the frame a viewer got last) to
    ``now`` (both as :func:`~._payload.tick_payload` makes them).

    ``services`` maps each service with a change to its changed fields (a service
    new since ``before`` comes whole: every field, every backend row); ``removed``
    lists the services gone. ``firing`` is there when it changed; ``alerts`` and
    ``refusals`` (events of that second) whenever ``now`` has them.
    """
    services: dict[str, Any] = {}
    old = before["services"]
    for name, entry in now["services"].items():
        previous = old.get(name)
        if previous is None:
            services[name] = entry
        else:
            changed = _service_delta(previous, entry)
            if changed:
                services[name] = changed
    out: dict[str, Any] = {"type": "delta", "second": now["second"], "services": services}
    removed = [name for name in old if name not in now["services"]]
    if removed:
        out["removed"] = removed
    if now["firing"] != before["firing"]:
        out["firing"] = now["firing"]
    for event in ("alerts", "refusals"):
        if event in now:
            out[event] = now[event]
    return out


def hello_frame(base: dict[str, Any] | None, balancers: dict[str, str],
                history_seconds: int, alerts: dict[str, Any]) -> dict[str, Any]:
    """The first frame on a connection: the format's ``version``, the charts' span
    (``history_seconds``), the ``/api/alerts`` answer, each service's balancer (the
    one thing a viewer needs that no tick holds), and the mesh as the last frame sent
    (``base``, a tick payload: ``second``, ``firing``, ``services``), which the next
    delta is taken from. Without a ``base`` (no second measured yet), the next frame
    is a whole tick. Each piece is there once: a backend is its tick row, about 50
    bytes."""
    out: dict[str, Any] = {"type": "hello", "version": FEED_VERSION,
                           "history_seconds": history_seconds, "alerts": alerts,
                           "balancers": balancers}
    if base is not None:  # its own events (alerts, refusals) were that second's news
        out.update(second=base["second"], firing=base["firing"], services=base["services"])
    return out


class Feed:
    """Which viewers got the previous frame, and that frame: the one each delta is
    taken from. A viewer that joins is greeted with it (:meth:`greet`, in its
    ``hello``); one that joined before any frame gets a whole ``tick``; one that
    could not take a frame is dropped by the sender, so a viewer kept has had every
    frame since its ``hello`` or ``tick``."""

    def __init__(self) -> None:
        self.previous: dict[str, Any] | None = None
        self.synced: set[Any] = set()

    def frames(self, update: dict[str, Any], clients: list[Any],
               encode: Callable[[Any], str]) -> list[str]:
        """The text to send each of ``clients`` for ``update`` (a tick payload),
        each kind encoded once."""
        previous, self.previous = self.previous, update
        whole = delta = None
        out = []
        for client in clients:
            if previous is not None and client in self.synced:
                if delta is None:
                    delta = encode(delta_frame(previous, update))
                out.append(delta)
            else:
                if whole is None:
                    whole = encode(update)
                out.append(whole)
        self.synced = set()  # until sent: see sent()
        return out

    def sent(self, clients: Iterable[Any]) -> None:
        """``clients`` took the last frame: the next one they get is a delta."""
        self.synced.update(clients)  # with those greeted while it was being sent

    def greet(self, client: Any) -> dict[str, Any] | None:
        """The frame to put in the ``hello`` of ``client``, which joins now: the next
        one it gets is a delta from it. None before the first frame (it then gets a
        whole tick). The ``hello`` must be sent before anything else is awaited, so
        that it goes out before the next frame."""
        if self.previous is not None:
            self.synced.add(client)
        return self.previous
