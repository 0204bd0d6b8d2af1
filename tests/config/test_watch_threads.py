"""Two threads calling ``mesh.watch()`` at once on a mesh that follows no file: the
file is applied once and both get the one watcher the mesh starts, whichever thread
reads the file first."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

import meshlite as ml
from meshlite.config import _mesh_config
from meshlite.config._watcher import ConfigWatcher

CONFIG = 'services:\n  users:\n    backends: ["http://127.0.0.1:1"]\n'


class Overlap:
    """Stands for reading the file: the first reader waits (at most ``wait``
    seconds) for a second one to come in, and ``most`` is the largest number of
    readers seen inside at once."""

    def __init__(self, read: Any, wait: float = 1.0) -> None:
        self.read, self.wait = read, wait
        self.lock = threading.Lock()
        self.inside = self.most = 0
        self.second = threading.Event()

    def __call__(self, path: str) -> str:
        with self.lock:
            self.inside += 1
            self.most = max(self.most, self.inside)
            if self.inside > 1:
                self.second.set()
        try:
            self.second.wait(self.wait)  # (a second reader comes in, or the time passes)
            return str(self.read(path))
        finally:
            with self.lock:
                self.inside -= 1


def test_two_threads_watching_at_once_apply_the_file_once_and_share_one_watcher(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "mesh.yaml"
    path.write_text(CONFIG)
    overlap = Overlap(_mesh_config.read_text)
    monkeypatch.setattr(_mesh_config, "read_text", overlap)
    mesh = ml.Mesh([])
    start = threading.Barrier(2)
    watchers: list[ConfigWatcher] = []
    errors: list[BaseException] = []

    def watch() -> None:
        start.wait(10)
        try:
            watchers.append(mesh.watch(path))
        except BaseException as error:  # (the test reports it)
            errors.append(error)

    threads = [threading.Thread(target=watch) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    assert len(watchers) == 2
    assert watchers[0] is watchers[1]
    attached = [c for c in mesh._components if isinstance(c, ConfigWatcher)]
    assert attached == [watchers[0]]
    assert [s.name for s in mesh.services] == ["users"]
    assert overlap.most == 1  # the second thread read nothing while the first applied


def test_a_second_file_is_still_refused_after_a_concurrent_first(tmp_path: Path) -> None:
    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    first.write_text(CONFIG)
    second.write_text(CONFIG)
    mesh = ml.Mesh([])
    mesh.watch(first)
    with pytest.raises(ml.ConfigError, match="already follows"):
        mesh.watch(second)
