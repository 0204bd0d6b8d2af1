"""``meshlite demo --services``: the shop of ``examples/shop/`` (gateway -> orders ->
inventory and payments), four processes under uvicorn on loopback ports, calling each
other only through their meshes. Payments fails a share of charges (the injected
fault); the demo drives checkouts through the gateway with a deadline and prints what
the meshes did: the statuses, the deadline shrinking hop by hop, the retries that hid
the fault, and the service-to-service edges each dashboard learned.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, TextIO

import httpx

from ._console import render_table
from ._errors import ConfigError

__all__ = ["SERVICES", "ShopResult", "find_shop", "run_shop_demo"]

SERVICES = ("inventory", "payments", "orders", "gateway")
"""Started in this order, so each finds the services it calls up."""

DEADLINE_MS = 2000
"""The budget each checkout is sent with (``x-meshlite-deadline``)."""


@dataclass
class ShopResult:
    """What the demo saw: gateway statuses, the budgets reported at each hop of one
    checkout, and each service's ``/api/topology`` and ``/api/services``."""

    statuses: Counter[int] = field(default_factory=Counter)
    budgets: dict[str, float] = field(default_factory=dict)
    topology: dict[str, Any] = field(default_factory=dict)
    services: dict[str, Any] = field(default_factory=dict)
    urls: dict[str, str] = field(default_factory=dict)


