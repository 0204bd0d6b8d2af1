"""A Cache on a RedisStore names no argument in Redis: not in a key, not in a value,
not in any command a ``MONITOR`` shows; what stands for the arguments is a digest
every process computes alike (another interpreter, another hash seed, the secret
given as an option or in the environment)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from typing import Any

import cache_key_worker
import pytest
import redis
from cache_key_worker import profile
from redis_server import RedisServer

import meshlite as ml
from meshlite.state import RedisStore

EMAIL = "ada.lovelace@example.org"
TOKEN = "tok_9f8e7d6c5b4a"
USER_ID = 73_914_288
SECRETS = (EMAIL, TOKEN, str(USER_ID), "lovelace")


@pytest.fixture(autouse=True)
def _no_secret_from_outside(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MESHLITE_CACHE_KEY_SECRET", raising=False)


class Monitor:
    """Every command Redis runs meanwhile, as ``MONITOR`` shows it (in a thread)."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self.commands: list[str] = []
        self.marker = f"monitor-end-{uuid.uuid4().hex}"
        self._monitor = client.monitor()
        self._monitor.__enter__()  # MONITOR answered: commands from now on are seen
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        for command in self._monitor.listen():
            if self.marker in command["command"]:
                return
            self.commands.append(command["command"])

    def stop(self) -> list[str]:
        self.client.echo(self.marker)
        self._thread.join(30.0)
        assert not self._thread.is_alive(), "MONITOR did not show the marker"
        self._monitor.__exit__(None, None, None)
        return self.commands


def everything_stored(raw: redis.Redis, prefix: str) -> list[bytes]:
    """Every key under ``prefix`` and everything in it."""
    found: list[bytes] = []
    for key in raw.scan_iter(match=f"{prefix}:*"):
        found.append(key)
        kind = raw.type(key)
        if kind == b"string":
            found.append(raw.get(key) or b"")
        elif kind == b"set":
            found.extend(raw.smembers(key))
        else:
            raise AssertionError(f"a cache key of type {kind!r}: {key!r}")
    return found


def test_no_argument_is_in_any_key_value_or_command(redis_server: RedisServer, prefix: str,
                                                    raw: redis.Redis) -> None:
    store = RedisStore(redis_server.url, prefix=prefix, timeout=2.0, cache_lock=5.0)
    by_user = ml.Cache(ttl=60.0, stale_ttl=60.0, store=store, name="users")
    keyed = ml.Cache(ttl=60.0, store=store, name="tokens", key=lambda t, **_: t)

    @by_user
    def plan(user_id: int, email: str) -> str:
        return "gold"

    async def owner(token: str) -> int:
        return 1

    async_owner = keyed(owner)
    monitor = Monitor(raw)
    try:
        assert plan(USER_ID, EMAIL) == plan(USER_ID, email=EMAIL) == "gold"
        assert plan(USER_ID, EMAIL) == "gold"  # a hit
        assert asyncio.run(async_owner(TOKEN)) == 1
        assert asyncio.run(async_owner(TOKEN)) == 1
        assert by_user.hits == 1
        assert keyed.hits == 1
        stored = everything_stored(raw, prefix)
        assert by_user.invalidate(USER_ID, EMAIL) == 1
        assert keyed.invalidate(TOKEN) == 1
        keyed.clear()
    finally:
        commands = monitor.stop()
        store.close()
    # Three entries and their locks' traces: the keys name the namespace and the
    # function, so an operator still finds (and deletes) a cache's keys by prefix.
    keys = [k.decode() for k in stored if k.startswith(prefix.encode() + b":cache:")]
    assert any(k.startswith(f"{prefix}:cache:users:e:{plan.__module__}.") for k in keys)
    assert any(k.startswith(f"{prefix}:cache:tokens:e:{owner.__module__}.") for k in keys)
    assert commands  # MONITOR saw the calls
    for secret in SECRETS:
        assert not [item for item in stored if secret.encode() in item], secret
        assert not [command for command in commands if secret in command], secret


