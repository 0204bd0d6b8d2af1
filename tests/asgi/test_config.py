"""The ``inbound:`` config section: checked like the rest of the file, followed by
the middleware across hot reloads."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_policies import echo

import meshlite as ml
from meshlite.asgi import MeshMiddleware
from meshlite.testing import AsgiServer

CONFIG = """\
services:
  inventory:
    backends: ["http://127.0.0.1:9"]
inbound:
  api_keys_file: keys.txt
  routes:
{routes}
"""


def write(path: Path, routes: str) -> None:
    path.write_text(CONFIG.format(routes=routes))


async def test_routes_and_keys_from_the_file_follow_hot_reloads(tmp_path: Path) -> None:
    (tmp_path / "keys.txt").write_text("alice k-alice admin\n")
    config = tmp_path / "mesh.yaml"
    write(config, '    - {pattern: "/admin", scopes: [admin]}')
    mesh = ml.Mesh.from_config(str(config))
    app = MeshMiddleware(echo, mesh=mesh)
    async with AsgiServer(app) as server, httpx.AsyncClient(base_url=server.url) as client:
        assert (await client.get("/admin")).status_code == 401
        assert (await client.get("/admin", headers={"x-api-key": "k-alice"})).status_code == 200
        assert [(await client.get("/x")).status_code for _ in range(3)] == [200] * 3
        write(config, '    - {pattern: "/admin", scopes: [admin]}\n'
                      '    - {pattern: "/*", rate: 1, per: 60, burst: 1, key: ip}')
        version = mesh.config_version
        assert await mesh.reload()
        assert mesh.config_version == version + 1
        assert [(await client.get("/x")).status_code for _ in range(2)] == [200, 429]
        write(config, '    - {pattern: "/*", rate: 0}')  # rejected: the routes in force stay
        assert not await mesh.reload()
        assert (await client.get("/x")).status_code == 429


def test_meshlite_check_reports_inbound_problems_by_path(tmp_path: Path) -> None:
    config = tmp_path / "mesh.yaml"
    config.write_text('services: {}\ninbound:\n  api_keys_file: missing.txt\n'
                      '  routes:\n    - {pattern: "orders", max_body: -1}\n'
                      '    - {pattern: "/x", rate: 1, key: ipaddr}\n')
    command = "import sys; from meshlite.cli import main; sys.exit(main())"
    result = subprocess.run([sys.executable, "-c", command, "check", str(config)],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 2
    assert "inbound.routes[0].pattern: must be a path pattern starting with '/'" in (
        result.stdout + result.stderr)
    assert "inbound.routes[0].max_body: must be >= 0, got -1" in result.stdout + result.stderr
    assert "inbound.api_keys_file" in result.stdout + result.stderr
    assert "inbound.routes[1].key: must be one of api_key, client, ip, subject or a " \
        "function, got 'ipaddr'" in result.stdout + result.stderr


async def test_jwt_from_the_config_file(tmp_path: Path) -> None:
    import time

    import jwt

    secret = "config-secret-" + "x" * 24
    (tmp_path / "jwt.key").write_text(secret + "\n")
    config = tmp_path / "mesh.yaml"
    config.write_text('services: {}\ninbound:\n'
                      '  jwt: {key_file: jwt.key, algorithms: [HS256], audience: shop}\n'
                      '  routes:\n    - {pattern: "/*", scopes: [read]}\n')
    mesh = ml.Mesh.from_config(str(config))
    token = jwt.encode({"sub": "svc", "aud": "shop", "exp": time.time() + 60, "scope": "read"},
                       secret, algorithm="HS256")
    async with AsgiServer(MeshMiddleware(echo, mesh=mesh)) as server, \
            httpx.AsyncClient(base_url=server.url) as client:
        assert (await client.get("/")).status_code == 401
        ok = await client.get("/", headers={"authorization": f"Bearer {token}"})
        assert ok.status_code == 200


def test_jwt_config_problems_are_named(tmp_path: Path) -> None:
    from meshlite.config import load_config

    config = tmp_path / "mesh.yaml"
    config.write_text('services: {}\ninbound:\n'
                      '  jwt: {key_env: NO_SUCH_VARIABLE_HERE, algorithms: [none]}\n')
    with pytest.raises(ml.ConfigError) as info:
        load_config(str(config))
    errors = "\n".join(info.value.errors)  # type: ignore[attr-defined]
    assert "inbound.jwt.key_env: the environment variable NO_SUCH_VARIABLE_HERE is not set" in (
        errors)


def test_meshlite_check_summarises_the_inbound_routes(tmp_path: Path) -> None:
    config = tmp_path / "mesh.yaml"
    config.write_text('services: {}\ninbound:\n  routes:\n'
                      '    - {pattern: "/orders/{id}", rate: 5}\n    - {pattern: "/*"}\n')
    command = "import sys; from meshlite.cli import main; sys.exit(main())"
    result = subprocess.run([sys.executable, "-c", command, "check", str(config)],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert "inbound routes: /orders/{id}, /*" in result.stdout


async def test_a_store_in_the_file_shares_quotas_across_workers(tmp_path: Path) -> None:
    from _system import require_program

    binary = require_program("redis-server", "redis-server")
    from state.redis_server import RedisServer

    server = RedisServer(binary).start()
    try:
        config = tmp_path / "mesh.yaml"
        config.write_text(f'services: {{}}\ninbound:\n  store: "{server.url}"\n  routes:\n'
                          '    - {pattern: "/own", rate: 1, per: 60, burst: 1, key: ip,'
                          ' store: local}\n'
                          '    - {pattern: "/*", rate: 3, per: 60, burst: 3, key: ip}\n')
        # Two workers: two meshes from one file, two servers, one Redis.
        meshes = [ml.Mesh.from_config(str(config)) for _ in range(2)]
        apps = [MeshMiddleware(echo, mesh=m) for m in meshes]
        async with AsgiServer(apps[0]) as one, AsgiServer(apps[1]) as two, \
                httpx.AsyncClient() as client:
            shared = [(await client.get(url + "/x")).status_code
                      for url in (one.url, two.url, one.url, two.url)]
            own = [(await client.get(url + "/own")).status_code
                   for url in (one.url, two.url, one.url)]
    finally:
        server.close()
    assert shared == [200, 200, 200, 429]  # one quota across both workers
    assert own == [200, 200, 429]  # store: local keeps a quota per worker


def test_meshlite_check_names_a_bad_store(tmp_path: Path) -> None:
    config = tmp_path / "mesh.yaml"
    config.write_text('services: {}\ninbound:\n  store: "memcached://127.0.0.1"\n'
                      '  routes:\n    - {pattern: "/*", rate: 5, store: "nope"}\n')
    command = "import sys; from meshlite.cli import main; sys.exit(main())"
    result = subprocess.run([sys.executable, "-c", command, "check", str(config)],
                            capture_output=True, text=True, check=False)
    out = result.stdout + result.stderr
    assert result.returncode == 2
    assert "inbound.store: RedisStore: url must be a redis://" in out
    assert "inbound.routes[0].store: RedisStore: url must be a redis://" in out


async def test_removing_max_deadline_from_the_file_restores_the_middlewares_own(
        tmp_path: Path) -> None:
    config = tmp_path / "mesh.yaml"
    config.write_text("services: {}\ninbound:\n  max_deadline: 0.001\n  trace: false\n")
    mesh = ml.Mesh.from_config(str(config))
    app = MeshMiddleware(echo, mesh=mesh, max_deadline=30.0)
    async with AsgiServer(app) as server, httpx.AsyncClient(base_url=server.url) as client:
        assert (await client.get("/", headers={"x-meshlite-deadline": "1000"})).status_code == 200
        assert (app.max_deadline, app.trace) == (0.001, False)
        config.write_text("services: {}\ninbound:\n  routes: []\n")
        assert await mesh.reload()
        assert (await client.get("/", headers={"x-meshlite-deadline": "1000"})).status_code == 200
        assert (app.max_deadline, app.trace) == (30.0, True)  # the middleware's own again
        config.write_text("services: {}\ninbound:\n  max_deadline: 0.001\n")
        assert await mesh.reload()
        assert (await client.get("/")).status_code == 200
        config.write_text("services: {}\n")  # the section gone
        assert await mesh.reload()
        assert (await client.get("/")).status_code == 200
        assert app.max_deadline == 30.0


@pytest.mark.parametrize("from_file", [True, False])
async def test_the_routes_events_are_relayed_by_one_subscription_made_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, from_file: bool) -> None:
    from meshlite._events import EventHooks
    from meshlite._inbound._relay import EventRelay
    from meshlite.asgi import Route

    (tmp_path / "keys.txt").write_text("alice k-alice admin\n")
    config = tmp_path / "mesh.yaml"
    write(config, '    - {pattern: "/*", rate: 1, per: 60, burst: 1, key: ip}')
    mesh = ml.Mesh.from_config(str(config)) if from_file else ml.Mesh()
    subscribed: list[object] = []
    add = EventHooks.add

    def counted(hooks: EventHooks, hook: Any) -> Any:
        if isinstance(hook, EventRelay):
            subscribed.append(hooks)
        return add(hooks, hook)

    monkeypatch.setattr(EventHooks, "add", counted)
    rejected: list[Any] = []
    mesh.add_hook(lambda event: rejected.append(event) if type(event).__name__ == (
        "CallRejected") else None)
    routes = None if from_file else [Route("/*", rate=1, per=60, burst=1, key="ip")]
    app = MeshMiddleware(echo, mesh=mesh, routes=routes)
    # One subscription per policy of the routes (their pipeline, the quota), made
    # once: the file's routes were followed at construction twice, the second undoing
    # the first.
    assert len(subscribed) == len(list(app.table.policies())) == 2
    assert len({id(hooks) for hooks in subscribed}) == 2
    async with AsgiServer(app) as server, httpx.AsyncClient(base_url=server.url) as client:
        assert [(await client.get("/x")).status_code for _ in range(2)] == [200, 429]
    assert len(rejected) == 1  # the refusal reached the mesh's hooks, once


async def test_the_series_of_routes_a_reload_removed_leave_the_exposition(
        tmp_path: Path) -> None:
    # Route labels come from the file: each reload naming other routes left the
    # series of the old ones (requests by status, latency buckets, the rejections of
    # their quotas) in every scrape and in memory for the life of the process.
    from meshlite.observability import start_http_server

    config = tmp_path / "mesh.yaml"

    def routes(*patterns: str) -> None:
        listed = "".join(f'    - {{pattern: "{p}", rate: 1, per: 60, burst: 1, key: ip}}\n'
                         for p in patterns)
        config.write_text(f"services: {{}}\ninbound:\n  routes:\n{listed}")

    def series(text: str, needle: str) -> list[str]:
        return [line for line in text.splitlines() if needle in line and line[0] != "#"]

    routes("/kept", "/r0")
    mesh = ml.Mesh.from_config(str(config))
    app = MeshMiddleware(echo, mesh=mesh)
    metrics = start_http_server(mesh)
    try:
        async with AsgiServer(app) as server, httpx.AsyncClient() as client:
            for i in range(1, 6):
                for path in ("/kept", f"/r{i - 1}"):  # one answered, one refused (429)
                    assert [(await client.get(server.url + path)).status_code
                            for _ in range(2)] == [200, 429]
                routes("/kept", f"/r{i}")
                assert await mesh.reload()
            assert (await client.get(server.url + "/r5")).status_code == 200
            text = (await client.get(metrics.url)).text
        assert series(text, 'route="/r') == series(text, 'route="/r5"') != []
        assert series(text, '"inbound:/r') == []  # /r5 refused nothing yet
        assert len(series(text, 'meshlite_server_requests_total{route="/kept"')) == 2
        assert series(text, 'meshlite_rejections_total{service="inbound:/kept"') != []
        assert sorted({route for route, _ in app.stats._series}) == ["/kept", "/r5"]
    finally:
        metrics.stop()


async def test_a_request_outliving_its_routes_removal_does_not_bring_its_series_back(
        tmp_path: Path) -> None:
    import asyncio

    config = tmp_path / "mesh.yaml"
    config.write_text('services: {}\ninbound:\n  routes:\n'
                      '    - {pattern: "/slow", max_concurrent: 4}\n')
    mesh = ml.Mesh.from_config(str(config))
    app = MeshMiddleware(echo, mesh=mesh)
    async with AsgiServer(app) as server, httpx.AsyncClient(base_url=server.url) as client:
        slow = asyncio.create_task(client.get("/slow?sleep=0.5"))
        bulkhead = next(p for p in app.table.policies() if isinstance(p, ml.Bulkhead))
        while not bulkhead.running:  # noqa: ASYNC110 - polls the policy, no event to await
            await asyncio.sleep(0.01)
        config.write_text("services: {}\ninbound:\n  routes: []\n")
        assert await mesh.reload()
        assert (await client.get("/")).status_code == 200  # the reload is followed
        assert (await slow).status_code == 200
    assert [route for route, _ in app.stats._series] == ["*"]
