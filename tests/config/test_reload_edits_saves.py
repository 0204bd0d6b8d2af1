"""The ways a file gets edited under a running service with hot reload: an editor
saving five times within a second, a partial write then the rest, the file deleted
then made again, a new file renamed over it, the file swapped for a symbolic link and
the link swapped. Under a load of calls that counts every answer, the config in force
always ends as the last save (``mesh.config_sha256``, the backends), the audit log's
last record names that text's SHA-256, and no call fails for the edits."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import meshlite as ml
from meshlite.testing import FakeBackend


def _text(url: str, n: int) -> str:
    return f"""services:
  users:
    backends: ["{url}"]
    retry: {{attempts: {n}}}
  orders:
    backends: ["{url}"]
    timeout: {n}.5
hot_reload: {{enabled: true, step_ms: 30}}
audit: audit.jsonl
"""


async def _in_force(mesh: ml.Mesh, text: str) -> None:
    sha = hashlib.sha256(text.encode()).hexdigest()
    deadline = time.monotonic() + 30.0
    while mesh.config_sha256 != sha:
        assert time.monotonic() < deadline, "the last save was never applied"
        await asyncio.sleep(0.01)


async def test_every_kind_of_save_ends_on_the_last_version(tmp_path: Path) -> None:
    backends = [FakeBackend() for _ in range(4)]
    for b in backends:
        await b.start()
    path, real = tmp_path / "mesh.yaml", tmp_path / "releases"
    real.mkdir()
    path.write_text(_text(backends[0].url, 1))
    count = {"ok": 0, "failed": 0}
    saves = 1

    def version() -> tuple[str, str]:
        nonlocal saves
        saves += 1
        url = backends[saves % len(backends)].url
        return url, _text(url, saves)

    async def in_place_burst() -> str:
        for _ in range(5):
            _, text = version()
            path.write_text(text)
            await asyncio.sleep(0.15)
        return text

    async def partial_then_full() -> str:
        _, text = version()
        with path.open("w") as f:
            f.write(text[: len(text) // 2])
            f.flush()
            await asyncio.sleep(0.2)  # longer than step_ms: the half is read
            f.write(text[len(text) // 2:])
        return text

    async def deleted_then_made_again() -> str:
        _, text = version()
        path.unlink()
        await asyncio.sleep(0.2)
        path.write_text(text)
        return text

    async def renamed_over() -> str:
        _, text = version()
        (tmp_path / "mesh.yaml.tmp").write_text(text)
        os.replace(tmp_path / "mesh.yaml.tmp", path)
        return text

    async def link_swapped() -> str:
        _, text = version()
        (real / f"v{saves}.yaml").write_text(text)
        link = tmp_path / "link.tmp"
        link.symlink_to(real / f"v{saves}.yaml")
        os.replace(link, path)  # the first time, a file replaced by a link
        return text

    edits: list[Callable[[], Awaitable[str]]] = [
        in_place_burst, partial_then_full, deleted_then_made_again, renamed_over,
        link_swapped, link_swapped]
    try:
        async with ml.Mesh.from_config(str(path)) as mesh, mesh.http("users") as client:
            stop = asyncio.Event()

            async def load() -> None:
                while not stop.is_set():
                    r = await client.get("/users/1")
                    count["ok" if r.status_code == 200 else "failed"] += 1

            callers = [asyncio.create_task(load()) for _ in range(4)]
            for edit in edits:
                text = await edit()
                await _in_force(mesh, text)
                url = backends[saves % len(backends)].url
                assert [b.address for b in mesh.service("users").backends] == [url]
                last = json.loads((tmp_path / "audit.jsonl").read_text().splitlines()[-1])
                assert (last["result"], last["new_sha256"]) == (
                    "applied", hashlib.sha256(text.encode()).hexdigest())
            await asyncio.sleep(0.5)  # an older save applied late would show by now
            assert mesh.config_sha256 == hashlib.sha256(text.encode()).hexdigest()
            stop.set()
            await asyncio.gather(*callers)  # a call that raised fails the test here
    finally:
        for b in backends:
            await b.stop()
    assert count["failed"] == 0, count
    assert count["ok"] > 0, count
