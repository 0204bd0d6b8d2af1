"""Two workers (``uvicorn --workers 2``) following one file that an editor saves five
times within a second, in place: both end on the last save, each says so (its
``meshlite_mesh_config_info`` sha256 and its last ``ConfigReloaded`` line), and no
worker applies an older save after the last one."""

from __future__ import annotations

import hashlib
import sys
import time
from pathlib import Path

import pytest
from _system import wait_for
from _workers import APP, fresh, uvicorn_workers
from test_reload_workers import CONFIG, LOGGING, config_info, lines

from meshlite.testing import FakeBackend

pytest.importorskip("prometheus_client")
pytest.importorskip("uvicorn")
pytest.importorskip("starlette")
if sys.platform == "win32":  # pragma: no cover
    pytest.skip("pre-fork workers are POSIX", allow_module_level=True)


@pytest.mark.timeout(120)
def test_two_workers_end_on_the_last_of_a_burst_of_saves(tmp_path: Path) -> None:
    log, config = tmp_path / "reloads.jsonl", tmp_path / "mesh.yaml"
    with FakeBackend() as backend, fresh() as client:
        config.write_text(CONFIG.format(url=backend.url, attempts=1))
        with uvicorn_workers(tmp_path, config, tmp_path / "multiproc", workers=2,
                             app=LOGGING.replace("LOG_PATH", repr(str(log))) + APP) as app:
            scrape = lambda: config_info(client.get(f"{app}/metrics").text)  # noqa: E731
            wait_for(lambda: len(scrape()) == 2, 60, "both workers report")
            for attempts in range(2, 7):  # five saves within a second
                config.write_text(CONFIG.format(url=backend.url, attempts=attempts))
                time.sleep(0.15)
            last = hashlib.sha256(config.read_bytes()).hexdigest()[:12]
            wait_for(lambda: set(scrape().values()) == {last}, 60,
                     "both workers on the last save")
            time.sleep(1.0)  # an older save applied late would show by now
            assert set(scrape().values()) == {last}
            assert len(scrape()) == 2
    applied = lines(log, "ConfigReloaded")
    assert len({f["pid"] for f in applied}) == 2, applied  # each worker said it applied
