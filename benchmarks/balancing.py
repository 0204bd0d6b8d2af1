"""Load balancing with bad backends: nginx, HAProxy and meshlite, same load, one run.

Each scenario starts three loopback backends (``meshlite.testing.FakeBackend``, in a
child process so they do not share the load generator's CPU) with one bad backend
among them, and sends the same paced ``httpx`` load through each system in turn:

- nginx, round robin, ``max_fails=3 fail_timeout=10s``, ``proxy_next_upstream``
  on errors, timeouts and 502/503/504 (three tries);
- HAProxy, ``leastconn`` with HTTP health checks (``GET /healthz`` every second),
  ``retries 2`` with redispatch and ``retry-on`` the same failures;
- meshlite ``round_robin`` and ``p2c_ewma``: ``Timeout`` > ``Retry(3)``, and
  ``OutlierDetection(consecutive_failures=3, base_ejection_seconds=10)``.

nginx and HAProxy run from temporary config files on free loopback ports, in the
foreground, and are stopped after their run; if either is missing the benchmark
installs it with ``apt-get`` (as root on Debian), or skips it and says why.

    .venv/bin/python benchmarks/balancing.py            # about three minutes
    .venv/bin/python benchmarks/balancing.py --quick    # a smoke run
    .venv/bin/python benchmarks/balancing.py --loaded   # the busy client: unpaced, meshlite only

The load is modest on purpose (50 requests a second): the load generator and the
backends are Python, and a saturated CPU measures queueing in the client, not
balancing. Run it on an otherwise idle machine; it prints the load average. It
exits with 1 when a target is missed:

- a slow backend: meshlite ``p2c_ewma`` p99 at most 0.5x nginx round robin's;
- a backend down: meshlite (both balancers) answers 100% of the requests.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

import meshlite as ml
from meshlite._console import render_table
from meshlite._demo_mesh import LoadResult, paced_load
from meshlite.testing import FakeBackend

FAST = 0.005
SLOW = 0.2
TIMEOUT = 2.0  # seconds per request, the client's (and the mesh's total) budget
CONNECT_TIMEOUT = 0.1  # seconds the proxies give a connect to a backend (loopback);
# also HAProxy's pause before retrying on the same server, min(timeout connect, 1 s)
BACKEND_TIMEOUT = 1.0  # seconds the proxies wait for a backend's answer


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    backends: tuple[dict[str, Any], ...]  # FakeBackend behaviour of each backend
    bad: int = 2  # the backend whose share of the requests the table shows


SCENARIOS = (
    Scenario("slow", f"3 backends, one answers in {SLOW * 1000:.0f} ms instead of "
             f"{FAST * 1000:.0f} ms",
             ({"latency": FAST}, {"latency": FAST}, {"latency": SLOW})),
    Scenario("down", "3 backends, one down (its port closed)",
             ({"latency": FAST}, {"latency": FAST}, {"down": True})),
    Scenario("failing", "3 backends, one answers 503 to a third of its requests",
             ({"latency": FAST}, {"latency": FAST}, {"latency": FAST, "error_rate": 1 / 3})),
    Scenario("slow+failing", "3 backends: one healthy, one slow (the bad one counted), "
             "one failing a third",
             ({"latency": FAST}, {"latency": SLOW}, {"latency": FAST, "error_rate": 1 / 3}),
             bad=1),
)
LOADED = Scenario("loaded", "3 backends: healthy 2 ms, slow 120 ms (counted), failing 40%; "
                  "unpaced", ({"latency": 0.002}, {"latency": 0.12},
                              {"latency": 0.002, "error_rate": 0.4}), bad=1)
"""Balancing when the client itself is busy (``--loaded``): no pacing, 16 and 32 in
flight, default services (``p2c_ewma`` vs ``round_robin``), as a new user would."""
SYSTEMS = ("nginx round_robin", "HAProxy leastconn", "meshlite round_robin",
           "meshlite p2c_ewma")


# -- the backends, in a child process --------------------------------------------------

async def serve(name: str, seed: int) -> None:
    """Child mode: run the scenario's backends; print their URLs as one JSON line, then
    answer each line read on stdin with the requests each backend received (health
    checks excluded); stop at end of input."""
    scenario = next(s for s in (*SCENARIOS, LOADED) if s.name == name)
    async with contextlib.AsyncExitStack() as stack:
        backends = []
        for i, behaviour in enumerate(scenario.backends):
            b = FakeBackend(seed=seed + i, **{k: v for k, v in behaviour.items() if k != "down"})
            backends.append(await stack.enter_async_context(b))
            if behaviour.get("down"):
                b.set(down=True)
        print(json.dumps([b.url for b in backends]), flush=True)
        loop = asyncio.get_running_loop()
        while await loop.run_in_executor(None, sys.stdin.readline):
            counts = [sum(r.path != "/healthz" for r in b.requests) for b in backends]
            print(json.dumps(counts), flush=True)


class Backends:
    """The parent's handle on the backends' child process."""

    def __init__(self, scenario: Scenario, seed: int) -> None:
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--serve", scenario.name, "--seed", str(seed)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        assert self.process.stdin is not None
        self._in, self._out = self.process.stdin, self.process.stdout
        line = self._out.readline()
        if not line:
            self.close()
            raise RuntimeError("the backends' process ended before it listened")
        self.urls: list[str] = json.loads(line)

    def counts(self) -> list[int]:
        self._in.write("counts\n")
        self._in.flush()
        counts: list[int] = json.loads(self._out.readline())
        return counts

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._in.close()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


# -- nginx and HAProxy -------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _hostport(url: str) -> str:
    return url.removeprefix("http://")


def nginx_config(port: int, upstreams: list[str], tmp: Path) -> str:
    servers = "".join(f"        server {_hostport(u)} max_fails=3 fail_timeout=10s;\n"
                      for u in upstreams)
    temp = "".join(f"    {kind}_temp_path {tmp / kind};\n"
                   for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    ms, connect = int(BACKEND_TIMEOUT * 1000), int(CONNECT_TIMEOUT * 1000)
    return f"""worker_processes 1;
