"""FileWatch, the watcher behind hot reload and file discovery, when the way to the
file cannot be watched anew: the change that moved it is still reported, the
previous watch goes on, and the reason is logged once."""

from __future__ import annotations

import asyncio
import errno
import logging
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from meshlite.discovery import _watch


async def test_a_way_that_cannot_be_watched_anew_still_reports_the_change(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    real = _watch._rust_notify()
    made: list[list[str]] = []

    class Limited:  # the kernel's inotify limit reached after the first watch
        def RustNotify(self, paths: list[str], *args: Any) -> Any:
            made.append(paths)
            if len(made) > 1:
                raise OSError(errno.ENOSPC, "inotify watch limit reached")
            return real.RustNotify(paths, *args)

    monkeypatch.setattr(_watch, "_rust_notify", Limited)
    caplog.set_level(logging.WARNING, logger="meshlite.watch")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "mesh.yaml").write_text("1")
    (tmp_path / "b" / "mesh.yaml").write_text("2")
    (tmp_path / "mesh.yaml").symlink_to("a/mesh.yaml")
    watch = _watch.FileWatch(tmp_path / "mesh.yaml", step_ms=10)
    watch.open()
    try:
        (tmp_path / "next").symlink_to("b/mesh.yaml")
        (tmp_path / "next").rename(tmp_path / "mesh.yaml")  # the way now leads to b/
        await asyncio.wait_for(watch.changed(), 10)  # reported all the same
        for n in range(3):  # more changes, each seen by the previous watch
            (tmp_path / "mesh.yaml").unlink()
            (tmp_path / "mesh.yaml").symlink_to(f"{'ab'[n % 2]}/mesh.yaml")
            await asyncio.wait_for(watch.changed(), 10)
    finally:
        watch.close()
    assert len(made) > 2  # tried again
    [warning] = [r for r in caplog.records if r.name == "meshlite.watch"]
    assert "inotify watch limit reached" in warning.getMessage()
    assert "the previous watch goes on" in warning.getMessage()


def test_the_process_exits_cleanly_right_after_a_mesh_with_a_watch(tmp_path: Path) -> None:
    # The watch threads are stopped and waited for at exit: one still in watchfiles'
    # notifier as the interpreter finalized aborted the process (watchfiles < 1.3),
    # most runs out of three.
    (tmp_path / "backends.json").write_text('["http://127.0.0.5:8000"]')
    code = textwrap.dedent("""
        import asyncio
        import meshlite as ml
        from meshlite.discovery import Discovery, FileProvider

        users = ml.Service("users", ["http://127.0.0.1:8001"])
        users.attach(Discovery(users, FileProvider("backends.json")))

        async def main():
            async with ml.Mesh([users]):
                pass

        asyncio.run(main())
        print("done")
    """)
    for _ in range(3):
        done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                              text=True, timeout=60, check=False)
        assert (done.returncode, done.stdout) == (0, "done\n"), done.stderr
