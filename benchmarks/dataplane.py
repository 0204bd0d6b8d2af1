"""Data plane: HTTP through the mesh against bare clients, side by side, one run.

Starts nginx on loopback (two ``server`` blocks answering a fixed 200: the two
backends of the mesh service; installed with ``apt-get`` when missing, as
``benchmarks/balancing.py`` does) and measures, in this one client process,
requests per second and CPU time per request (this process only, not nginx's) at
1 and 32 requests in flight, over the measured requests only (each client is made
and warmed up first, and closed after):

- async: bare ``aiohttp.ClientSession``, bare ``httpx.AsyncClient``,
  ``mesh.aiohttp()`` and ``mesh.http()``;
- sync (one thread): urllib3 ``PoolManager``, ``httpx.Client``, ``mesh.http_sync()``.

Mesh rows use the default service (``p2c_ewma``, the default pipeline, metrics
on) over the two backends. Each row runs ``--rounds`` times, interleaved with the
others, and the best round counts (the machine is shared: the best round is the
least disturbed one); the aiohttp ratio is also printed round by round, whose median
a busy minute moves less. Then 10,000 requests through each mesh client, after a
warm-up, must leave the RSS within 2 MB of where it started.

    .venv/bin/python benchmarks/dataplane.py            # about a minute
    .venv/bin/python benchmarks/dataplane.py --quick    # a smoke run

Exits with 1 when a target is missed:

- ``mesh.aiohttp()`` >= 0.85x bare aiohttp requests/s at 32 in flight;
- ``mesh.http()`` >= 8x bare httpx requests/s at 32 in flight;
- ``mesh.http_sync()`` CPU per request <= 1.5x urllib3's;
- memory: RSS growth <= 2 MB over 10,000 requests through each mesh client.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import urllib3

import meshlite as ml
from meshlite._console import render_table

sys.path.insert(0, str(Path(__file__).parent))
from balancing import _free_port, _wait_listening, ensure_installed

BODY = "ok"
MEMORY_SLACK = 2 * 1024 * 1024


# -- nginx ---------------------------------------------------------------------------------

def nginx_config(ports: list[int], tmp: Path) -> str:
    servers = "".join(f"""    server {{
        listen 127.0.0.1:{port};
        keepalive_requests 1000000;
        location / {{ return 200 "{BODY}"; }}
    }}
""" for port in ports)
    temp = "".join(f"    {kind}_temp_path {tmp / kind};\n"
                   for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return f"""worker_processes 1;