pid {tmp / "nginx.pid"};
error_log {tmp / "nginx-error.log"} warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
{temp}    upstream backends {{
{servers}        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://backends;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_next_upstream error timeout http_502 http_503 http_504;
            proxy_next_upstream_tries 3;
            proxy_connect_timeout {connect}ms;
            proxy_read_timeout {ms}ms;
        }}
    }}
}}
"""


def haproxy_config(port: int, upstreams: list[str]) -> str:
    servers = "".join(f"    server b{i} {_hostport(u)}\n" for i, u in enumerate(upstreams))
    ms, connect = int(BACKEND_TIMEOUT * 1000), int(CONNECT_TIMEOUT * 1000)
    return f"""global
    maxconn 4096
defaults
    mode http
    timeout connect {connect}ms
    timeout server {ms}ms
    timeout client 30s
    retries 2
    option redispatch 1
    retry-on conn-failure empty-response response-timeout 502 503 504
listen bench
    bind 127.0.0.1:{port}
    balance leastconn
    option httpchk GET /healthz
    default-server check inter 1s fall 3 rise 2
{servers}"""


def _wait_listening(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"exited with {process.returncode}: "
                               f"{log.read_text(errors='replace').strip()[-400:]}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError("did not listen within 10 s")


@contextlib.contextmanager
def proxy(kind: str, upstreams: list[str]) -> Iterator[str]:
    """Run nginx or HAProxy in the foreground in front of ``upstreams``; yields its URL
    and stops it (then kills it if it lingers) on exit."""
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix=f"meshlite-bench-{kind}-") as where:
        tmp = Path(where)
        config = tmp / f"{kind}.conf"
        log = tmp / f"{kind}.out"
        if kind == "nginx":
            config.write_text(nginx_config(port, upstreams, tmp))
            argv = ["nginx", "-p", str(tmp), "-e", str(tmp / "nginx-error.log"),
                    "-c", str(config), "-g", "daemon off;"]
        else:
            config.write_text(haproxy_config(port, upstreams))
            argv = ["haproxy", "-db", "-f", str(config)]
        with log.open("wb") as out:
            process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                       stderr=subprocess.STDOUT)
        try:
            _wait_listening(port, process, log)
            yield f"http://127.0.0.1:{port}"
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def ensure_installed(install: bool) -> dict[str, str | None]:
    """``{"nginx": None, "haproxy": None}`` when both run; a reason instead of None for
    one that cannot be had. Missing ones are installed with apt-get (root only)."""
    missing = [name for name in ("nginx", "haproxy") if shutil.which(name) is None]
    if missing and install and os.geteuid() == 0 and shutil.which("apt-get"):
        print(f"installing {' '.join(missing)} from Debian (apt-get install -y) ...",
              flush=True)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for argv in (["apt-get", "install", "-y", *missing], ["apt-get", "update"],
                     ["apt-get", "install", "-y", *missing]):
            done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
            if argv[1] == "install" and done.returncode == 0:
                break
    reasons: dict[str, str | None] = {}
    for name in ("nginx", "haproxy"):
        if shutil.which(name) is not None:
            reasons[name] = None
        elif not install:
            reasons[name] = f"{name} is not installed (and --no-install was given)"
        elif os.geteuid() != 0 or not shutil.which("apt-get"):
            reasons[name] = f"{name} is not installed, and installing it needs root and apt-get"
        else:
            reasons[name] = f"{name} is not installed and apt-get could not install it"
    return reasons


# -- the load ------------------------------------------------------------------------------

LIMITS = httpx.Limits(max_connections=64, max_keepalive_connections=64)


@dataclass
class Load:
    calls: int
    rate: float
    concurrency: int

    def run(self, send: Callable[[httpx.AsyncClient, int], Awaitable[httpx.Response]],
            client: Callable[[], httpx.AsyncClient], mesh: ml.Mesh | None = None
            ) -> LoadResult:
        async def go() -> LoadResult:
            result = LoadResult(self.calls)
            async with contextlib.AsyncExitStack() as stack:
                if mesh is not None:
                    await stack.enter_async_context(mesh)
                c = await stack.enter_async_context(client())
                await paced_load(lambda i: send(c, i), result, rate=self.rate,
                                 concurrency=self.concurrency)
            return result

        return asyncio.run(go())


async def _get(client: httpx.AsyncClient, i: int) -> httpx.Response:
    return await client.get(f"/items/{i}")


def through_proxy(load: Load, url: str) -> LoadResult:
    return load.run(_get, lambda: httpx.AsyncClient(base_url=url, timeout=TIMEOUT,
                                                    limits=LIMITS, trust_env=False))


def through_mesh(load: Load, balancer: str, urls: list[str]) -> LoadResult:
    service = ml.Service(
        "bench", urls, balancer=balancer,
        pipeline=ml.Pipeline(
            ml.Timeout(TIMEOUT),
            ml.Retry(attempts=3, backoff=ml.backoff.exponential(initial=0.002, maximum=0.02)),
        ),
        outlier_detection=ml.OutlierDetection(consecutive_failures=3,
                                               base_ejection_seconds=10.0),
        http_pool={"limits": LIMITS},
    )
    mesh = ml.Mesh([service])
    return load.run(_get, lambda: mesh.http("bench", timeout=TIMEOUT), mesh)


# -- one scenario -------------------------------------------------------------------------

@dataclass
class Outcome:
    system: str
    result: LoadResult | None
    bad_share: float | None  # share of requests the bad backend received
    skipped: str | None = None


def run_scenario(scenario: Scenario, load: Load, reasons: dict[str, str | None],
                 seed: int) -> list[Outcome]:
    backends = Backends(scenario, seed)
    outcomes: list[Outcome] = []
    try:
        runs: dict[str, Callable[[], LoadResult]] = {
            "nginx round_robin": lambda: _proxied("nginx", load, backends.urls),
            "HAProxy leastconn": lambda: _proxied("haproxy", load, backends.urls),
            "meshlite round_robin": lambda: through_mesh(load, "round_robin", backends.urls),
            "meshlite p2c_ewma": lambda: through_mesh(load, "p2c_ewma", backends.urls),
        }
        for system in SYSTEMS:
            tool = system.split()[0].lower()
            reason = reasons.get(tool)
            if reason is not None:
                outcomes.append(Outcome(system, None, None, reason))
                continue
            before = backends.counts()[scenario.bad]
            try:
                result = runs[system]()
            except RuntimeError as error:
                outcomes.append(Outcome(system, None, None, f"{tool} failed: {error}"))
                continue
            bad = backends.counts()[scenario.bad] - before
            outcomes.append(Outcome(system, result, bad / load.calls))
            print(f"  {system}: done", file=sys.stderr, flush=True)
    finally:
        backends.close()
    return outcomes


def _proxied(kind: str, load: Load, urls: list[str]) -> LoadResult:
    with proxy(kind, urls) as url:
        return through_proxy(load, url)


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def report(scenario: Scenario, outcomes: list[Outcome]) -> None:
    """Print one scenario's table: success, p50, p99, p99 over nginx's, bad share."""
    nginx = next((o.result for o in outcomes if o.system.startswith("nginx")), None)
    rows: list[tuple[str, ...]] = []
    for o in outcomes:
        r = o.result
        if r is None or o.bad_share is None:
            rows.append((o.system, "skipped", "", "", "", ""))
            continue
        p99 = r.quantile(0.99)
        ratio = f"{p99 / nginx.quantile(0.99):.2f}" if nginx is not None else "n/a"
        rows.append((o.system, f"{r.success_rate:.1%}", _ms(r.quantile(0.5)), _ms(p99),
                     ratio, f"{o.bad_share:.1%}"))
    print(f"\n{scenario.name}: {scenario.description}")
    print(render_table(("system", "success", "p50 ms", "p99 ms", "p99 / nginx p99",
                        "bad backend got"), rows))
    for o in outcomes:
        if o.skipped:
            print(f"  {o.system} skipped: {o.skipped}")
    sys.stdout.flush()


def _find(results: dict[str, list[Outcome]], scenario: str, system: str) -> LoadResult | None:
    return next((o.result for o in results.get(scenario, ()) if o.system == system), None)


def targets(results: dict[str, list[Outcome]]) -> list[str]:
    """The issue's targets, each with its figure and whether it was met."""
    lines = []
    p2c, nginx = (_find(results, "slow", s) for s in ("meshlite p2c_ewma", "nginx round_robin"))
    if p2c is not None and nginx is not None:
        ratio = p2c.quantile(0.99) / nginx.quantile(0.99)
        lines.append(f"slow backend: meshlite p2c_ewma p99 / nginx round robin p99 = "
                     f"{ratio:.2f} (target <= 0.5): {'met' if ratio <= 0.5 else 'NOT met'}")
    for system in ("meshlite round_robin", "meshlite p2c_ewma"):
        r = _find(results, "down", system)
        if r is not None:
            met = r.succeeded == r.calls
            lines.append(f"backend down: {system} success {r.success_rate:.2%} "
                         f"(target 100%): {'met' if met else 'NOT met'}")
    return lines


