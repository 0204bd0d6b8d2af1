"""Which config each worker runs: ``meshlite_mesh_config_version`` counts the reloads
a process applied, so a restarted worker reads 0 beside workers that read N on the
same file; ``meshlite_mesh_config_info{sha256=...}`` is derived from the file's
text, so every worker running the same file shows the same value. Checked under
``uvicorn --workers 2`` on loopback, with one worker killed and restarted."""

from __future__ import annotations

import hashlib
import os
import re
import signal
import sys
from pathlib import Path

import pytest
from _system import wait_for
from _workers import fresh, uvicorn_workers

import meshlite as ml
from meshlite.observability import render
from meshlite.testing import FakeBackend

pytest.importorskip("prometheus_client")
pytest.importorskip("uvicorn")
pytest.importorskip("starlette")

CONFIG = """\
services:
  users:
    backends: ["{url}"]
    retry: {{attempts: {attempts}}}
hot_reload: true
"""


def samples(text: str, family: str) -> dict[int, tuple[dict[str, str], float]]:
    """``family``'s samples by the worker's pid: (labels, value)."""
    found = {}
    for line in text.splitlines():
        match = re.fullmatch(rf"{family}\{{(.*)\}} (\S+)", line)
        if match:
            labels = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1)))
            found[int(labels.pop("pid"))] = (labels, float(match.group(2)))
    return found


def short_sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def test_one_process_exports_the_hash_of_the_file_in_force(tmp_path: Path) -> None:
    config = tmp_path / "mesh.yaml"
    config.write_text(CONFIG.format(url="http://127.0.0.1:9", attempts=3))
    mesh = ml.Mesh.from_config(str(config), environ={})
    assert f'meshlite_mesh_config_info{{sha256="{short_sha(config)}"}} 1' in render(mesh)
    assert "meshlite_mesh_config_info" not in render(ml.Mesh([]))  # no file, no series


def test_a_rejected_reload_is_counted(tmp_path: Path) -> None:
    # An operator alerts on the counter: the log line of a rejection is easy to miss,
    # and the config in force (its hash, its version) does not change.
    config = tmp_path / "mesh.yaml"
    config.write_text(CONFIG.format(url="http://127.0.0.1:9", attempts=3))
    mesh = ml.Mesh.from_config(str(config), environ={})
    counter = "meshlite_mesh_config_reload_failures_total"
    assert f"{counter} 0" in render(mesh)
    for attempts in ("-1", "zero"):
        config.write_text(CONFIG.format(url="http://127.0.0.1:9", attempts=attempts))
        assert mesh.reload_sync() is False
    assert f"{counter} 2" in render(mesh)
    assert mesh.reload_failures == 2
    config.write_text(CONFIG.format(url="http://127.0.0.1:9", attempts=2))
    assert mesh.reload_sync() is True
    assert f"{counter} 2" in render(mesh)  # a counter: the good file does not reset it
    assert "meshlite_mesh_config_version 1" in render(mesh)


@pytest.mark.timeout(150)
@pytest.mark.skipif(sys.platform == "win32", reason="pre-fork workers are POSIX")
def test_workers_on_the_same_file_agree_on_its_hash_whatever_their_reload_count(
        tmp_path: Path) -> None:
    with FakeBackend() as backend, fresh() as client:
        config = tmp_path / "mesh.yaml"
        config.write_text(CONFIG.format(url=backend.url, attempts=3))
        shared = tmp_path / "multiproc"
        with uvicorn_workers(tmp_path, config, shared, workers=2) as app:
            def scrape() -> str:
                return client.get(f"{app}/metrics").text

            def versions() -> dict[int, float]:
                return {pid: v for pid, (_, v) in
                        samples(scrape(), "meshlite_mesh_config_version").items()}

            wait_for(lambda: len(versions()) == 2, 60, "both workers report")
            config.write_text(CONFIG.format(url=backend.url, attempts=4))  # a reload
            wait_for(lambda: list(versions().values()) == [1.0, 1.0], 60,
                     "both workers applied the reload")
            first, second = sorted(versions())
            os.kill(first, signal.SIGKILL)  # uvicorn starts a new worker in its place

            def replaced() -> str | None:
                # Both series of the new worker, from one scrape (its file may be
                # read between the two gauges' first writes).
                text = scrape()
                pids = [set(samples(text, family)) for family in
                        ("meshlite_mesh_config_version", "meshlite_mesh_config_info")]
                ok = pids[0] == pids[1] and len(pids[0]) == 2 and first not in pids[0]
                return text if ok else None

            text = wait_for(replaced, 60, "a new worker replaced the killed one")
        version = {pid: v for pid, (_, v) in
                   samples(text, "meshlite_mesh_config_version").items()}
        [restarted] = set(version) - {second}
        assert version == {second: 1.0, restarted: 0.0}  # per process: they differ
        info = samples(text, "meshlite_mesh_config_info")
        assert info == {pid: ({"sha256": short_sha(config)}, 1.0)
                        for pid in (second, restarted)}  # same file: the same hash
