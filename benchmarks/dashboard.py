"""Latency of the dashboard's ``/api/health`` over loopback.

The dashboard runs in a child process (its own interpreter, as in production: no
GIL shared with the client) for a mesh of 8 services with 3 backends each; the
parent sends N sequential requests on one keep-alive connection of the standard
library's ``http.client`` (a thin client, so that the figures are the server's and
the loopback's, not a heavy client's) and reports the percentiles. Target: p99
under 1 ms.

    .venv/bin/python benchmarks/dashboard.py            # N=2000
    .venv/bin/python benchmarks/dashboard.py -n 500     # quicker
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import meshlite as ml

TARGET_P99 = 0.001
WARMUP = 200


def make_mesh() -> ml.Mesh:
    return ml.Mesh([
        ml.Service(f"service-{i}", [f"http://127.0.{i}.{j}:8080" for j in range(1, 4)],
                   pipeline=ml.Pipeline(ml.CircuitBreaker(name=f"breaker-{i}")))
        for i in range(8)
    ])


async def serve() -> None:
    """The child: print the URL, then answer each ``mark`` line on stdin with the
    CPU seconds this process has used; stop when stdin closes."""
    server = await make_mesh().serve_dashboard(port=0)
    print(server.url, flush=True)
    loop = asyncio.get_running_loop()
    while (await loop.run_in_executor(None, sys.stdin.readline)).strip() == "mark":
        print(time.process_time(), flush=True)
    await server.stop()


def percentile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def measure(url: str, n: int, mark: Callable[[], float]
            ) -> tuple[list[float], float, float]:
    """Latencies of ``n`` requests (after a warm-up), and the server's and the
    client's CPU seconds per request."""
    times: list[float] = []
    host, port = url.removeprefix("http://").rstrip("/").rsplit(":", 1)
    client = http.client.HTTPConnection(host, int(port))

    def get() -> None:
        client.request("GET", "/api/health")
        response = client.getresponse()
        response.read()
        if response.status != 200:
            raise RuntimeError(f"/api/health answered {response.status}")

    try:
        for _ in range(WARMUP):
            get()
        server_cpu, client_cpu = mark(), time.process_time()
        for _ in range(n):
            start = time.perf_counter()
            get()
            times.append(time.perf_counter() - start)
        client_cpu = time.process_time() - client_cpu
        server_cpu = mark() - server_cpu
    finally:
        client.close()
    return sorted(times), server_cpu / n, client_cpu / n


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=2000, help="requests measured (default 2000)")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve())
        return 0
    with subprocess.Popen([sys.executable, __file__, "--serve"], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, text=True) as child:
        assert child.stdin is not None
        assert child.stdout is not None
        stdin, stdout = child.stdin, child.stdout

        def mark() -> float:
            stdin.write("mark\n")
            stdin.flush()
            return float(stdout.readline())

        url = stdout.readline().strip()
        try:
            times, server_cpu, client_cpu = measure(url, args.n, mark)
        finally:
            stdin.close()
            child.wait(timeout=10)
    p50, p99 = percentile(times, 0.50), percentile(times, 0.99)
    print(f"GET /api/health over loopback, keep-alive, {args.n} sequential requests "
          f"(8 services x 3 backends)")
    print(f"  p50 {p50 * 1e3:.3f} ms   p99 {p99 * 1e3:.3f} ms   "
          f"mean {statistics.fmean(times) * 1e3:.3f} ms   max {times[-1] * 1e3:.3f} ms")
    print(f"  CPU per request: server {server_cpu * 1e6:.0f} us, client {client_cpu * 1e6:.0f} us"
          " (the latency floor on an idle machine)")
    ok = p99 < TARGET_P99
    print(f"  target p99 < {TARGET_P99 * 1e3:.0f} ms: {'ok' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
