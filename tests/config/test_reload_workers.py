"""Several workers, one journal: ``uvicorn --workers 2`` on loopback, each worker
following one config file with hot reload. Every worker logs its own reload, applied
or refused, and each line says which process it came from (its pid, in the message
and as the record's ``pid`` field), so an operator can tell the workers apart."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from _system import wait_for
from _workers import APP, uvicorn_workers

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
    for event, words in (("ConfigReloaded", "applied by pid {} (version 1)"),
                         ("ConfigReloadFailed", "rejected by pid {}, the previous")):
        found = lines(log, event)
        assert {f["pid"] for f in found} == pids, found  # one line from each worker
        for f in found:
            assert f["pid"] == f["process"]  # the field names the process that logged it
            assert words.format(f["pid"]) in f["message"]
