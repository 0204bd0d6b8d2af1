"""Hot reload where file modes bind (as root, without the capabilities that let
root read and list any file): a config that cannot be read is one rejection, and
one linked into a directory that cannot be listed still opens and is watched."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from _system import require_program

CONFIG = """\
services:
  users:
    backends: ["http://u1:1"]
    retry: {{attempts: {attempts}}}
hot_reload: true
"""
TOUCHES = 3


def config(attempts: int) -> str:
    return CONFIG.format(attempts=attempts)


# In a process of its own, where the file can be made unreadable even to root.
UNREADABLE = textwrap.dedent('''\
    import asyncio, json, os, sys, time
    import meshlite as ml

    path, text, fixed = sys.argv[1], sys.argv[2], sys.argv[3]


    async def settle(check):
        deadline = time.monotonic() + 10
        while not check() and time.monotonic() < deadline:
            await asyncio.sleep(0.01)


    async def main():
        mesh = ml.Mesh.from_config(path, environ={})
        async with mesh:
            with open(path, "w") as f:
                f.write(fixed)
            os.chmod(path, 0)
            await settle(lambda: mesh.reload_errors)
            for _ in range(int(sys.argv[4])):
                await asyncio.sleep(0.15)
                os.utime(path)
            await asyncio.sleep(0.3)
            errors = [str(e) for e in mesh.reload_errors]
            os.chmod(path, 0o644)
            await settle(lambda: mesh.config_version)
            print(json.dumps({"errors": errors, "version": mesh.config_version}))


    asyncio.run(main())
    ''')


def unprivileged(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run a Python ``script`` where file modes bind: as root, without the
    capabilities that let root read and list any file."""
    command = [sys.executable, "-c", script, *args]
    if os.geteuid() == 0:
        command[:0] = [require_program("setpriv", "util-linux"),
                       "--bounding-set=-dac_override,-dac_read_search"]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def test_an_unreadable_file_is_reported_once_and_read_once_readable(tmp_path: Path) -> None:
    """Permission denied: one rejection however often the file is touched, the old
    config running; once readable again, the file is applied."""
    path = tmp_path / "mesh.yaml"
    path.write_text(config(1))
    done = unprivileged(UNREADABLE, str(path), config(1), config(2), str(TOUCHES))
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    [error] = found["errors"]
    assert error == f"{path}: cannot read the config file: Permission denied"
    assert found["version"] == 1


UNLISTED = textwrap.dedent('''\
    import asyncio, os, sys, time
    import meshlite as ml


    async def main():
        path = sys.argv[1]
        mesh = ml.Mesh.from_config(path, environ={})
        async with mesh:
            with open(path + ".tmp", "w") as f:
                f.write(sys.argv[2])
            os.replace(path + ".tmp", path)  # a file renamed over the link
            deadline = time.monotonic() + 10
            while not mesh.config_version and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            print(mesh.config_version)


    asyncio.run(main())
    ''')


def test_a_link_into_a_directory_that_cannot_be_listed_still_opens(tmp_path: Path) -> None:
    """A config linked into a directory one may pass through but not list (mode
    0311) cannot be watched there, and following the link into it made opening the
    mesh fail with PermissionError; the link's own directory is watched."""
    shut, etc = tmp_path / "shut", tmp_path / "etc"
    shut.mkdir()
    etc.mkdir()
    (shut / "mesh.yaml").write_text(config(1))
    (etc / "mesh.yaml").symlink_to(shut / "mesh.yaml")
    shut.chmod(0o311)
    try:
        done = unprivileged(UNLISTED, str(etc / "mesh.yaml"), config(2))
    finally:
        shut.chmod(0o755)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "1"  # the link's directory is watched
