"""A reload parses the file away from the event loop, then validates, builds and
compiles only the services whose section changed, on the loop a slice at a time;
applying touches only those services."""

from __future__ import annotations

import asyncio
import gc
import threading
import weakref
from pathlib import Path
from typing import Any

import pytest

import meshlite as ml
from meshlite.config import _apply as apply_module
from meshlite.config import _build as build_module
from meshlite.config import _steps as steps_module
from meshlite.config._load import gc_paused, managed_of
from meshlite.discovery._yaml import YAMLError, _caps_nesting, load_yaml
from meshlite.routing import BackendsChanged, Service


def config(attempts: int, extra: str = "") -> str:
    lines = ["services:"]
    for i in range(20):
        lines += [f"  s{i}:", '    backends: ["http://127.0.0.1:1"]',
                  f"    retry: {{attempts: {attempts}}}"]
    return "\n".join(lines) + "\n" + extra


class LoopTurns:
    """Counts the turns of the running event loop while open (``async with``): a task
    that yields to the loop and adds one, over and over."""

    def __init__(self) -> None:
        self.n = 0
        self._task: asyncio.Task[None] | None = None

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(0)
            self.n += 1

    async def __aenter__(self) -> LoopTurns:
        self._task = asyncio.create_task(self._tick())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()


async def test_a_reload_builds_and_touches_only_the_services_that_changed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "mesh.yaml"
    path.write_text(config(3), encoding="utf-8")
    mesh = ml.Mesh.from_config(str(path), environ={}, hot_reload=False)
    built: list[str] = []
    updated: list[str] = []
    compiled: list[str] = []
    real_service, real_update, real_compile = build_module._service, apply_module._update, \
        Service._compile

    def service_spy(name: str, *args: Any) -> Any:
        built.append(name)
        return real_service(name, *args)

    def update_spy(mesh: Any, old: Any, new: Any, changes: Any) -> None:
        updated.append(new.name)
        real_update(mesh, old, new, changes)

    def compile_spy(self: Service, pipeline: Any, injected: Any) -> Any:
        compiled.append(self.name)
        return real_compile(self, pipeline, injected)

    async with mesh:
        monkeypatch.setattr(build_module, "_service", service_spy)
        monkeypatch.setattr(apply_module, "_update", update_spy)
        monkeypatch.setattr(Service, "_compile", compile_spy)
        unchanged = mesh.service("s5").async_handler()
        text = config(3).replace("attempts: 3}", "attempts: 4}", 2)  # s0 and s1
        extra = '  new:\n    backends: ["http://127.0.0.1:2"]\n'
        path.write_text(text.replace("services:\n", "services:\n" + extra), encoding="utf-8")
        assert await mesh.reload() is True
        assert sorted(built) == ["new", "s0", "s1"]
        assert sorted(updated) == ["s0", "s1"]  # the 18 others are not even looked at
        assert set(compiled) == {"new", "s0", "s1"}
        assert mesh.service("s5").async_handler() is unchanged
        retry = next(p for p in mesh.service("s1").pipeline.walk() if p.kind == "retry")
        assert retry.options.attempts == 4
        assert "new" in mesh.registered()
        managed = managed_of(mesh)
        assert managed is not None
        assert all(p.compiled is None for p in managed.plan.services.values())


async def test_equal_values_of_another_type_are_a_change(tmp_path: Path) -> None:
    # 1 == True in Python, but attempts: true is not a count: the section is checked.
    path = tmp_path / "mesh.yaml"
    path.write_text(config(1), encoding="utf-8")
    mesh = ml.Mesh.from_config(str(path), environ={}, hot_reload=False)
    async with mesh:
        path.write_text(config(1).replace("attempts: 1}", "attempts: true}", 1),
                        encoding="utf-8")
        assert await mesh.reload() is False
        assert "services.s0.retry.attempts: must be a valid integer, got True" in \
            mesh.reload_errors[-1].errors
        assert mesh.config_version == 0


