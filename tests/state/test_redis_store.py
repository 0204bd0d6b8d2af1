"""RedisStore itself: options, lazy import, URLs and passwords, codecs, health, faults."""

from __future__ import annotations

import subprocess
import sys
import types
from typing import Any

import pytest
import redis
from redis_server import RedisServer

import meshlite as ml
from meshlite.state import (
    JsonCodec,
    RedisStore,
    StoreFallback,
    StoreRecovered,
    StoreUnavailable,
    StoreUnavailableError,
)
from meshlite.state._redis_gcra import RESERVE


def test_import_meshlite_loads_no_redis() -> None:
    code = ("import sys, meshlite, meshlite.state, meshlite.discovery._redis; "
            "print(sorted(m for m in sys.modules if m == 'redis' or m.startswith('redis.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"url": "http://localhost"}, "url"),
    ({"url": 6379}, "url"),
    ({"prefix": ""}, "prefix"),
    ({"on_error": "ignore"}, "on_error"),
    ({"timeout": 0}, "timeout"),
    ({"timeout": "1"}, "timeout"),
    ({"retry_interval": -1.0}, "retry_interval"),
    ({"codec": "yaml"}, "codec"),
    ({"codec": object()}, "codec"),
    ({"cache_lock": 0.0}, "cache_lock"),
])
def test_bad_options_name_the_argument(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ml.ConfigError, match=f"^RedisStore: {field} must be"):
        RedisStore(**kwargs)


@pytest.mark.parametrize(("url", "what"), [
    # redis-py takes these and fails every call later (a port) or uses db 0 (a db)
    ("redis://127.0.0.1:notaport/0", "port is a number from 1 to 65535"),
    ("redis://user:s3cret@127.0.0.1:99999/0", "port is a number from 1 to 65535"),
    ("redis://127.0.0.1:6379/abc", "database is a number"),
    ("redis://127.0.0.1:6379/1x", "database is a number"),
    ("redis://127.0.0.1:6379?db=one", "database is a number"),
    ("redis+cluster://127.0.0.1:70000", "ports from 1 to 65535"),
    # redis-py takes these too, then every decision raised a ValueError (no store
    # error: it reached the caller, a 500 for every request under an inbound quota)
    ("redis://user:s3cret@127.0.0.1:6379/0?socket_timeout=abc",
     r"options redis-py reads \(Invalid value for 'socket_timeout'"),
    ("redis://127.0.0.1:6379/0?health_check_interval=soon", "health_check_interval"),
])
def test_a_url_redis_would_misread_is_refused_without_its_password(url: str, what: str) -> None:
    with pytest.raises(ml.ConfigError, match=f"^RedisStore: url must be .*{what}") as refused:
        RedisStore(url)
    assert "s3cret" not in str(refused.value)


def test_an_infinite_number_is_refused_as_not_finite() -> None:
    # "must be > 0, got inf" read as a contradiction
    with pytest.raises(ml.ConfigError, match=r"timeout must be a finite number > 0, got inf"):
        RedisStore(timeout=float("inf"))
    with pytest.raises(ml.ConfigError, match=r"retry_interval must be a finite number > 0"):
        RedisStore(retry_interval=float("inf"))


def test_urls_redis_reads_are_taken() -> None:
    for url in ("redis://127.0.0.1/", "redis://127.0.0.1:6380/2", "rediss://h:6379?db=3",
                "unix:///tmp/redis.sock?db=1", "redis://127.0.0.1:6379/0?socket_timeout=0.5"):
        RedisStore(url).close()  # no connection is made until the first call


def test_missing_msgpack_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "msgpack", None)  # import msgpack -> ImportError
    with pytest.raises(ml.ConfigError, match=r"codec.*pip install msgpack"):
        RedisStore(codec="msgpack")


def test_msgpack_codec_when_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = types.ModuleType("msgpack")
    fake.dumps = lambda value: b"packed"  # type: ignore[attr-defined]
    fake.loads = lambda data: "unpacked"  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "msgpack", fake)
    codec = RedisStore(codec="msgpack").codec
    assert codec.dumps(1) == b"packed"
    assert codec.loads(b"x") == "unpacked"


