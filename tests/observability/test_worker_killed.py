"""A uvicorn worker killed with SIGKILL in the middle of traffic: the workers left keep
exact counts, no scrape counts anything twice, and the dead worker's gauges (its calls
in flight when it died) leave the exposition."""

from __future__ import annotations

import os
import signal
import sys
import textwrap
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from _system import wait_for
from _workers import fresh, uvicorn_workers

from meshlite.observability._worker_counts import worker_counts
from meshlite.observability._worker_files import read_workers
from meshlite.testing import FakeBackend

pytest.importorskip("uvicorn")
pytest.importorskip("starlette")
pytest.importorskip("prometheus_client")
if sys.platform == "win32":  # pragma: no cover
    pytest.skip("pre-fork workers are POSIX", allow_module_level=True)


COUNTING = threading.Lock()  # ``+=`` on a Counter is not atomic between threads


def drive(app: str, stop: threading.Event, answered: Counter[int]) -> None:
    """Call the app until ``stop``, counting the answered calls by worker pid (a call
    the killed worker had in flight fails: not counted)."""
    with fresh() as http:
        while not stop.is_set():
            try:
                r = http.get(app + "/call")
            except httpx.HTTPError:
                continue
            if r.status_code == 200 and r.json()["status"] == 200:
                with COUNTING:
                    answered[r.json()["pid"]] += 1


def gauge_pids(text: str) -> set[str]:
    return {line.split('pid="', 1)[1].split('"', 1)[0] for line in text.splitlines()
            if line.startswith("meshlite_requests_in_flight{") and 'pid="' in line}


def total(text: str) -> float:
    for line in text.splitlines():
        if line.startswith('meshlite_requests_total{service="users"}'):
            return float(line.rsplit(" ", 1)[1])
    return -1.0


@pytest.mark.timeout(180)
def test_a_worker_killed_mid_traffic(tmp_path: Path) -> None:
    with FakeBackend(latency=0.02) as backend:  # calls stay in flight a while
        config = tmp_path / "mesh.yaml"
        config.write_text(textwrap.dedent(f"""\
            services:
              users:
                backends: ["{backend.url}"]
            """))
        shared = tmp_path / "multiproc"
        with uvicorn_workers(tmp_path, config, shared) as app:
            wait_for(lambda: len(list(shared.glob("meshlite-*.json"))) == 3, 60,
                     "every worker opened its mesh")
            stop, answered = threading.Event(), Counter[int]()
            clients = [threading.Thread(target=drive, args=(app, stop, answered))
                       for _ in range(6)]
            for client in clients:
                client.start()
            wait_for(lambda: len(answered) == 3 and min(answered.values()) >= 20, 60,
                     "every worker answers calls")
            victim = min(answered)
            os.kill(victim, signal.SIGKILL)  # with calls in flight
            time.sleep(1.0)  # traffic goes on on the others
            stop.set()
            for client in clients:
                client.join()

            def flushed() -> dict[int, Any]:
                """The workers, once every live one's file holds the calls it answered
                (each writes within FLUSH_SECONDS; a loaded machine may take longer)."""
                workers = {w.pid: w for w in read_workers(str(shared))}
                for pid, n in answered.items():
                    counted = worker_counts(workers[pid]).get("users")
                    if pid != victim and (0 if counted is None else counted.calls) < n:
                        return {}
                return workers

            workers = wait_for(flushed, 30, "every live worker's file holds its calls")
            assert not workers[victim].alive
            for pid, n in answered.items():
                counted = worker_counts(workers[pid]).get("users")
                calls = 0 if counted is None else counted.calls
                if pid == victim:  # what it answered after its last write is lost
                    assert calls <= n
                else:
                    assert calls == n, (pid, calls, n)
            expected = sum(worker_counts(w)["users"].calls for w in workers.values()
                           if "users" in worker_counts(w))
            with fresh() as http:
                for _ in range(12):  # new connections: any worker, restarted ones too
                    text = http.get(app + "/metrics").text
                    assert total(text) == expected  # never counted twice
                    assert str(victim) not in gauge_pids(text)
                    assert gauge_pids(text)  # the live workers' gauges are there