def digest(namespace: str, text: str, secret: bytes | None = None) -> str:
    """The argument digest, computed here from its definition (a change of it changes
    every key of every deployment: their entries would be computed again)."""
    key = b"" if secret is None else hashlib.blake2b(secret,
                                                     person=b"meshlite.secret").digest()
    h = hashlib.blake2b(digest_size=32, key=key, person=b"meshlite.cache")
    h.update(len(namespace.encode()).to_bytes(8, "big") + namespace.encode())
    h.update(text.encode())
    return h.hexdigest()


@pytest.mark.parametrize("secret", [None, "s3cret"])
def test_the_key_of_a_call(store: RedisStore, raw: redis.Redis, secret: str | None) -> None:
    call = ml.Cache(ttl=60.0, store=store, key_secret=secret)(profile)
    call(EMAIL, token=TOKEN)
    text = json.dumps({"args": [EMAIL], "kwargs": {"token": TOKEN}}, separators=(",", ":"))
    expected = digest("default", text, None if secret is None else secret.encode())
    assert sorted(raw.keys(f"{store.prefix}:cache:*")) == [
        f"{store.prefix}:cache:default:e:cache_key_worker.profile:{expected}".encode(),
        f"{store.prefix}:cache:default:fns".encode()]


def other_process(url: str, prefix: str, secret: str | None) -> dict[str, Any]:
    """Call ``profile(EMAIL, token=TOKEN)`` in a new interpreter (another hash seed)."""
    env = {k: v for k, v in os.environ.items() if k != "MESHLITE_CACHE_KEY_SECRET"}
    env["PYTHONHASHSEED"] = "4242"
    if secret is not None:
        env["MESHLITE_CACHE_KEY_SECRET"] = secret
    here = str(Path(__file__).parent)
    code = (f"import sys; sys.path.insert(0, {here!r}); import cache_key_worker as w; "
            "w.main(*sys.argv[1:])")
    done = subprocess.run([sys.executable, "-c", code, url, prefix, EMAIL, TOKEN],
                          env=env, capture_output=True, text=True, timeout=120, check=True)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_another_process_hits_the_entry_and_sees_its_invalidation(
        redis_server: RedisServer, store: RedisStore, raw: redis.Redis) -> None:
    cache = ml.Cache(ttl=60.0, store=store, key_secret="s3cret")
    call = cache(profile)
    before = cache_key_worker.calls
    assert call(EMAIL, token=TOKEN) == {"plan": "gold"}
    assert cache_key_worker.calls == before + 1
    # The same secret (from the environment there): the entry stored here answers.
    there = other_process(redis_server.url, store.prefix, "s3cret")
    assert there == {"value": {"plan": "gold"}, "calls": 0}
    # Another secret, or none: other keys, so the call runs there.
    assert other_process(redis_server.url, store.prefix, None)["calls"] == 1
    assert len(raw.keys(f"{store.prefix}:cache:default:e:*")) == 2
    # invalidate() here deletes the entry of this secret's key, for every process.
    assert cache.invalidate(EMAIL, token=TOKEN) == 1
    assert other_process(redis_server.url, store.prefix, "s3cret")["calls"] == 1


def test_the_secret_is_checked_and_never_shown(store: RedisStore) -> None:
    with pytest.raises(ml.ConfigError, match="key_secret must be a non-empty string"):
        ml.Cache(ttl=1.0, store=store, key_secret="")
    with pytest.raises(ml.ConfigError, match="key_secret") as refused:
        ml.Cache(ttl=1.0, store=store, key_secret=31415926)  # type: ignore[arg-type]
    assert "31415926" not in str(refused.value)
    cache = ml.Cache(ttl=1.0, store=store, key_secret="hunter2")
    assert "hunter2" not in repr(cache)
    assert "hunter2" not in repr(cache.options)
