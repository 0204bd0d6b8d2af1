"""A reload and ``mesh.register()`` (or another reload) on other threads are serialized
on the mesh's registration lock: the mesh ends as if one had run entirely before the
other, never with a service half-applied or one of the two changes lost."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from _races import ReadThen

import meshlite as ml
from meshlite.config import ConfigReloaded

ROUNDS = 25
NAMES = 40  # services each reload adds (and the next one removes)
HOOKS = 100


def config(generation: int) -> str:
    names = "".join(f'  g{generation}n{i}:\n    backends: ["cfg:1"]\n' for i in range(NAMES))
    return f'services:\n  base:\n    backends: ["cfg:1"]\n{names}'


def names_of(generation: int) -> list[str]:
    return [f"g{generation}n{i}" for i in range(NAMES)]


def in_threads(*work: Callable[[], object]) -> list[object]:
    """Run each of ``work`` on a thread of its own; their results, in order."""
    results: list[object] = [None] * len(work)

    def run(index: int) -> None:
        try:
            results[index] = work[index]()
        except BaseException as error:  # checked by the caller
            results[index] = error

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(len(work))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(thread.is_alive() for thread in threads), "a thread never finished"
    return results


def address(service: ml.Service) -> str:
    return str(service.backends[0].address)


@pytest.mark.usefixtures("frequent_thread_switches")
def test_register_racing_a_reload_that_adds_the_name_leaves_one_whole_service(
        tmp_path: Path) -> None:
    path = tmp_path / "mesh.yaml"
    path.write_text(config(0), encoding="utf-8")
    mesh = ml.Mesh.from_config(str(path), environ={}, hot_reload=False)
    for _ in range(HOOKS):  # each service registered subscribes them: a wider race
        mesh.add_hook(lambda event: None)
    for generation in range(1, ROUNDS + 1):
        path.write_text(config(generation), encoding="utf-8")
        names = names_of(generation)
        mine = [ml.Service(name, backends=["code:1"]) for name in reversed(names)]
        finished = threading.Event()

        def reload(finished: threading.Event = finished) -> bool:
            try:
                return mesh.reload_sync()
            finally:
                finished.set()

        def register(first: str = names[0], mine: list[ml.Service] = mine,
                     finished: threading.Event = finished) -> list[str]:
            # From the moment the reload's first new service shows, register the
            # same names from the other end: the two meet in the middle.
            while first not in mesh.registered() and not finished.is_set():
                pass
            taken = []
            for service in mine:
                try:
                    mesh.register(service)
                except ml.ConfigError:
                    continue
                taken.append(service.name)
            return taken

        applied, registered = in_threads(reload, register)
        assert applied is True, applied
        assert isinstance(registered, list), registered
        assert mesh.config_version == generation
        services = mesh.registered()
        for name in names:
            # The config's service, whole: in the registry and where calls go. A
            # code registration either came first (and the reload replaced it, as
            # it replaces any service its file names) or found the name taken.
            assert address(services[name]) == "cfg:1", (name, registered)
            assert mesh.service(name) is services[name], name
        for name in names_of(generation - 1):
            assert name not in services  # the reload removed them


@pytest.mark.usefixtures("frequent_thread_switches")
def test_two_reloads_on_other_threads_apply_one_after_the_other(tmp_path: Path) -> None:
    path = tmp_path / "mesh.yaml"
    path.write_text(config(0), encoding="utf-8")
    mesh = ml.Mesh.from_config(str(path), environ={}, hot_reload=False)
    for generation in range(1, ROUNDS + 1):
        path.write_text(config(generation), encoding="utf-8")
        results = in_threads(mesh.reload_sync, mesh.reload_sync)
        assert results == [True, True], results
        # One of them applied the file, the other found it in force.
        assert mesh.config_version == generation
        assert not mesh.reload_errors
        assert sorted(mesh.registered()) == sorted(["base", *names_of(generation)])


def test_a_reload_hook_may_register_and_reload(tmp_path: Path) -> None:
    path = tmp_path / "mesh.yaml"
    path.write_text(config(0), encoding="utf-8")
    mesh = ml.Mesh.from_config(str(path), environ={}, hot_reload=False)
    seen: list[object] = []

    def hook(event: object) -> None:
        if isinstance(event, ConfigReloaded):
            mesh.register(ml.Service(f"hooked{event.version}", backends=["code:1"]))
            seen.append(event.version)

    mesh.add_hook(hook)
    path.write_text(config(1), encoding="utf-8")
    assert mesh.reload_sync()
    assert seen == [1]
    assert address(mesh.service("hooked1")) == "code:1"


@pytest.mark.usefixtures("frequent_thread_switches")
def test_a_bad_reload_racing_registers_and_reloads_keeps_the_old_config_whole(
        tmp_path: Path) -> None:
    path = tmp_path / "mesh.yaml"
    path.write_text(config(0), encoding="utf-8")
    mesh = ml.Mesh.from_config(str(path), environ={}, hot_reload=False)
    before = dict(mesh.registered())
    for generation in range(1, ROUNDS + 1):
        # The new services, then one the mesh cannot build: nothing of it applies.
        path.write_text(config(generation) + "  broken:\n    backends: []\n    balancer: nope\n",
                        encoding="utf-8")
        code = ml.Service(f"code{generation}", backends=["code:1"])
        results = in_threads(mesh.reload_sync, mesh.reload_sync,
                             lambda code=code: mesh.register(code))
        assert results[:2] == [False, False], results
        assert results[2] is code
        before[code.name] = code
        assert dict(mesh.registered()) == before  # the same objects: nothing replaced
        assert mesh.config_version == 0
        assert len(mesh.reload_errors) == min(2 * generation, 50)


def test_a_reload_replacing_the_service_as_an_override_ends_is_not_undone(
        tmp_path: Path) -> None:
    path = tmp_path / "mesh.yaml"
    path.write_text('services:\n  users:\n    backends: ["cfg:1"]\n', encoding="utf-8")
    mesh = ml.Mesh.from_config(str(path), environ={}, hot_reload=False)
    mesh._services = registry = ReadThen(mesh._services)
    reloading: list[threading.Thread] = []

    def reload_now() -> None:
        # Another balancer: the reload builds a new service (backends alone would be
        # changed in place).
        path.write_text('services:\n  users:\n    backends: ["cfg:2"]\n'
                        '    balancer: random\n', encoding="utf-8")
        thread = threading.Thread(target=mesh.reload_sync, daemon=True)
        reloading.append(thread)
        thread.start()
        # Without the registry's lock the reload runs to its end here; with it, the
        # reload waits for the override to finish leaving (this wait then runs out).
        thread.join(1.0)

    with mesh.override("users", object()):
        registry.after = reload_now
    reloading[0].join(60)
    assert not reloading[0].is_alive()
    assert mesh.config_version == 1
    assert mesh.call_sync("users", lambda backend: backend.address) == "cfg:2"