def test_json_is_the_default_codec_and_pickle_only_by_name() -> None:
    assert isinstance(RedisStore().codec, JsonCodec)
    assert RedisStore(codec="pickle").codec.loads(
        RedisStore(codec="pickle").codec.dumps((1, 2))) == (1, 2)
    with pytest.raises(TypeError):
        JsonCodec().dumps(object())
    with pytest.raises(ValueError, match="JSON"):
        JsonCodec().dumps(float("nan"))


def test_password_is_kept_out_of_label_and_repr() -> None:
    s = RedisStore("redis://app:s3cret@127.0.0.1:6379/0")
    assert "s3cret" not in s.label
    assert "s3cret" not in repr(s)
    assert s.label == "redis://app:***@127.0.0.1:6379/0"


def test_password_through_the_url(redis_binary: str) -> None:
    server = RedisServer(redis_binary, None, "--requirepass", "s3cret").start()
    try:
        good = RedisStore(f"redis://:s3cret@127.0.0.1:{server.port}/0")
        bad = RedisStore(f"redis://:wrong@127.0.0.1:{server.port}/0")
        assert good.ping()
        assert not bad.ping()
        assert not bad.available
        good.close()
        bad.close()
    finally:
        server.close()


def test_eval_reloads_a_script_redis_forgot(store: RedisStore, raw: redis.Redis) -> None:
    store.eval(RESERVE, 1, f"{store.prefix}:x", 1000, 0, 0)
    raw.script_flush()  # as a restart does
    _, tat, _ = store.eval(RESERVE, 1, f"{store.prefix}:x", 1000, 0, -1)
    assert tat > 0
    assert store.available


def test_down_store_is_announced_once_and_recovery_too(fresh_server: RedisServer) -> None:
    events: list[Any] = []
    store = RedisStore(fresh_server.url, retry_interval=0.001)
    store.add_hook(events.append)
    assert store.ping()
    fresh_server.kill()
    assert not store.ping()
    assert not store.ping()
    assert not store.available
    fresh_server.start()
    while not store.ping():  # the retry interval is a millisecond
        pass
    assert store.available
    kinds = [type(e) for e in events]
    assert kinds == [StoreUnavailable, StoreRecovered]
    assert events[0].store == store.label
    assert events[1].down_seconds > 0
    store.close()