pid {tmp / "nginx.pid"};
error_log {tmp / "nginx-error.log"} warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
{temp}{servers}}}
"""


@contextlib.contextmanager
def nginx(count: int) -> Iterator[list[str]]:
    """Run nginx in the foreground with ``count`` loopback servers; yields their URLs."""
    ports = [_free_port() for _ in range(count)]
    with tempfile.TemporaryDirectory(prefix="meshlite-dataplane-") as where:
        tmp = Path(where)
        config = tmp / "nginx.conf"
        config.write_text(nginx_config(ports, tmp))
        log = tmp / "nginx.out"
        with log.open("wb") as out:
            process = subprocess.Popen(
                ["nginx", "-p", str(tmp), "-e", str(tmp / "nginx-error.log"), "-c",
                 str(config), "-g", "daemon off;"],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        try:
            for port in ports:
                _wait_listening(port, process, log)
            yield [f"http://127.0.0.1:{port}" for port in ports]
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


# -- measuring -----------------------------------------------------------------------------

@dataclass
class Figure:
    rps: float
    cpu_us: float  # CPU time of this process per request, microseconds


class Steady:
    """Times the measured requests of one run (``around`` of a client's run): after
    the client is made and warmed up, before it is closed, so that a row's figure is
    its requests' and not its set-up's (making a mesh and its session costs about a
    millisecond, bare aiohttp's session a third of one; a mesh's first requests wait
    for each backend's first answer)."""

    def __init__(self, requests: int) -> None:
        self.requests = requests
        self.figure: Figure | None = None

    @contextlib.contextmanager
    def __call__(self) -> Iterator[None]:
        gc.collect()
        cpu, wall = time.process_time(), time.perf_counter()
        yield
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        self.figure = Figure(self.requests / wall, cpu / self.requests * 1e6)


def _measure(run: Callable[[Steady], None], requests: int) -> Figure:
    """The figure of ``requests`` made by ``run(around)``, which enters ``around()``
    around them (``_async_client``'s and ``_sync_client``'s ``around``)."""
    steady = Steady(requests)
    run(steady)
    assert steady.figure is not None, "the client's run never entered its measured part"
    return steady.figure


Get = Callable[[int], Awaitable[Any]]


async def _drive(get: Get, requests: int, concurrency: int) -> None:
    left = requests

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await get(left)

    await asyncio.gather(*(worker() for _ in range(concurrency)))


def _mesh(urls: list[str], service: dict[str, Any] | None = None,
          mesh: dict[str, Any] | None = None) -> ml.Mesh:
    # The default service (p2c_ewma, default pipeline, metrics), or these options.
    return ml.Mesh([ml.Service("bench", urls, **(service or {}))], **(mesh or {}))


def _async_client(kind: str, urls: list[str], service: dict[str, Any] | None = None,
                  mesh_options: dict[str, Any] | None = None,
                  around: Callable[[], contextlib.AbstractContextManager[Any]] =
                  contextlib.nullcontext) -> Callable[[int, int], None]:
    """``run(requests, concurrency)`` for one async client kind (mesh kinds: over
    ``_mesh(urls, service, mesh_options)``); ``around()`` is entered around the
    measured requests (after the warm-up)."""

    def run(requests: int, concurrency: int) -> None:
        async def go() -> None:
            async with contextlib.AsyncExitStack() as stack:
                get: Get
                if kind in ("aiohttp", UNTIMED):
                    untimed = aiohttp.ClientTimeout(total=None, sock_connect=30)
                    session = await stack.enter_async_context(aiohttp.ClientSession(
                        base_url=urls[0] + "/", connector=aiohttp.TCPConnector(limit=64),
                        **({"timeout": untimed} if kind == UNTIMED else {})))

                    async def get(i: int) -> Any:
                        async with session.get(f"/items/{i % 100}") as r:
                            return await r.read()
                elif kind == "httpx":
                    client = await stack.enter_async_context(httpx.AsyncClient(
                        base_url=urls[0], limits=httpx.Limits(max_connections=64)))

                    async def get(i: int) -> Any:
                        return (await client.get(f"/items/{i % 100}")).content
                elif kind == "mesh.aiohttp()":
                    mesh = await stack.enter_async_context(_mesh(urls, service, mesh_options))
                    session = await stack.enter_async_context(mesh.aiohttp("bench"))

                    async def get(i: int) -> Any:
                        async with session.get(f"/items/{i % 100}") as r:
                            return await r.read()
                else:
                    mesh = await stack.enter_async_context(_mesh(urls, service, mesh_options))
                    client = await stack.enter_async_context(mesh.http("bench"))

                    async def get(i: int) -> Any:
                        return (await client.get(f"/items/{i % 100}")).content
                await _drive(get, min(200, requests), concurrency)  # warm-up
                with around():
                    await _drive(get, requests, concurrency)

        asyncio.run(go())

    return run


def _sync_client(kind: str, urls: list[str],
                 around: Callable[[], contextlib.AbstractContextManager[Any]] =
                 contextlib.nullcontext) -> Callable[[int, int], None]:
    """``run(requests, concurrency)`` for one sync client kind; ``around()`` is entered
    around the measured requests (after the warm-up)."""

    def run(requests: int, concurrency: int) -> None:
        with contextlib.ExitStack() as stack:
            get: Callable[[int], Any]
            if kind == "urllib3":
                pool = stack.enter_context(urllib3.PoolManager(maxsize=4))
                base = urls[0]

                def get(i: int) -> Any:
                    return pool.request("GET", f"{base}/items/{i % 100}").data
            elif kind == "httpx.Client":
                client = stack.enter_context(httpx.Client(base_url=urls[0]))

                def get(i: int) -> Any:
                    return client.get(f"/items/{i % 100}").content
            else:
                mesh = stack.enter_context(_mesh(urls))
                client = stack.enter_context(mesh.http_sync("bench"))

                def get(i: int) -> Any:
                    return client.get(f"/items/{i % 100}").content
            for i in range(min(200, requests)):
                get(i)
            with around():
                for i in range(requests):
                    get(i)

    return run


ASYNC = ("aiohttp", "httpx", "mesh.aiohttp()", "mesh.http()")
UNTIMED = "aiohttp, no total"
"""Bare aiohttp with ``ClientTimeout(total=None, sock_connect=30)``: no timer a request.
No target: it shows how much of ``mesh.aiohttp()``'s rate comes from keeping the
session's total with one timer (docs/benchmarks.md, "The session's total timeout")."""
SYNC = ("urllib3", "httpx.Client", "mesh.http_sync()")


Figures = dict[tuple[str, int], Figure]


def measure_all(urls: list[str], requests: int, rounds: int) -> list[Figures]:
    """Every round's figures, in order."""
    seen: list[Figures] = []
    for round_ in range(rounds):
        this: Figures = {}
        seen.append(this)
        for kind in (*ASYNC, UNTIMED, *SYNC):
            levels = (1, 32) if kind in ASYNC else (32,) if kind == UNTIMED else (1,)
            for concurrency in levels:
                client = _async_client if kind in (*ASYNC, UNTIMED) else _sync_client
                # bare httpx is slow: fewer requests keep the run short, same figures
                n = requests // 4 if kind == "httpx" else requests
                figure = _measure(lambda around: client(  # noqa: B023
                    kind, urls, around=around)(n, concurrency), n)  # noqa: B023
                this[(kind, concurrency)] = figure
        print(f"  round {round_ + 1}/{rounds} done", file=sys.stderr, flush=True)
    return seen


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def memory(urls: list[str], requests: int) -> dict[str, int]:
    """RSS growth (bytes) over ``requests`` through each mesh client, after warm-up,
    in one event loop / one client, as a long-running service would use them."""
    growth: dict[str, int] = {}

    async def through(kind: str) -> int:
        async with _mesh(urls) as mesh:
            if kind == "mesh.aiohttp()":
                session = mesh.aiohttp("bench")

                async def get(i: int) -> Any:
                    async with session.get(f"/items/{i % 100}") as r:
                        return await r.read()
            else:
                client = mesh.http("bench")

                async def get(i: int) -> Any:
                    return (await client.get(f"/items/{i % 100}")).content
            await _drive(get, 2000, 32)  # warm-up
            gc.collect()
            before = _rss()
            await _drive(get, requests, 32)
            gc.collect()
            return _rss() - before

    for kind in ("mesh.aiohttp()", "mesh.http()"):
        growth[kind] = asyncio.run(through(kind))
    with _mesh(urls) as mesh, mesh.http_sync("bench") as client:
        for i in range(2000):
            client.get(f"/items/{i % 100}")
        gc.collect()
        before = _rss()
        for i in range(requests):
            client.get(f"/items/{i % 100}")
        gc.collect()
        growth["mesh.http_sync()"] = _rss() - before
    return growth


def report(seen: list[Figures], growth: dict[str, int]) -> list[str]:
    """Print the table of each row's best round; return the targets' lines. The
    aiohttp ratio is also given round by round: the two clients of one round ran a few
    seconds apart, under the same load, so the median of those ratios moves less with
    a busy minute than the ratio of two bests from different rounds."""
    best = {key: max((one[key] for one in seen), key=lambda figure: figure.rps)
            for key in seen[0]}
    rows = []
    for kind in (*ASYNC, UNTIMED, *SYNC):
        one = best.get((kind, 1))
        many = best.get((kind, 32))
        rows.append((kind, f"{one.rps:,.0f}" if one else "-",
                     f"{many.rps:,.0f}" if many else "-",
                     f"{(many or one).cpu_us:,.0f}" if (many or one) else "-"))
    print(render_table(("client", "C=1 req/s", "C=32 req/s",
                        "CPU us/request (C=32; sync C=1)"), rows))
    lines = []

    def target(text: str, value: float, limit: float, at_least: bool) -> None:
        met = value >= limit if at_least else value <= limit
        sign = ">=" if at_least else "<="
        lines.append(f"{text} = {value:.2f} (target {sign} {limit}): "
                     f"{'met' if met else 'NOT met'}")

    target("mesh.aiohttp() / aiohttp req/s at C=32",
           best[("mesh.aiohttp()", 32)].rps / best[("aiohttp", 32)].rps, 0.85, True)
    target("mesh.http() / httpx req/s at C=32",
           best[("mesh.http()", 32)].rps / best[("httpx", 32)].rps, 8.0, True)
    target("mesh.http_sync() / urllib3 CPU per request",
           best[("mesh.http_sync()", 1)].cpu_us / best[("urllib3", 1)].cpu_us, 1.5, False)
    paired = sorted(one[("mesh.aiohttp()", 32)].rps / one[("aiohttp", 32)].rps
                    for one in seen)
    if len(paired) > 1:
        lines.append(f"mesh.aiohttp() / aiohttp req/s at C=32, round by round: median "
                     f"{statistics.median(paired):.2f} ({paired[0]:.2f} to {paired[-1]:.2f}, "
                     f"{len(paired)} rounds; the target above is judged on the bests)")
    untimed = best.get((UNTIMED, 32))
    if untimed is not None:
        lines.append(f"mesh.aiohttp() / {UNTIMED} req/s at C=32 = "
                     f"{best[('mesh.aiohttp()', 32)].rps / untimed.rps:.2f} (no target: the "
                     "same work without aiohttp's timer a request)")
    for kind, grown in growth.items():
        target(f"{kind} RSS growth over the memory run, MB", grown / 2**20,
               MEMORY_SLACK / 2**20, False)
    return lines


def nginx_arguments(description: str) -> argparse.ArgumentParser:
    """The options of a script measuring against this module's nginx: ``--rounds``,
    ``--requests`` and ``--no-install``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--no-install", action="store_true",
                        help="do not apt-get install nginx when it is missing")
    return parser


def nginx_ready(args: argparse.Namespace) -> bool:
    """Whether nginx is there (installed now unless ``--no-install``); says why not."""
    reason = ensure_installed(not args.no_install).get("nginx")
    if reason is not None:
        print(f"cannot run: {reason}", file=sys.stderr)
    return reason is None


def main() -> int:
    parser = nginx_arguments(__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    args = parser.parse_args()
    if not nginx_ready(args):
        return 2
    requests = 400 if args.quick else args.requests
    rounds = 1 if args.quick else args.rounds
    with open("/proc/loadavg") as f:
        print(f"load average before: {f.read().split()[0]} (2 cores shared: figures are "
              "noisy; ratios come from one run)", flush=True)
    with nginx(2) as urls:
        seen = measure_all(urls, requests, rounds)
        growth = memory(urls, 1000 if args.quick else 10_000)
    lines = report(seen, growth)
    print("\n".join(lines))
    return 1 if any("NOT met" in line for line in lines) else 0


if __name__ == "__main__":
    sys.exit(main())
