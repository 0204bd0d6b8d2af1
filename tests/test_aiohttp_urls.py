"""``mesh.aiohttp()`` remembers the URLs it makes of relative ones: a real loopback
backend, and the URLs aiohttp itself would make."""

from __future__ import annotations

import aiohttp
from yarl import URL

import meshlite as ml
from meshlite.testing import FakeBackend


async def test_a_relative_url_is_made_once_and_is_what_aiohttp_makes() -> None:
    async with FakeBackend() as backend, ml.Mesh([ml.Service("users", [backend.url])]) as mesh:
        session = mesh.aiohttp("users")
        async with aiohttp.ClientSession(base_url="http://users/") as plain:
            for target in ("/a", "/a?x=1&x=2", "/a/%2F/b?q=%20", "b", "/c#frag"):
                made = session._build_url(target)
                assert made is session._build_url(target)  # remembered
                assert made == plain._build_url(target)  # as aiohttp makes it
        # URL objects and absolute URLs are made as aiohttp makes them, not remembered
        given = URL("/d")
        assert session._build_url(given) == URL("http://users/d")
        assert session._build_url("http://elsewhere/e") == URL("http://elsewhere/e")


async def test_many_distinct_paths_each_reach_the_backend_as_sent() -> None:
    # More paths than the session remembers (256): the memo empties and fills again,
    # and every request still goes to its own path.
    async with FakeBackend() as backend, ml.Mesh([ml.Service("users", [backend.url])]) as mesh:
        session = mesh.aiohttp("users")
        for round_ in range(2):
            for i in range(300):
                async with session.get(f"/items/{i}?round={round_}") as response:
                    assert response.status == 200
                    body = await response.json()
                    assert body["path"] == f"/items/{i}"
        sent = [(r.path, r.query) for r in backend.requests]
        assert sent == [(f"/items/{i}", f"round={round_}")
                        for round_ in range(2) for i in range(300)]


DEV_MODE_USER = """
import asyncio
import meshlite as ml
from meshlite.testing import FakeBackend

async def main():
    async with FakeBackend() as backend:
        mesh = ml.Mesh([ml.Service("users", [backend.url])])
        async with mesh, mesh.aiohttp("users") as session, session.get("/u") as r:
            assert r.status == 200
        async with ml.Mesh([ml.Service("users", [backend.url])]) as mesh:
            assert (await mesh.http("users").get("/u")).status_code == 200

asyncio.run(main())
print("ok")
"""


def test_both_async_clients_warn_nothing_in_development_mode() -> None:
    # aiohttp in debug mode (python -X dev) warns at each attribute set on a session
    # that it does not know: a suite run with -W error failed at mesh.aiohttp().
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-X", "dev", "-W", "error", "-c", DEV_MODE_USER],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "ok"
    assert "Warning" not in done.stderr
