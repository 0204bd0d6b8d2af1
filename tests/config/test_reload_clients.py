"""Every kind of client made before a reload (``mesh.http()``, ``mesh.http_sync()``
from a thread, ``mesh.aiohttp()``, ``mesh.call``) follows it: a timeout added and
removed, backends replaced in place and by a rebuilt service, the service removed
(a ``ConfigError`` saying the reload removed it) and added again. Real FakeBackends,
a real config file."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest

import meshlite as ml
from meshlite.testing import FakeBackend


def _write(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)  # as an editor saves


def _service(name: str, url: str, extra: str = "") -> str:
    return f'services:\n  {name}:\n    backends: ["{url}"]\n    retry: false\n{extra}'


async def test_clients_made_before_reloads_follow_each_of_them(tmp_path: Path) -> None:
    path = tmp_path / "mesh.yaml"
    async with FakeBackend(latency=0.5) as slow, FakeBackend() as fast:
        _write(path, _service("users", slow.url))
        async with ml.Mesh.from_config(str(path)) as mesh, mesh.http("users") as hx, \
                mesh.aiohttp("users") as aio:
            sync = mesh.http_sync("users")

            async def outcomes() -> dict[str, Any]:
                out: dict[str, Any] = {}
                try:
                    out["httpx"] = (await hx.get("/x")).status_code
                except Exception as exc:
                    out["httpx"] = type(exc).__name__
                try:
                    async with aio.get("/x") as answer:
                        out["aiohttp"] = answer.status
                except Exception as exc:
                    out["aiohttp"] = type(exc).__name__

                def in_thread() -> Any:
                    try:
                        return sync.get("/x").status_code
                    except Exception as exc:
                        return type(exc).__name__
                out["http_sync"] = await asyncio.to_thread(in_thread)
                try:
                    out["call"] = await mesh.call("users", lambda backend: str(backend))
                except Exception as exc:
                    out["call"] = type(exc).__name__
                return out

            def every(value: Any) -> dict[str, Any]:
                return {"httpx": value, "aiohttp": value, "http_sync": value}

            start = await outcomes()
            assert {k: start[k] for k in every(0)} == every(200)
            _write(path, _service("users", slow.url, "    timeout: 0.05\n"))
            assert await mesh.reload()
            timed = await outcomes()
            assert {k: timed[k] for k in every(0)} == every("TimeoutExceeded")
            _write(path, _service("users", fast.url))  # backends replaced in place
            assert await mesh.reload()
            before = slow.stats.requests
            moved = await outcomes()
            assert {k: moved[k] for k in every(0)} == every(200)
            assert fast.url in moved["call"]
            assert slow.stats.requests == before
            _write(path, _service("renamed", fast.url))
            assert await mesh.reload()
            gone = await outcomes()
            assert gone == {**every("ConfigError"), "call": "ConfigError"}
            # which says the reload removed it, not to register it in code (it said
            # "register it with mesh.register(ml.Service(...))")
            with pytest.raises(ml.ConfigError) as raised:
                await hx.get("/x")
            assert (f"no service named 'users' now: the config reload to version "
                    f"{mesh.config_version} removed it") in str(raised.value)
            assert "mesh.register" not in str(raised.value)
            _write(path, _service("users", slow.url, "    balancer: random\n"))
            assert await mesh.reload()  # added again, on the other backend
            before = fast.stats.requests
            back = await outcomes()
            assert {k: back[k] for k in every(0)} == every(200)
            assert slow.url in back["call"]
            assert fast.stats.requests == before
            with pytest.raises(ml.ConfigError, match="'renamed' now: the config reload"):
                await mesh.call("renamed", lambda backend: None)  # this reload removed it
            with pytest.raises(ml.ConfigError, match=r"register it with mesh\.register"):
                await mesh.call("orders", lambda backend: None)  # never a service here
            sync.close()