def test_no_network_while_down_until_retry_interval(dead_url: str,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    store = RedisStore(dead_url, retry_interval=60.0)
    used: list[int] = []
    real = store._clients.sync

    def counting() -> Any:
        used.append(1)
        return real()

    monkeypatch.setattr(store._clients, "sync", counting)
    for _ in range(5):
        with pytest.raises(StoreUnavailableError):
            store.command("PING")
    assert len(used) == 1  # the first failure; then refused without trying


def test_slow_redis_falls_back_within_timeout(fresh_server: RedisServer) -> None:
    # A timeout a loaded machine's first decision (connecting included) still meets.
    store = RedisStore(fresh_server.url, timeout=0.5, retry_interval=0.001)
    limit = ml.RateLimit(1000.0, store=store, name="slow", mode="reject")
    events: list[Any] = []
    limit.add_hook(events.append)
    call = limit(lambda: "ran")
    assert call() == "ran"
    fresh_server.pause()  # accepts, never answers
    try:
        assert call() == "ran"  # local fallback
    finally:
        fresh_server.resume()
    assert [e.action for e in events if isinstance(e, StoreFallback)] == ["local"]
    while not store.ping():
        pass
    assert call() == "ran"
    store.close()


def test_fallbacks_are_counted(dead_url: str) -> None:
    store = RedisStore(dead_url, on_error="allow")
    call = ml.RateLimit(1.0, store=store, name="n")(lambda: 1)
    for _ in range(3):
        assert call() == 1
    assert store.fallbacks == {("rate_limit", "allow"): 3}


def test_fallback_metric_reaches_opentelemetry(dead_url: str) -> None:
    code = f"""
from opentelemetry import metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
reader = InMemoryMetricReader()
metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
import meshlite as ml
from meshlite.state import RedisStore
call = ml.RateLimit(1.0, store=RedisStore({dead_url!r}, on_error="allow"), name="n")(int)
call(); call()
for rm in reader.get_metrics_data().resource_metrics:
    for sm in rm.scope_metrics:
        for m in sm.metrics:
            for p in m.data.data_points:
                print(m.name, dict(p.attributes), p.value)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert ("meshlite.store.fallbacks {'meshlite.policy': 'rate_limit', "
            "'meshlite.store.action': 'allow'} 2") in out.stdout


def test_raise_mode_names_policy_and_service_and_chains(dead_url: str) -> None:
    store = RedisStore(dead_url, on_error="raise")
    pipeline = ml.Pipeline(ml.RateLimit(1.0, store=store, name="n"))
    with pytest.raises(StoreUnavailableError) as info:
        pipeline.call(lambda: 1)
    assert info.value.policy == "rate_limit"
    assert isinstance(info.value.__cause__, StoreUnavailableError)
    assert "on_error='raise'" in str(info.value)


async def test_async_commands_and_aclose(store: RedisStore) -> None:
    assert await store.acommand("SET", f"{store.prefix}:k", "v") in (b"OK", "OK", True)
    assert await store.acommand("GET", f"{store.prefix}:k") == b"v"
    await store.aclose()
    assert await store.acommand("GET", f"{store.prefix}:k") == b"v"  # reconnects
    await store.aclose()


async def test_async_down_store_raises_store_error(dead_url: str) -> None:
    store = RedisStore(dead_url)
    with pytest.raises(StoreUnavailableError, match="did not answer"):
        await store.acommand("PING")
    with pytest.raises(StoreUnavailableError, match="unavailable"):
        await store.acommand("PING")
    await store.aclose()


async def test_async_restart_reconnects(fresh_server: RedisServer) -> None:
    store = RedisStore(fresh_server.url, retry_interval=0.001)
    assert await store.acommand("PING")
    fresh_server.kill()
    fresh_server.start()
    # The idle connection was closed by the restart: one retry on a fresh one.
    assert await store.acommand("PING")
    assert store.available
    await store.aclose()


def test_sync_restart_reconnects(fresh_server: RedisServer) -> None:
    store = RedisStore(fresh_server.url)
    assert store.ping()
    fresh_server.kill()
    fresh_server.start()
    assert store.ping()
    assert store.available
    store.close()


async def test_async_slow_redis_falls_back_within_timeout(fresh_server: RedisServer) -> None:
    # A timeout a loaded machine's first decision (connecting included) still meets.
    store = RedisStore(fresh_server.url, timeout=0.5, retry_interval=0.001)

    async def work() -> str:
        return "ran"

    limit = ml.RateLimit(1000.0, store=store, name="slow", mode="reject")
    events: list[Any] = []
    limit.add_hook(events.append)
    call = limit(work)
    assert await call() == "ran"
    fresh_server.pause()
    try:
        assert await call() == "ran"  # the read timed out: local fallback
    finally:
        fresh_server.resume()
    assert [e.action for e in events if isinstance(e, StoreFallback)] == ["local"]
    while not await store.aping():
        pass
    assert store.available
    await store.aclose()


def test_public_names() -> None:
    import meshlite.state as state

    assert all(hasattr(state, name) for name in state.__all__)
    assert issubclass(state.StoreUnavailableError, ml.MeshliteError)
    for event in (state.StoreFallback, state.StoreUnavailable, state.StoreRecovered):
        assert issubclass(event, ml.Event)


def test_a_missing_program_skips_but_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    from _system import require_program

    monkeypatch.setenv("CI", "false")
    with pytest.raises(pytest.skip.Exception, match="Debian package 'no-such-pkg'"):
        require_program("no-such-program-meshlite", "no-such-pkg")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        require_program("no-such-program-meshlite", "no-such-pkg")
    assert require_program("sh", "dash").endswith("/sh")


@pytest.mark.parametrize("args", [
    ("EVALSHA", "5b3c7878ef1f0acce3b4b8ea2de4ed6f7fe865c2", 1, "p:rl:api:user-1", 1000, 0, -1, 1),
    ("SET", "k", b"\x00\xffdata" * 3000, "PX", 1500),
    ("X", 1.5, -0.25, "é", "", b""),
])
def test_requests_are_packed_as_redis_py_packs_them(args: tuple[Any, ...]) -> None:
    from meshlite.state._redis_wire import pack

    assert pack(args) == b"".join(redis.Connection().pack_command(*args))
