"""The load and fault rows of ``benchmarks/redis_store.py`` (run through it).

- 256 threads and 1,000 async tasks deciding for a few seconds on a healthy Redis:
  decisions made and fallbacks (the goal: zero);
- Redis calls per admitted decision, with and without leasing, at a limit 100x
  below the offered load;
- failover to ``on_error`` on a hung Redis (SIGSTOP) and the return to shared
  mode after it answers again (SIGCONT);
- decisions/s against a 3-primary Redis Cluster.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import tempfile
import threading
import time

import meshlite as ml
from meshlite.state import RedisStore

RATE = 10_000_000.0  # never reached: every decision admits


def threads_row(url: str, seconds: float, threads: int = 256) -> tuple[str, str, str]:
    store = RedisStore(url, prefix="load-t")
    call = ml.RateLimit(RATE, store=store, name="t", mode="reject")(lambda: 1)
    stop = time.monotonic() + seconds
    counts: list[int] = []

    def loop() -> None:
        n = 0
        while time.monotonic() < stop:
            call()
            n += 1
        counts.append(n)

    workers = [threading.Thread(target=loop) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    fallbacks = sum(store.fallbacks.values())
    store.close()
    return (f"{threads} threads for {seconds:g} s", f"{sum(counts):,} decisions",
            f"{fallbacks} fallbacks")


def tasks_row(url: str, seconds: float, tasks: int = 1000) -> tuple[str, str, str]:
    async def run() -> tuple[int, int]:
        store = RedisStore(url, prefix="load-a")

        async def work() -> int:
            return 1

        call = ml.RateLimit(RATE, store=store, name="a", mode="reject")(work)
        stop = time.monotonic() + seconds

        async def loop() -> int:
            n = 0
            while time.monotonic() < stop:
                await call()
                n += 1
            return n

        counts = await asyncio.gather(*(loop() for _ in range(tasks)))
        fallbacks = sum(store.fallbacks.values())
        await store.aclose()
        return sum(counts), fallbacks

    total, fallbacks = asyncio.run(run())
    return (f"{tasks} async tasks for {seconds:g} s", f"{total:,} decisions",
            f"{fallbacks} fallbacks")


def calls_per_admitted(url: str, seconds: float, lease: int) -> tuple[str, str, str]:
    """A limit about 100x below the offered load; Redis calls per admitted decision."""
    store = RedisStore(url, prefix=f"load-l{lease}", rate_lease=lease)
    admitted = [0]
    offered = [0]
    lock = threading.Lock()
    rate = 200.0  # the offered load here is ~20k decisions/s: ~100x above it
    call = ml.RateLimit(rate, burst=10, store=store, name="l", mode="reject")(lambda: 1)
    stop = time.monotonic() + seconds

    def loop() -> None:
        a = o = 0
        while time.monotonic() < stop:
            o += 1
            try:
                call()
                a += 1
            except ml.RateLimitedError:
                pass
        with lock:
            admitted[0] += a
            offered[0] += o

    workers = [threading.Thread(target=loop) for _ in range(8)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    trips = store.round_trips
    store.close()
    label = "no leasing" if lease == 1 else f"rate_lease={lease}"
    return (f"limit {rate:g}/s, offered {offered[0] / seconds:,.0f}/s, {label}",
            f"{admitted[0]:,} admitted, {trips:,} Redis calls",
            f"{trips / max(1, admitted[0]):.2f} calls/admitted")


def failover_rows(binary: str, port: int) -> list[tuple[str, str, str]]:
    """SIGSTOP a dedicated redis-server: time until decisions fall back; SIGCONT:
    time until they share Redis again."""
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1",
                                 "--save", "", "--appendonly", "no", "--dir", tmp],
                                stdout=subprocess.DEVNULL)
        try:
            return _failover(proc, f"redis://127.0.0.1:{port}/0")
        finally:
            proc.kill()
            proc.wait()


def _failover(proc: subprocess.Popen[bytes], url: str) -> list[tuple[str, str, str]]:
    store = RedisStore(url, prefix="load-f", on_error="allow")
    for _ in range(200):
        if store.ping():
            break
        time.sleep(0.01)
    call = ml.RateLimit(RATE, store=store, name="f", mode="reject")(lambda: 1)
    worst, fails, back = 0.0, [], []
    for _ in range(5):
        call()
        os.kill(proc.pid, signal.SIGSTOP)
        hung = time.perf_counter()
        call()  # waits out the timeout, then allow
        fails.append(time.perf_counter() - hung)
        for _ in range(100):  # the others fall back at once
            t = time.perf_counter()
            call()
            worst = max(worst, time.perf_counter() - t)
        os.kill(proc.pid, signal.SIGCONT)
        answering = time.perf_counter()
        while not store.available:
            call()
            time.sleep(0.0005)
        back.append(time.perf_counter() - answering)
    store.close()
    return [("hung Redis: first decision falls back after (max of 5)",
             f"{max(fails) * 1000:.1f} ms", "target <= 50 ms (timeout=0.05)"),
            ("hung Redis: slowest of the next 500 decisions",
             f"{worst * 1000:.2f} ms", "no network while down"),
            ("Redis answers again: shared mode resumes after (max of 5)",
             f"{max(back) * 1000:.0f} ms", "target <= 250 ms")]


def cluster_row(binary: str, cli: str, seconds: float) -> tuple[str, str, str]:
    """Decisions/s of 8 threads over 16 limit names on a fresh 3-primary cluster."""
    ports = [_cluster_port() for _ in range(3)]
    procs = []
    with tempfile.TemporaryDirectory() as tmp:
        try:
            for port in ports:
                procs.append(subprocess.Popen(
                    [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                     "--appendonly", "no", "--dir", tmp, "--cluster-enabled", "yes",
                     "--cluster-config-file", f"nodes-{port}.conf"],
                    stdout=subprocess.DEVNULL))
            time.sleep(0.5)
            subprocess.run([cli, "--cluster", "create",
                            *(f"127.0.0.1:{p}" for p in ports), "--cluster-replicas", "0",
                            "--cluster-yes"], check=True, capture_output=True, timeout=60)
            time.sleep(2.0)  # the nodes agree on the slots
            return _cluster_load("redis+cluster://127.0.0.1:" + str(ports[0]), seconds)
        finally:
            for proc in procs:
                proc.kill()
                proc.wait()


def _cluster_load(url: str, seconds: float) -> tuple[str, str, str]:
    store = RedisStore(url, prefix="load-c", timeout=1.0)
    calls = [ml.RateLimit(RATE, store=store, name=f"n{i}", mode="reject")(lambda: 1)
             for i in range(16)]
    stop = time.monotonic() + seconds
    counts: list[int] = []

    def loop(k: int) -> None:
        n = 0
        while time.monotonic() < stop:
            calls[(n + k) % 16]()
            n += 1
        counts.append(n)

    workers = [threading.Thread(target=loop, args=(k,)) for k in range(8)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    fallbacks = sum(store.fallbacks.values())
    store.close()
    return ("3-primary cluster, 8 threads, 16 limits",
            f"{sum(counts) / seconds:,.0f} decisions/s", f"{fallbacks} fallbacks")


def _cluster_port() -> int:
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port: int = s.getsockname()[1]
        if port + 10000 > 65535:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port


def registry_rows(url: str, backends: int = 1000, watchers: int = 100,
                  ) -> list[tuple[str, str, str]]:
    """A registry of ``backends``: resolve time, and a rolling deploy (each backend
    replaced by a new one) watched by ``watchers`` coalescing watchers."""
    from meshlite.discovery import RedisRegistry

    async def run() -> list[tuple[str, str, str]]:
        member = RedisRegistry("bench", url, prefix="load-r", ttl=600.0)
        for i in range(backends):
            await member.aregister(f"http://10.0.{i // 250}.{i % 250}:80")
        t = time.perf_counter()
        for _ in range(20):
            found = await member.resolve()
        per_resolve = (time.perf_counter() - t) / 20
        assert len(found.backends) == backends
        regs = [RedisRegistry("bench", url, prefix="load-r", ttl=600.0)
                for _ in range(watchers)]
        resolves = [0]
        stop = asyncio.Event()

        async def watch(reg: RedisRegistry) -> None:
            # Each return of changed() is one resolve a Discovery driver would make
            # (the resolves themselves are timed above; 100 watchers parsing 1,000
            # backends in one event loop would measure this process, not Redis).
            await reg.start()
            while not stop.is_set():
                await reg.changed()
                resolves[0] += 1

        tasks = [asyncio.create_task(watch(r)) for r in regs]
        await asyncio.sleep(0.5)  # subscribed
        t = time.perf_counter()
        for i in range(backends):  # replace every backend, one after the other
            await member.aderegister(f"http://10.0.{i // 250}.{i % 250}:80")
            await member.aregister(f"http://10.1.{i // 250}.{i % 250}:80")
        deploy = time.perf_counter() - t
        await asyncio.sleep(1.0)  # the last coalesced resolves
        stop.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for reg in regs:
            await reg.stop()
        await member.stop()
        changes = 2 * backends
        return [(f"registry resolve at {backends} backends (read-only)",
                 f"{per_resolve * 1000:.2f} ms", "one script, no writes"),
                (f"rolling deploy of {backends} backends, {watchers} watchers",
                 f"{resolves[0]:,} resolves in {deploy:.1f} s "
                 f"(~{resolves[0] * per_resolve:.1f} s of resolving)",
                 f"uncoalesced: {changes * watchers:,}")]

    return asyncio.run(run())