LOADED_RUNS: dict[str, dict[str, Any]] = {
    "round_robin": {"balancer": "round_robin"},
    "p2c_ewma": {"balancer": "p2c_ewma"},
    # The same with an active health check: its first round, before any request,
    # gives each endpoint a prior latency (Endpoint.probed).
    "p2c_ewma + health check": {"balancer": "p2c_ewma",
                                "health_check": ml.HttpHealthCheck(interval=5.0)},
}


def loaded(calls: int, seed: int) -> list[str]:
    """``--loaded``: unpaced GETs at 16 and 32 in flight through default services
    (``round_robin`` and ``p2c_ewma``, and ``p2c_ewma`` with a health check) on
    healthy 2 ms / slow 120 ms / failing 40% backends; prints each run and returns
    the target lines."""
    backends = Backends(LOADED, seed)
    lines: list[str] = []
    try:
        for concurrency in (16, 32):
            p99: dict[str, float] = {}
            share: dict[str, float] = {}
            for run, options in LOADED_RUNS.items():
                mesh = ml.Mesh([ml.Service("bench", backends.urls, **options)])
                before = backends.counts()
                result = Load(calls, 1e9, concurrency).run(
                    _get, lambda m=mesh: m.http("bench", timeout=TIMEOUT), mesh)
                sent = [a - b for a, b in zip(backends.counts(), before, strict=True)]
                share[run] = sent[LOADED.bad] / sum(sent)
                p99[run] = result.quantile(0.99)
                print(f"  {concurrency} in flight, {run}: success "
                      f"{result.success_rate:.1%}, p99 {_ms(p99[run])} ms, slow "
                      f"backend got {share[run]:.1%}", flush=True)
            for run in ("p2c_ewma", "p2c_ewma + health check"):
                ratio = p99[run] / p99["round_robin"]
                lines.append(f"loaded, {concurrency} in flight: {run} slow share "
                             f"{share[run]:.1%} (target <= 2%): "
                             f"{'met' if share[run] <= 0.02 else 'NOT met'}")
                lines.append(f"loaded, {concurrency} in flight: {run} p99 / round_robin p99"
                             f" = {ratio:.2f} (target <= 0.5): "
                             f"{'met' if ratio <= 0.5 else 'NOT met'}")
    finally:
        backends.close()
    return lines