async def test_the_build_runs_on_the_loop_a_slice_at_a_time(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "mesh.yaml"
    path.write_text(config(3), encoding="utf-8")
    mesh = ml.Mesh.from_config(str(path), environ={}, hot_reload=False)
    monkeypatch.setattr(steps_module, "SLICE_SECONDS", 0.0)  # a step per slice
    turns = LoopTurns()
    seen: list[tuple[int, int]] = []
    original = Service._compile

    def spy(self: Service, pipeline: Any, injected: Any) -> Any:
        seen.append((turns.n, threading.get_ident()))
        return original(self, pipeline, injected)

    async with mesh:
        monkeypatch.setattr(Service, "_compile", spy)
        path.write_text(config(4), encoding="utf-8")
        async with turns:
            assert await mesh.reload() is True
    assert len(seen) == 20
    assert {thread for _, thread in seen} == {threading.get_ident()}
    assert len({turn for turn, _ in seen}) == 20  # the loop ran between any two


def test_a_service_changed_since_compiling_is_compiled_again() -> None:
    service = Service("users", backends=["http://127.0.0.1:1"])
    compiled = service.compile_pipeline(ml.Pipeline(ml.Retry(attempts=2)))
    events: list[Any] = []
    service.add_hook(events.append)  # after compiling: the hooks changed
    remove = service.inject(ml.FaultInjection(rate=1.0))  # and the injected policies
    service.set_pipeline(compiled)
    assert service.async_handler() is not compiled.handler
    assert service._injected
    assert service.pipeline is compiled.pipeline
    retry = next(p for p in service.pipeline.walk() if p.kind == "retry")
    assert retry.hooks._hooks == (events.append,)  # subscribed once, the hook of now
    remove()


def test_an_unchanged_service_switches_to_the_compiled_handler() -> None:
    service = Service("users", backends=["http://127.0.0.1:1"])
    events: list[Any] = []
    service.add_hook(events.append)
    compiled = service.compile_pipeline(ml.Pipeline(ml.Retry(attempts=2)))
    service.set_pipeline(compiled)
    assert service.async_handler() is compiled.handler
    retry = next(p for p in service.pipeline.walk() if p.kind == "retry")
    assert retry.hooks._hooks == (events.append,)


def test_objects_made_while_collection_is_paused_are_not_left_young() -> None:
    # Left young, the first collection after the pause scans them all at once, the
    # GIL held: every thread (an event loop's) stalls for the whole scan.
    kept: list[list[int]] = []
    gc.disable()  # no collection right after the pause, to see what it left young
    try:
        with gc_paused():
            kept += [[i] for i in range(50_000)]
        young = gc.get_count()[0]
    finally:
        gc.enable()
    assert young < 1_000
    assert len(kept) == 50_000


def test_yaml_off_the_main_thread_is_composed_event_by_event(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # libyaml composes a whole document in one call that holds the GIL; PyYAML's
    # composer (over libyaml's events) lets other threads run in between.
    import yaml

    composed: list[str] = []
    original = yaml.composer.Composer.compose_node

    def spy(self: Any, parent: Any, index: Any) -> Any:
        composed.append(threading.current_thread().name)
        return original(self, parent, index)

    monkeypatch.setattr(yaml.composer.Composer, "compose_node", spy)
    text = "a: on\nb: true\nc: &x [1, {d: 2.5}]\ne: *x\nf: ~\n"
    on_main = load_yaml(text)
    seen: list[Any] = []
    worker = threading.Thread(target=lambda: seen.append(load_yaml(text)), name="reload")
    worker.start()
    worker.join()
    assert seen == [on_main]
    assert on_main == {"a": "on", "b": True, "c": [1, {"d": 2.5}], "e": [1, {"d": 2.5}],
                       "f": None}
    if hasattr(yaml, "CSafeLoader"):
        assert "reload" in composed
        # On the main thread libyaml composes, where it limits nesting (PyYAML 6.0.4 on).
        assert ("MainThread" in composed) != _caps_nesting(yaml.CSafeLoader)
    errors: list[Exception] = []
    worker = threading.Thread(target=lambda: errors.append(_catch("a: *nowhere\n")))
    worker.start()
    worker.join()
    assert isinstance(errors[0], YAMLError)


def _catch(text: str) -> Exception:
    try:
        load_yaml(text)
    except YAMLError as error:
        return error
    return AssertionError("parsed")


async def test_the_loop_runs_between_chunks_of_switched_services(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "mesh.yaml"
    path.write_text(config(3), encoding="utf-8")
    mesh = ml.Mesh.from_config(str(path), environ={}, hot_reload=False)
    monkeypatch.setattr(apply_module, "SWITCH_CHUNK", 5)
    turns = LoopTurns()
    seen: list[int] = []
    original = Service.set_pipeline

    def spy(self: Service, pipeline: Any) -> None:
        seen.append(turns.n)
        original(self, pipeline)

    async with mesh:
        monkeypatch.setattr(Service, "set_pipeline", spy)
        version = mesh.config_version
        path.write_text(config(4), encoding="utf-8")
        async with turns:
            assert await mesh.reload() is True
        assert len(seen) == 20
        assert len(set(seen)) == 4  # 20 services in chunks of 5, the loop between
        assert all(seen[i] == seen[i - i % 5] for i in range(20))  # a chunk in one go
        assert mesh.config_version == version + 1
        for i in range(20):
            retry = next(p for p in mesh.service(f"s{i}").pipeline.walk()
                         if p.kind == "retry")
            assert retry.options.attempts == 4


async def test_retired_services_are_drained_in_chunks(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "mesh.yaml"
    path.write_text(config(3), encoding="utf-8")
    mesh = ml.Mesh.from_config(str(path), environ={}, hot_reload=False)
    monkeypatch.setattr(apply_module, "SWITCH_CHUNK", 5)
    turns = LoopTurns()
    seen: list[int] = []
    original = apply_module.retire

    async def spy(mesh: ml.Mesh, service: Service) -> None:
        seen.append(turns.n)
        await original(mesh, service)

    monkeypatch.setattr(apply_module, "retire", spy)
    async with mesh:
        old = mesh.service("s0")
        changed = config(3).replace("retry: {attempts: 3}",
                                    "retry: {attempts: 3}\n    balancer: random")
        path.write_text(changed, encoding="utf-8")  # routing changed: every one replaced
        async with turns:
            assert await mesh.reload() is True
            await until_drained(mesh)
        assert mesh.service("s0") is not old
        assert len(seen) == 20
        assert len(set(seen)) > 1  # not all 20 in one turn of the loop


async def until_drained(mesh: ml.Mesh) -> None:
    managed = managed_of(mesh)
    assert managed is not None
    for _ in range(1000):
        if not managed.drains:
            return
        await asyncio.sleep(0.001)
    pytest.fail("retired services did not drain")


def test_a_service_adopted_ahead_gets_the_hooks_added_before_it_is_registered() -> None:
    # A reload adopts its new services between turns of the loop, then registers
    # them: a hook added in between reaches them, once.
    mesh = ml.Mesh()
    service = Service("late", backends=["http://127.0.0.1:1"])
    mesh.adopt(service)
    events: list[Any] = []
    mesh.add_hook(events.append)
    mesh.put_service(service, adopted=True)
    assert mesh.service("late") is service
    service.set_backends(["http://127.0.0.1:2"])
    changed = [e for e in events if isinstance(e, BackendsChanged)]
    assert [(e.added, e.removed) for e in changed] == [(("http://127.0.0.1:2",),
                                                        ("http://127.0.0.1:1",))]


async def test_the_replaced_plan_is_let_go_of_in_chunks(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "mesh.yaml"
    path.write_text(config(3), encoding="utf-8")
    mesh = ml.Mesh.from_config(str(path), environ={}, hot_reload=False)
    monkeypatch.setattr(apply_module, "SWITCH_CHUNK", 5)
    managed = managed_of(mesh)
    assert managed is not None
    plans = [weakref.ref(p) for p in managed.plan.services.values()]  # none held here
    alive: list[int] = []

    async def ticker() -> None:
        while True:
            alive.append(sum(p() is not None for p in plans))
            await asyncio.sleep(0)

    async with mesh:
        task = asyncio.create_task(ticker())
        path.write_text(config(4), encoding="utf-8")  # every service's plan replaced
        try:
            assert await mesh.reload() is True
            await until_drained(mesh)
            await asyncio.sleep(0)
        finally:
            task.cancel()
    assert alive[-1] == 0
    assert {15, 10, 5} <= set(alive)  # 20 plans, 5 at a time, the loop between


async def test_a_reload_cancelled_while_services_switch_is_finished_first(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Once the registry starts to change the reload completes, cancelled or not: no
    # mix of old and new config is left behind, and it is recorded.
    path = tmp_path / "mesh.yaml"
    path.write_text(config(3), encoding="utf-8")
    mesh = ml.Mesh.from_config(str(path), environ={}, hot_reload=False)
    monkeypatch.setattr(apply_module, "SWITCH_CHUNK", 2)
    switching = asyncio.Event()
    original = Service.set_pipeline

    def spy(self: Service, pipeline: Any) -> None:
        switching.set()
        original(self, pipeline)

    async with mesh:
        monkeypatch.setattr(Service, "set_pipeline", spy)
        path.write_text(config(4), encoding="utf-8")
        reload = asyncio.create_task(mesh.reload())
        await switching.wait()  # a few services switched, most not yet
        reload.cancel()
        with pytest.raises(asyncio.CancelledError):
            await reload
        for i in range(20):
            retry = next(p for p in mesh.service(f"s{i}").pipeline.walk()
                         if p.kind == "retry")
            assert retry.options.attempts == 4
        assert mesh.config_version == 1
        managed = managed_of(mesh)
        assert managed is not None
        assert managed.plan.config.services["s19"].retry is not None
        assert managed.plan.config.services["s19"].retry.attempts == 4
