"""A worker that takes the host's dashboard over but cannot serve it (its port held
by another program) says so in the log, once, and serves it when it can: it held
the host's lock and retried in silence, so the host had no dashboard and no line
said why. The leading worker is a real process."""

from __future__ import annotations

import asyncio
import logging
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from _workers import free_port

import meshlite as ml

LEADER = textwrap.dedent('''\
    import sys
    import meshlite as ml

    with ml.Mesh.from_config(sys.argv[1]):
        print("ready", flush=True)
        sys.stdin.readline()
    ''')


def config(path: Path, port: int) -> str:
    path.write_text('services:\n  users:\n    backends: ["http://127.0.0.1:9"]\n'
                    f"dashboard: {{port: {port}}}\n", encoding="utf-8")
    return str(path)


@pytest.fixture
def leader(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
           ) -> Iterator[subprocess.Popen[str]]:
    """A worker process leading the host (its dashboard on another port)."""
    monkeypatch.setenv("MESHLITE_MULTIPROC_DIR", str(tmp_path / "multiproc"))
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    script = tmp_path / "leader.py"
    script.write_text(LEADER, encoding="utf-8")
    proc = subprocess.Popen([sys.executable, str(script),
                             config(tmp_path / "leader.yaml", free_port())],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def test_a_worker_that_cannot_serve_the_dashboard_says_so(
        tmp_path: Path, leader: subprocess.Popen[str],
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="meshlite.config")
    taken = socket.socket()  # another program holds this worker's dashboard port
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    mesh = ml.Mesh.from_config(config(tmp_path / "mesh.yaml", port))
    try:
        async with mesh:
            await asyncio.to_thread(leader.communicate, "", 30)  # the leader stops
            for _ in range(100):
                if any("cannot serve" in r.getMessage() for r in caplog.records):
                    break
                await asyncio.sleep(0.1)
            [warning] = [r for r in caplog.records if "cannot serve" in r.getMessage()]
            assert warning.levelno == logging.WARNING
            assert f"127.0.0.1:{port}" in warning.getMessage()
            taken.close()  # the port is free again: served at the next attempt
            for _ in range(100):
                if any("served at" in r.getMessage() for r in caplog.records):
                    break
                await asyncio.sleep(0.1)
            async with httpx.AsyncClient(trust_env=False) as http:
                r = await http.get(f"http://127.0.0.1:{port}/api/health")
            assert r.status_code == 200
        assert len([r for r in caplog.records if "cannot serve" in r.getMessage()]) == 1
    finally:
        taken.close()
