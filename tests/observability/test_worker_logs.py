"""docs/logging.md's uvicorn ``--log-config`` under ``uvicorn --workers 2``: every
worker logs its own state changes (here: the rejection of a bad config that every
worker reloads), and each line says which worker wrote it."""

from __future__ import annotations

import os
import re
import sys
import textwrap
import time
from pathlib import Path

import pytest
from _docblocks import ROOT, blocks_of
from _system import wait_for
from _workers import APP, free_port, running

from meshlite.testing import FakeBackend

pytest.importorskip("uvicorn")
pytest.importorskip("starlette")
pytest.importorskip("prometheus_client")
if sys.platform == "win32":  # pragma: no cover
    pytest.skip("pre-fork workers are POSIX", allow_module_level=True)


def documented_log_config() -> str:
    """The ``--log-config`` file of docs/logging.md."""
    for block in blocks_of(ROOT / "docs" / "logging.md"):
        if block.lang == "yaml" and "uvicorn.logging.DefaultFormatter" in block.text:
            return block.text
    raise AssertionError("docs/logging.md has no uvicorn log config block")


@pytest.mark.timeout(120)
def test_each_workers_lines_name_the_worker(tmp_path: Path) -> None:
    with FakeBackend() as backend:
        config = tmp_path / "mesh.yaml"
        users = f'services:\n  users:\n    backends: ["{backend.url}"]\n'
        config.write_text(users + "hot_reload: true\n")
        (tmp_path / "log.yaml").write_text(documented_log_config())
        (tmp_path / "app.py").write_text(APP)
        shared = tmp_path / "multiproc"
        env = {**os.environ, "MESH_CONFIG": str(config), "MESHLITE_MULTIPROC_DIR": str(shared)}
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        log = tmp_path / "uvicorn.log"
        command = [sys.executable, "-m", "uvicorn", "app:app", "--workers", "2",
                   "--host", "127.0.0.1", "--port", str(free_port()),
                   "--app-dir", str(tmp_path), "--log-config", str(tmp_path / "log.yaml")]
        with running(command, env, log, cwd=tmp_path):
            wait_for(lambda: len(list(shared.glob("meshlite-*.json"))) == 2, 60,
                     "both workers opened a mesh")
            workers = {p.name.split("-")[1] for p in shared.glob("meshlite-*.json")}
            time.sleep(0.2)  # the watchers are running
            config.write_text(users + "    retry: {attempts: 0}\nhot_reload: true\n")

            def rejections() -> list[str]:
                return [line for line in log.read_text().splitlines()
                        if "meshlite.config" in line and "rejected" in line]

            lines = wait_for(lambda: len(rejections()) >= 2 and rejections(), 30,
                             "both workers rejected the bad config")
    named = {pid for line in lines for pid in re.findall(r"\[(\d+)\]", line) if pid in workers}
    assert named == workers, textwrap.indent("\n".join(lines), "  ")