def find_shop(directory: str | None = None) -> pathlib.Path:
    """The ``examples/shop`` directory: ``directory``, else under the current
    directory, else beside the meshlite package (a source checkout)."""
    candidates = [pathlib.Path(directory)] if directory else [
        pathlib.Path.cwd() / "examples" / "shop",
        pathlib.Path(__file__).resolve().parents[1] / "examples" / "shop"]
    for path in candidates:
        if (path / "shop.py").is_file():
            return path
    if directory:
        raise ConfigError(f"meshlite demo --services: --dir {directory} holds no shop.py; "
                          "pass the examples/shop directory of a meshlite source checkout",
                          policy="demo")
    raise ConfigError("meshlite demo --services: examples/shop was not found; run it from "
                      "a meshlite source checkout or pass --dir PATH/TO/examples/shop",
                      policy="demo")


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _environments(fault_rate: float, otlp: str | None) -> tuple[dict[str, dict[str, str]],
                                                                dict[str, str]]:
    ports = _free_ports(2 * len(SERVICES))
    urls = {name: f"http://127.0.0.1:{ports[i]}" for i, name in enumerate(SERVICES)}
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SHOP_", "MESHLITE_"))}
    base.update({f"SHOP_{n.upper()}_URL": u for n, u in urls.items()})
    base["OTEL_BSP_SCHEDULE_DELAY"] = "200"
    if otlp is not None:
        base["OTEL_EXPORTER_OTLP_ENDPOINT"] = otlp
    envs = {}
    for i, name in enumerate(SERVICES):
        env = dict(base, SHOP_PORT=str(ports[i]),
                   SHOP_DASHBOARD_PORT=str(ports[len(SERVICES) + i]))
        if name == "payments":
            env["SHOP_FAULT_RATE"] = str(fault_rate)
        envs[name] = env
    urls.update({f"{n}-dashboard": f"http://127.0.0.1:{ports[len(SERVICES) + i]}"
                 for i, n in enumerate(SERVICES)})
    return envs, urls


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back until the block has run, then act on the first
    that arrived as its handler would have. Around a ``Popen``: one arriving inside
    it (after the fork, before it returns) left a service running, unrecorded, that
    no one stopped."""
    if threading.current_thread() is not threading.main_thread():
        yield  # (only the main thread gets signals, and may set handlers)
        return
    arrived: list[tuple[int, Any]] = []
    kinds = (signal.SIGINT, signal.SIGTERM)
    previous = {kind: signal.signal(kind, lambda n, frame: arrived.append((n, frame)))
                for kind in kinds}
    try:
        yield
    finally:
        for kind, handler in previous.items():
            signal.signal(kind, signal.SIG_DFL if handler is None else handler)
        for n, frame in arrived[:1]:
            handler = previous[signal.Signals(n)]
            if callable(handler):
                handler(n, frame)
            elif handler == signal.SIG_DFL:
                signal.raise_signal(n)


def _wait_up(url: str, process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if process.poll() is not None:
            raise RuntimeError(f"{url}: the service exited with {process.returncode}")
        try:
            if httpx.get(url + "/healthz", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url}: the service did not come up within {timeout:.0f} s")


def _drive(result: ShopResult, requests: int, deadline_ms: int) -> None:
    with httpx.Client(base_url=result.urls["gateway"], timeout=10.0) as client:
        for i in range(requests):
            r = client.get(f"/checkout/tea-{i % 5}",
                           headers={"x-meshlite-deadline": str(deadline_ms)})
            result.statuses[r.status_code] += 1
            if r.status_code == 200:  # the last one: past the first calls' warm-up
                body = r.json()
                result.budgets = {"client": float(deadline_ms),
                                  "gateway": body["gateway_budget_ms"],
                                  "orders": body["order"]["orders_budget_ms"],
                                  "inventory": body["order"]["inventory"]
                                  ["inventory_budget_ms"]}


def _observe(result: ShopResult) -> None:
    for name in SERVICES:
        dashboard = result.urls[f"{name}-dashboard"]
        result.topology[name] = httpx.get(dashboard + "/api/topology", timeout=5.0).json()
        result.services[name] = httpx.get(dashboard + "/api/services", timeout=5.0).json()


def _report(out: TextIO, result: ShopResult, fault_rate: float) -> None:
    out.write(f"\nGateway answers: {dict(sorted(result.statuses.items()))} "
              f"(payments failing {fault_rate:.0%} of charges)\n")
    if result.budgets:
        chain = " -> ".join(f"{k} {v:.0f} ms" for k, v in result.budgets.items())
        out.write(f"Deadline budget hop by hop: {chain}\n")
    rows = []
    for name in SERVICES:
        for s in result.services[name]["services"]:
            rows.append([f"{name} -> {s['name']}", s["requests"], s["errors"],
                         ", ".join(f"{k}: {v}" for k, v in s["breakers"].items()) or "-"])
    out.write("\nWhat each mesh sent (attempts, including retries):\n")
    out.write(render_table(["edge", "attempts", "failed", "breaker"], rows) + "\n")
    edges = []
    for name in SERVICES:
        for e in result.topology[name]["edges"]:
            if e["to"] == name:
                edges.append([f"{e['from']} -> {e['to']}", e["requests"], e["errors"]])
    out.write("\nCallers each service learned (x-meshlite-caller), seen by the callee:\n")
    out.write(render_table(["edge", "requests", "5xx"], edges) + "\n")


def run_shop_demo(out: TextIO, err: TextIO, *, directory: str | None = None,
                  requests: int = 60, fault_rate: float = 0.3,
                  otlp_endpoint: str | None = None,
                  deadline_ms: int = DEADLINE_MS) -> ShopResult:
    """Start the shop, drive ``requests`` checkouts, each with a budget of
    ``deadline_ms``, print what the meshes did, stop.

    Raises:
        ConfigError: ``examples/shop`` was not found.
        RuntimeError: a service did not start.
    """
    shop = find_shop(directory)
    envs, urls = _environments(fault_rate, otlp_endpoint)
    result = ShopResult(urls=urls)
    processes: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for name in SERVICES:
            out.write(f"starting {name} on {urls[name]} (dashboard "
                      f"{urls[name + '-dashboard']})\n")
            with _signals_held():  # a process started is one the finally stops
                # A session of its own: a terminal's Ctrl+C reaches the demo alone,
                # which stops the services callers first (below), not all at once
                # (a caller still serving would fail on a service already gone).
                processes[name] = subprocess.Popen(
                    [sys.executable, str(shop / f"{name}.py")], env=envs[name], cwd=shop,
                    start_new_session=True)
            _wait_up(urls[name], processes[name])
        out.write(f"driving {requests} checkouts through the gateway\n")
        out.flush()
        _drive(result, requests, deadline_ms)
        time.sleep(1.2)  # let the dashboards' samplers see the last second
        _observe(result)
        _report(out, result, fault_rate)
    finally:
        # Callers first, each finishing its requests in flight (uvicorn's SIGTERM)
        # while the services it calls still answer.
        with _signals_held():  # a second Ctrl+C is acted on once all are stopped
            for name, process in reversed(processes.items()):
                process.terminate()
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    err.write(f"{name} did not stop on SIGTERM; killed\n")
                    process.kill()
                    process.wait()
    return result
