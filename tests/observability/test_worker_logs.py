"""docs/logging.md's uvicorn ``--log-config`` under ``uvicorn --workers 2``: every
worker logs its own state changes (here: each opens its own circuit breaker on a
dead backend, in words identical from worker to worker), and each line says which
worker wrote it."""

from __future__ import annotations

import os
import re
import sys
import textwrap
from pathlib import Path

import pytest
from _docblocks import ROOT, blocks_of
from _system import wait_for
from _workers import APP, free_port, fresh, running

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
    config = tmp_path / "mesh.yaml"
    config.write_text(textwrap.dedent(f"""\
        services:
          users:
            backends: ["http://127.0.0.1:{free_port()}"]
            retry: false
            circuit_breaker: {{window: 2, min_calls: 2, open_seconds: 60}}
        """))
    (tmp_path / "log.yaml").write_text(documented_log_config())
    (tmp_path / "app.py").write_text(APP)
    shared = tmp_path / "multiproc"
    env = {**os.environ, "MESH_CONFIG": str(config), "MESHLITE_MULTIPROC_DIR": str(shared)}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    log = tmp_path / "uvicorn.log"
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "app:app", "--workers", "2",
               "--host", "127.0.0.1", "--port", str(port), "--app-dir", str(tmp_path),
               "--log-config", str(tmp_path / "log.yaml")]
    with running(command, env, log, cwd=tmp_path):
        wait_for(lambda: len(list(shared.glob("meshlite-*.json"))) == 2, 60,
                 "both workers opened a mesh")
        workers = {p.name.split("-")[1] for p in shared.glob("meshlite-*.json")}

        def openings() -> list[str]:
            return [line for line in log.read_text().splitlines()
                    if "meshlite.breaker" in line and "opened" in line]

        def both_opened() -> list[str] | None:
            with fresh() as http:  # a new connection: either worker
                http.get(f"http://127.0.0.1:{port}/call")
            lines = openings()
            return lines if len(lines) >= 2 else None

        lines = wait_for(both_opened, 60, "each worker opened its breaker", step=0.0)
    named = {pid for line in lines for pid in re.findall(r"\[(\d+)\]", line)}
    assert named == workers, textwrap.indent("\n".join(lines), "  ")
    assert len({re.sub(r"\[\d+\]", "", line) for line in lines}) == 1  # the same words
