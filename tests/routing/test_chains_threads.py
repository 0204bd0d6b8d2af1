"""A service's sync chain, compiled on first use by one thread while another thread
switches the service's pipeline or injects a policy: the switch holds."""

from __future__ import annotations

import threading
from typing import Any

import pytest

import meshlite as ml
from meshlite._context import CallContext
from meshlite._policy import AsyncHandler, Handler


class Tag(ml.Policy):
    """Notes its tag in ``seen`` on each sync call; its first ``wrap`` can be held
    (``holding`` is set while it waits for ``hold``)."""

    kind = "tag"

    def __init__(self, tag: str, seen: list[str], hold: threading.Event | None = None
                 ) -> None:
        super().__init__()
        self.tag, self.seen, self.hold = tag, seen, hold
        self.holding = threading.Event()

    def wrap(self, call_next: Handler) -> Handler:
        hold, self.hold = self.hold, None
        if hold is not None:
            self.holding.set()
            assert hold.wait(30)
        tag, seen = self.tag, self.seen

        def handle(ctx: CallContext) -> Any:
            seen.append(tag)
            return call_next(ctx)

        return handle

    def awrap(self, call_next: AsyncHandler) -> AsyncHandler:
        return call_next


def _call(service: ml.Service) -> Any:
    return service.sync_handler()(CallContext(lambda backend: "ok", (), {}, "op", "s"))


def _compile_held(service: ml.Service, policy: Tag, hold: threading.Event,
                  errors: list[BaseException]) -> threading.Thread:
    """Start a thread whose first sync call compiles the chain, held in ``policy``'s
    wrap until ``hold`` is set."""
    def run() -> None:
        try:
            _call(service)
        except BaseException as error:
            errors.append(error)

    thread = threading.Thread(target=run)
    thread.start()
    assert policy.holding.wait(30)
    return thread


def test_a_pipeline_switched_while_a_thread_compiles_the_sync_chain_holds() -> None:
    seen: list[str] = []
    hold = threading.Event()
    old = Tag("old", seen, hold)
    service = ml.Service("s", backends=["b:1"], pipeline=ml.Pipeline(old))
    errors: list[BaseException] = []
    thread = _compile_held(service, old, hold, errors)
    service.set_pipeline(ml.Pipeline(Tag("new", seen)))
    hold.set()
    thread.join(30)
    assert not thread.is_alive()
    assert not errors
    seen.clear()
    assert _call(service) == "ok"
    assert seen == ["new"]  # was ["old"]: every later sync call ran the old pipeline


def test_a_policy_injected_while_a_thread_compiles_the_sync_chain_runs() -> None:
    seen: list[str] = []
    hold = threading.Event()
    tag = Tag("p", seen, hold)
    service = ml.Service("s", backends=["b:1"], pipeline=ml.Pipeline(tag))
    errors: list[BaseException] = []
    thread = _compile_held(service, tag, hold, errors)
    remove = service.inject(ml.FaultInjection(rate=1.0, error=ConnectionError("chaos")))
    hold.set()
    thread.join(30)
    assert not thread.is_alive()
    with pytest.raises(ConnectionError, match="chaos"):  # was "ok": no fault injected
        _call(service)
    remove()
    assert _call(service) == "ok"


@pytest.mark.usefixtures("frequent_thread_switches")
def test_threads_compiling_at_once_share_one_chain() -> None:
    seen: list[str] = []
    service = ml.Service("s", backends=["b:1"], pipeline=ml.Pipeline(Tag("t", seen)))
    start = threading.Barrier(32)
    handlers: list[Handler] = []

    def run() -> None:
        start.wait()
        handlers.append(service.sync_handler())

    threads = [threading.Thread(target=run) for _ in range(32)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(handlers) == 32
    assert len({id(h) for h in handlers}) == 1
