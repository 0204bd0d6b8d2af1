"""A reload compiles every changed service's pipeline in the worker thread that
builds the config: the event loop only switches to what was prepared."""

from __future__ import annotations

import asyncio
import gc
import threading
from pathlib import Path
from typing import Any

import pytest

import meshlite as ml
from meshlite.config import _apply as apply_module
from meshlite.config._load import gc_paused, managed_of
from meshlite.discovery._yaml import YAMLError, load_yaml
from meshlite.routing import Service


def config(attempts: int, extra: str = "") -> str:
    lines = ["services:"]
    for i in range(20):
        lines += [f"  s{i}:", '    backends: ["http://127.0.0.1:1"]',
                  f"    retry: {{attempts: {attempts}}}"]
    return "\n".join(lines) + "\n" + extra


async def test_the_loop_compiles_no_pipeline_during_a_reload(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "mesh.yaml"
    path.write_text(config(3), encoding="utf-8")
    mesh = ml.Mesh.from_config(str(path), environ={}, hot_reload=False)
    compiled_on: list[int] = []
    original = Service._compile

    def spy(self: Service, pipeline: Any, injected: Any) -> Any:
        compiled_on.append(threading.get_ident())
        return original(self, pipeline, injected)

    async with mesh:
        before = mesh.service("s0").async_handler()
        monkeypatch.setattr(Service, "_compile", spy)
        extra = '  new:\n    backends: ["http://127.0.0.1:2"]\n    retry: {attempts: 2}\n'
        path.write_text(config(4).replace("services:\n", "services:\n" + extra),
                        encoding="utf-8")
        assert await mesh.reload() is True
        loop_thread = threading.get_ident()
        assert len(compiled_on) >= 21  # 20 changed services, the new one (built, installed)
        assert loop_thread not in compiled_on
        retry = next(p for p in mesh.service("s0").pipeline.walk() if p.kind == "retry")
        assert retry.options.attempts == 4
        assert mesh.service("s0").async_handler() is not before
        assert "new" in mesh.registered()
        managed = managed_of(mesh)
        assert managed is not None
        assert all(p.compiled is None for p in managed.plan.services.values())


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
        assert composed
        assert set(composed) == {"reload"}
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
    turns = 0
    seen: list[int] = []
    original = Service.set_pipeline

    def spy(self: Service, pipeline: Any) -> None:
        seen.append(turns)
        original(self, pipeline)

    async def ticker() -> None:
        nonlocal turns
        while True:
            await asyncio.sleep(0)
            turns += 1

    async with mesh:
        monkeypatch.setattr(Service, "set_pipeline", spy)
        task = asyncio.create_task(ticker())
        version = mesh.config_version
        path.write_text(config(4), encoding="utf-8")
        try:
            assert await mesh.reload() is True
        finally:
            task.cancel()
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
    turns = 0
    seen: list[int] = []
    original = apply_module.retire

    async def spy(mesh: ml.Mesh, service: Service) -> None:
        seen.append(turns)
        await original(mesh, service)

    async def ticker() -> None:
        nonlocal turns
        while True:
            await asyncio.sleep(0)
            turns += 1

    monkeypatch.setattr(apply_module, "retire", spy)
    async with mesh:
        old = mesh.service("s0")
        task = asyncio.create_task(ticker())
        changed = config(3).replace("retry: {attempts: 3}",
                                    "retry: {attempts: 3}\n    balancer: random")
        path.write_text(changed, encoding="utf-8")  # routing changed: every one replaced
        try:
            assert await mesh.reload() is True
            await until_drained(mesh)
        finally:
            task.cancel()
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