def _load_average() -> str:
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except OSError:
        return "unknown"


def _versions(reasons: dict[str, str | None]) -> str:
    found = [f"Python {sys.version.split()[0]}", f"httpx {httpx.__version__}",
             f"{os.cpu_count()} CPUs"]
    for name, argv in (("nginx", ["nginx", "-v"]), ("haproxy", ["haproxy", "-v"])):
        if reasons.get(name) is None:
            done = subprocess.run(argv, capture_output=True, text=True, check=False)
            found.append((done.stdout + done.stderr).splitlines()[0].strip())
    return "; ".join(found)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run (100 requests)")
    parser.add_argument("--calls", type=int, default=500, help="requests per system")
    parser.add_argument("--rate", type=float, default=50.0, help="requests started a second")
    parser.add_argument("--concurrency", type=int, default=64, help="most in flight")
    parser.add_argument("--seed", type=int, default=1, help="seed of the failing backend")
    parser.add_argument("--scenario", action="append", choices=[s.name for s in SCENARIOS],
                        help="run only this scenario (repeatable)")
    parser.add_argument("--no-install", action="store_true",
                        help="do not apt-get install a missing nginx or HAProxy")
    parser.add_argument("--loaded", action="store_true",
                        help="only the busy-client scenario: unpaced, 16 and 32 in flight")
    parser.add_argument("--serve", help=argparse.SUPPRESS)  # child mode: the backends
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.serve:
        asyncio.run(serve(args.serve, args.seed))
        return 0
    if args.loaded:
        print(f"{LOADED.description}; {600} GETs per run, default services")
        lines = loaded(600, args.seed)
        print("\ntargets:\n" + "\n".join(f"  {line}" for line in lines))
        return 1 if any(line.endswith("NOT met") for line in lines) else 0
    load = Load(100 if args.quick else args.calls, args.rate, args.concurrency)
    reasons = ensure_installed(not args.no_install)
    print(f"{load.calls} GET requests per system, {load.rate:g} a second, at most "
          f"{load.concurrency} in flight, {TIMEOUT:g} s timeout; latencies count every "
          f"request, failed ones included.\n{_versions(reasons)}")
    results: dict[str, list[Outcome]] = {}
    for scenario in SCENARIOS:
        if args.scenario and scenario.name not in args.scenario:
            continue
        print(f"running {scenario.name} ...", file=sys.stderr, flush=True)
        load_before = _load_average()
        results[scenario.name] = run_scenario(scenario, load, reasons, args.seed)
        report(scenario, results[scenario.name])
        print(f"(load average {load_before} before, {_load_average()} after)")
    print("\ntargets:")
    lines = targets(results)
    for line in lines:
        print(f"  {line}")
    return 1 if any(line.endswith("NOT met") for line in lines) else 0


if __name__ == "__main__":
    sys.exit(main())
