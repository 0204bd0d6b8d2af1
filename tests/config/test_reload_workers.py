"""Several workers, one journal: ``uvicorn --workers 2`` on loopback, each worker
following one config file with hot reload. Every worker logs its own reload, applied
or refused, and each line says which process it came from (its pid, in the message
and as the record's ``pid`` field), so an operator can tell the workers apart."""

from __future__ import annotations

import hashlib
import json
import re
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from _system import wait_for
from _workers import APP, fresh, uvicorn_workers

from meshlite.testing import FakeBackend

pytest.importorskip("prometheus_client")
pytest.importorskip("uvicorn")
pytest.importorskip("starlette")
if sys.platform == "win32":  # pragma: no cover
    pytest.skip("pre-fork workers are POSIX", allow_module_level=True)

# Each worker appends meshlite.config's records, as JSON lines, to one file.
LOGGING = textwrap.dedent('''\
    import json
    import logging


    class _Json(logging.Formatter):
        def format(self, record):
            return json.dumps({"event": getattr(record, "meshlite_event", None),
                               "pid": getattr(record, "pid", None),
                               "sha256": getattr(record, "sha256", None),
                               "process": record.process, "message": record.getMessage()})


    _handler = logging.FileHandler(LOG_PATH)
    _handler.setFormatter(_Json())
    logging.getLogger("meshlite.config").addHandler(_handler)
    logging.getLogger("meshlite.config").setLevel(logging.INFO)
    ''')

CONFIG = """\
services:
  users:
    backends: ["{url}"]
    retry: {{attempts: {attempts}}}
hot_reload: true
"""


def lines(path: Path, event: str) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    found = [json.loads(line) for line in path.read_text().splitlines() if line]
    return [f for f in found if f["event"] == event]


@pytest.mark.timeout(120)
def test_each_worker_says_it_applied_or_refused_a_reload(tmp_path: Path) -> None:
    log = tmp_path / "reloads.jsonl"
    with FakeBackend() as backend:
        config = tmp_path / "mesh.yaml"
        config.write_text(CONFIG.format(url=backend.url, attempts=3))
        shared = tmp_path / "multiproc"
        with uvicorn_workers(tmp_path, config, shared, workers=2,
                             app=LOGGING.replace("LOG_PATH", repr(str(log))) + APP):
            files = lambda: sorted(shared.glob("meshlite-*.json"))  # noqa: E731
            wait_for(lambda: len(files()) == 2, 60, "both workers opened their mesh")
            pids = {int(f.name.split("-")[1]) for f in files()}
            config.write_text(CONFIG.format(url=backend.url, attempts=4))
            wait_for(lambda: len(lines(log, "ConfigReloaded")) == 2, 60,
                     "both workers applied the reload")
            config.write_text(CONFIG.format(url="ftp://files.internal", attempts=4))
            wait_for(lambda: len(lines(log, "ConfigReloadFailed")) == 2, 60,
                     "both workers refused the bad reload")
    # Both applied the same text, which their lines say (versions count per process).
    assert len({f["sha256"] for f in lines(log, "ConfigReloaded")}) == 1
    for event, words in (("ConfigReloaded", "applied by pid {} (version 1, sha256 "),
                         ("ConfigReloadFailed", "rejected by pid {}, the previous")):
        found = lines(log, event)
        assert {f["pid"] for f in found} == pids, found  # one line from each worker
        for f in found:
            assert f["pid"] == f["process"]  # the field names the process that logged it
            assert words.format(f["pid"]) in f["message"]


def configmap_update(mount: Path, n: int, text: str) -> None:
    """What the kubelet does to a ConfigMap volume: the new file in a new directory,
    a ``..data_tmp`` link to it renamed over ``..data``, the old directory removed."""
    new = mount / f"..2026_01_01_{n:02d}"
    new.mkdir()
    (new / "mesh.yaml").write_text(text)
    (mount / "..data_tmp").symlink_to(new.name)
    old = (mount / "..data").resolve()
    (mount / "..data_tmp").rename(mount / "..data")
    (old / "mesh.yaml").unlink()
    old.rmdir()


def config_info(text: str) -> dict[int, str]:
    """Each worker's ``meshlite_mesh_config_info`` sha256 label, by pid."""
    return {int(pid): sha for sha, pid in re.findall(
        r'^meshlite_mesh_config_info\{sha256="(\w+)",pid="(\d+)"\} 1', text, re.M)}


@pytest.mark.timeout(120)
def test_workers_on_a_configmap_end_on_the_last_good_update(tmp_path: Path) -> None:
    """A burst of ConfigMap updates, then a bad one: every worker ends running the
    last good file (the same sha256 in each worker's metrics), and says once that it
    refused the bad one."""
    mount, log = tmp_path / "config", tmp_path / "reloads.jsonl"
    mount.mkdir()
    with FakeBackend() as backend, fresh() as client:
        (mount / "..2026_01_01_00").mkdir()
        (mount / "..2026_01_01_00" / "mesh.yaml").write_text(
            CONFIG.format(url=backend.url, attempts=1))
        (mount / "..data").symlink_to("..2026_01_01_00")
        (mount / "mesh.yaml").symlink_to("..data/mesh.yaml")
        with uvicorn_workers(tmp_path, mount / "mesh.yaml", tmp_path / "multiproc",
                             workers=2,
                             app=LOGGING.replace("LOG_PATH", repr(str(log))) + APP) as app:
            scrape = lambda: config_info(client.get(f"{app}/metrics").text)  # noqa: E731
            wait_for(lambda: len(scrape()) == 2, 60, "both workers report")
            for n in range(1, 11):
                configmap_update(mount, n, CONFIG.format(url=backend.url, attempts=n + 1))
                time.sleep(0.02)
            good = hashlib.sha256((mount / "mesh.yaml").read_bytes()).hexdigest()[:12]
            wait_for(lambda: set(scrape().values()) == {good}, 60,
                     "both workers on the last update")
            configmap_update(mount, 11, CONFIG.format(url="ftp://files.internal", attempts=2))
            wait_for(lambda: len(lines(log, "ConfigReloadFailed")) == 2, 60,
                     "both workers refused the bad update")
            time.sleep(0.5)  # a second line for the same update would be in by now
            assert set(scrape().values()) == {good}
            assert len(scrape()) == 2
    refused = lines(log, "ConfigReloadFailed")
    assert len({f["pid"] for f in refused}) == 2, refused  # one line from each worker
