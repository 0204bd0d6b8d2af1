"""Workers restarted again and again, as ``uvicorn --workers 2`` does on SIGHUP (and
gunicorn on SIGHUP or at each worker's ``max_requests``), with
``MESHLITE_MULTIPROC_DIR`` set: the directory does not grow with every restart (a
dead worker's file is folded into the exited workers' one once it is old enough),
and the scrapes keep counting every call once, never going back, with gauges of
live workers only."""

from __future__ import annotations

import os
import signal
import sys
import textwrap
import time
from pathlib import Path

import pytest
from _system import wait_for
from _workers import APP, _accepts, free_port, fresh, running

from meshlite.observability._worker_files import alive
from meshlite.testing import FakeBackend

if sys.platform == "win32":  # pragma: no cover
    pytest.skip("pre-fork workers are POSIX", allow_module_level=True)
pytest.importorskip("uvicorn")
pytest.importorskip("prometheus_client")

SERIES = 'meshlite_requests_total{service="users"} '


def files(shared: Path) -> dict[str, int]:
    """The workers' files and their pids."""
    return {p.name: int(p.name.split("-")[1]) for p in shared.glob("meshlite-*-*.json")}


def counted(url: str) -> tuple[float, list[str]]:
    """A scrape's calls to ``users`` and the pids its gauges name."""
    with fresh() as http:
        text = http.get(url + "/metrics").text
    calls = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                if line.startswith(SERIES))
    pids = sorted({line.split('pid="')[1].split('"')[0] for line in text.splitlines()
                   if line.startswith("meshlite_mesh_in_flight{")})
    return calls, pids


@pytest.mark.timeout(240)
def test_worker_restarts_do_not_grow_the_directory_nor_lose_counts(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(APP)
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o700)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with FakeBackend() as backend:
        config = tmp_path / "mesh.yaml"
        config.write_text(textwrap.dedent(f"""\
            services:
              users: {{backends: ["{backend.url}"]}}
            """))
        env = {**os.environ, "MESH_CONFIG": str(config), "MESHLITE_MULTIPROC_DIR": str(shared)}
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        command = [sys.executable, "-m", "uvicorn", "app:app", "--workers", "2",
                   "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
        with running(command, env, tmp_path / "uvicorn.log", cwd=tmp_path) as proc:
            wait_for(lambda: _accepts(port, proc), 60, "the workers listen")
            sent, seen = 0, 0.0
            for restart in range(4):
                with fresh() as http:
                    for _ in range(10):
                        assert http.get(url + "/call").json()["status"] == 200
                sent += 10
                # every call is in a scrape (each worker writes its file every 0.5 s)
                now = wait_for(lambda n=sent: counted(url)[0] == n and counted(url), 30,
                               "every call scraped")
                assert now[0] >= seen
                seen = now[0]
                if restart < 3:
                    before = set(files(shared).values())
                    proc.send_signal(signal.SIGHUP)  # uvicorn restarts its workers
                    wait_for(lambda old=before: not any(alive(pid) for pid in old)
                             and len({p for p in files(shared).values() if alive(p)}) == 2,
                             60, "the workers restarted")
                    wait_for(lambda: _accepts(port, proc), 60, "the new workers listen")
            dead = {name for name, pid in files(shared).items() if not alive(pid)}
            assert len(dead) == 6  # three restarts of two workers, each file kept so far
            # Those workers exited long ago, as far as their files say.
            old = time.time() - 3600
            for name in dead:
                os.utime(shared / name, (old, old))
            # A worker folds them within its next fold (at most 10 s).
            wait_for(lambda: not dead & set(files(shared)), 60,
                     "the old dead workers' files folded")
            assert (shared / "meshlite-exited.json").exists()
            live = {str(pid) for pid in files(shared).values() if alive(pid)}
            calls, pids = counted(url)
            assert calls == sent  # nothing lost, nothing counted twice
            assert set(pids) <= live
            assert len(pids) == 2
            # More calls: the counts carry on from there.
            with fresh() as http:
                for _ in range(10):
                    assert http.get(url + "/call").json()["status"] == 200
            assert wait_for(lambda: counted(url)[0] == sent + 10, 30, "the new calls scraped")
            assert len(files(shared)) == 2  # the live workers' files; no dead one left
