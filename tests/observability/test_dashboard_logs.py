"""What an operator's log shows of a dashboard served in the background of an app:
one meshlite line saying where it is served, and none of uvicorn's own lifecycle
lines (``Started server process [pid]``, ``Shutting down``, ``Finished server
process [pid]``), which would read as the app's server starting or stopping a
second time."""

from __future__ import annotations

import logging
from pathlib import Path

import httpx
from _logs import all_log_records
from _ws import connect

import meshlite as ml
from meshlite.config._load import managed_of


async def test_the_dashboard_logs_one_line_of_its_own(tmp_path: Path) -> None:
    config = tmp_path / "mesh.yaml"
    config.write_text('services:\n  users:\n    backends: ["http://127.0.0.1:9"]\n'
                      "dashboard: {port: 0}\n")
    mesh = ml.Mesh.from_config(str(config))
    with all_log_records() as records:
        async with mesh:
            managed = managed_of(mesh)
            assert managed is not None
            assert managed.dashboard is not None
            server = managed.dashboard.server
            async with httpx.AsyncClient(base_url=server.url, trust_env=False) as http:
                assert (await http.get("/api/health")).status_code == 200
            async with connect(server.url.replace("http", "ws") + "/ws", proxy=None) as ws:
                assert "hello" in await ws.recv()
        seen = [(r.name, r.levelno, r.getMessage()) for r in records
                if r.name.startswith(("uvicorn", "meshlite"))]
    assert [s for s in seen if s[0].startswith("uvicorn")] == []
    served = [s for s in seen if server.url in s[2]]
    assert served == [("meshlite.config", logging.INFO, served[0][2])], seen
