"""Hot reload as config files are updated in production: by other processes writing
in place or renaming over the file, through Kubernetes ConfigMap links and links to
other directories, with the directory removed and made again, and in storms of
saves. Real files, real watchers, writers in their own processes."""

from __future__ import annotations

import asyncio
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import meshlite as ml
from meshlite.config import ConfigReloaded, ConfigReloadFailed

WAIT = 10.0  # seconds: a bound, not an expectation (a reload takes tens of ms)

CONFIG = """\
services:
  users:
    backends: ["http://u1:1"]
    retry: {{attempts: {attempts}}}
hot_reload: {reload}
"""


def config(attempts: int, reload: str = "true") -> str:
    return CONFIG.format(attempts=attempts, reload=reload)


async def until(predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def attempts(mesh: ml.Mesh) -> int:
    retry = next(p for p in mesh.service("users").pipeline.walk() if p.kind == "retry")
    return int(retry.options.attempts)


def reloads(mesh: ml.Mesh) -> list[Any]:
    """The reload events the mesh emits from now on, applied or rejected."""
    events: list[Any] = []
    mesh.add_hook(lambda e: events.append(e)
                  if isinstance(e, ConfigReloaded | ConfigReloadFailed) else None)
    return events


# Another process saves the file 100 times, 10 ms apart, each time as a program
# writing in place does: truncate, then write.
STORM = textwrap.dedent('''\
    import sys, time
    path, template = sys.argv[1], sys.argv[2]
    for i in range(1, 101):
        with open(path, "w") as f:
            f.write(template.format(attempts=i, reload=sys.argv[3]))
        time.sleep(0.01)
    ''')


async def test_a_storm_of_saves_is_read_once_it_goes_quiet(tmp_path: Path) -> None:
    """The notifier ends a batch when no new (kind, path) pair arrives, and a file
    written over and over makes the same pair each time: the storm was read every
    other step (some 18 reads a second at the defaults, each able to catch the
    file truncated), whatever ``step_ms`` and ``debounce_ms`` said."""
    path = tmp_path / "mesh.yaml"
    reload = "{enabled: true, step_ms: 150, debounce_ms: 20000}"
    path.write_text(config(1, reload))
    mesh = ml.Mesh.from_config(str(path), environ={})
    events = reloads(mesh)
    async with mesh:
        writer = await asyncio.create_subprocess_exec(
            sys.executable, "-c", STORM, str(path), CONFIG, reload)
        assert await writer.wait() == 0
        await until(lambda: attempts(mesh) == 100, "the last save applied")
        await asyncio.sleep(0.5)  # anything still to come
    # Read once the saves stopped; a writer held up by a busy machine for longer
    # than the quiet time may split the storm once more.
    assert 1 <= len(events) <= 2, events
    assert attempts(mesh) == 100
